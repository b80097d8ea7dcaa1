//! `upshift eval --live`: the same items through the running system
//! (API → Postgres → NATS → workers → verification), compared item by item
//! with the offline route: same tiers, same decisions, same reasons.

use super::dataset::Dataset;
use super::{recorded, sim_item};
use crate::client::Client;
use anyhow::bail;
use futures::StreamExt;
use upshift_shared::BlastRadius;
use upshift_shared::config::Config;
use upshift_shared::simulate::simulate;

/// One attempt as both sides describe it: tier, decision, reasons.
type Hop = (String, String, Vec<String>);

/// Submits every item, waits, and compares routes. Fails on any difference.
pub async fn run(cfg: &Config, ds: &Dataset, blast: BlastRadius, api: &str, key: Option<&str>) -> anyhow::Result<()> {
    let client = Client::new(api, key)?;
    let started = std::time::Instant::now();
    let outcomes: Vec<anyhow::Result<Vec<Hop>>> = futures::stream::iter(&ds.items)
        .map(|item| {
            let client = &client;
            async move {
                let id = client.submit(&item.job_body(blast.as_str())).await?;
                client.wait(id, false).await?;
                let route = client.route(id).await?;
                Ok(live_hops(&route))
            }
        })
        .buffered(16)
        .collect()
        .await;
    let mut mismatches = 0;
    for (item, live) in ds.items.iter().zip(outcomes) {
        let live = live?;
        let offline: Vec<Hop> = simulate(cfg, sim_item(item, blast), |m| recorded(item, m).cloned())
            .attempts
            .iter()
            .map(|a| {
                (
                    a.tier.to_string(),
                    a.decision.to_string(),
                    a.reasons.iter().map(|r| r.to_string()).collect(),
                )
            })
            .collect();
        if live != offline {
            mismatches += 1;
            if mismatches <= 5 {
                eprintln!(
                    "mismatch on {:?}\n  offline {offline:?}\n  live    {live:?}",
                    truncate(&item.prompt)
                );
            }
        }
    }
    println!(
        "live: {} items, {} identical routes, {mismatches} mismatches ({:.1}s)",
        ds.items.len(),
        ds.items.len() - mismatches,
        started.elapsed().as_secs_f64()
    );
    if mismatches > 0 {
        bail!("{mismatches} live routes differ from the offline ones");
    }
    Ok(())
}

/// The decisions of a live route, in order.
fn live_hops(route: &serde_json::Value) -> Vec<Hop> {
    route["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| matches!(e["event"].as_str(), Some("accept" | "escalate" | "fail")))
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            let reasons = e["reasons"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_str().map(String::from));
            (s("from_tier"), s("event"), reasons.collect())
        })
        .collect()
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}
