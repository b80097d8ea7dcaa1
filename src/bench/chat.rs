//! `upshift bench chat`: what the OpenAI-compatible door costs over the job
//! API. The same one-step jobs (GSM8K prompts, so a share escalate) go
//! both ways to a stack of its own with a zero-latency replay provider, so
//! model time is zero and the figures are upshift's alone:
//!
//! - the job API as its clients use it: `POST /v1/jobs`, follow
//!   `GET /v1/jobs/{id}/events` to `done`, then `GET /v1/jobs/{id}`;
//! - the door: one `POST /v1/chat/completions` answered when the job is.
//!
//! Each is timed from the first byte sent to the answer read, at each
//! concurrency, and printed as p50/p99.

use super::{drop_run, isolated_config};
use crate::client::Client;
use crate::eval::dataset::first_dataset;
use crate::fleet::Fleet;
use anyhow::Context;
use futures::StreamExt;
use std::time::Instant;
use upshift_shared::Tier;
use upshift_shared::config::Config;
use upshift_shared::stats::quantile;

/// Options of `upshift bench chat`.
#[derive(clap::Args)]
pub struct ChatArgs {
    /// Requests each way at each concurrency.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Concurrent clients, comma-separated.
    #[arg(long, default_value = "1,16,64", value_delimiter = ',')]
    concurrency: Vec<usize>,
}

/// Runs the benchmark and prints its table.
pub async fn run(cfg: &Config, args: ChatArgs) -> anyhow::Result<()> {
    let id = format!("benchchat{}", std::process::id());
    let dir = std::env::temp_dir().join(format!("upshift-{id}"));
    std::fs::create_dir_all(&dir)?;
    let items = crate::eval::dataset::load(&first_dataset(cfg)?, None)?.items;
    let most = args.concurrency.iter().copied().max().unwrap_or(1);
    let (config, db_url) = isolated_config(cfg, &id, 0, &dir, |c| {
        c.api.max_streams_per_tenant = c.api.max_streams_per_tenant.max(most * 2);
        c.api.max_concurrent_per_key = c.api.max_concurrent_per_key.max(most * 2);
    })?;
    let mut fleet = Fleet::new(Some(&config), &dir);
    fleet.env("RUST_LOG", "warn");
    fleet.add("orchestrator".into(), &["orchestrator"]);
    for tier in Tier::ALL {
        fleet.add(format!("worker-{tier}"), &["worker", "--tier", tier.as_str()]);
    }
    fleet.start(0).await?;
    fleet.revive().await?;
    let api = fleet.apis().into_iter().next().context("the orchestrator listens")?;
    let client = Client::new(&api, None)?;
    let http = reqwest::Client::new();
    println!(
        "upshift bench chat: {} requests each way per concurrency, replay with no model time",
        args.requests
    );
    println!(
        "{:>11}  {:>16}  {:>16}  {:>16}",
        "concurrency", "jobs p50/p99 ms", "chat p50/p99 ms", "overhead p50 ms"
    );
    let result = async {
        for &n in &args.concurrency {
            let jobs = timed(args.requests, n, |i| {
                // The job the door makes of the chat below (its class the task's name).
                let item = &items[i % items.len()];
                let body = serde_json::json!({
                    "kind": "steps", "blast_radius": "low",
                    "steps": [{"name": "chat", "task": item.task, "input": item.prompt}],
                });
                let client = &client;
                async move {
                    let id = client.submit(&body).await?;
                    let job = client.wait(id, false).await?;
                    anyhow::ensure!(job["status"] != "running", "job {id} did not finish");
                    Ok(())
                }
            })
            .await?;
            let chat = timed(args.requests, n, |i| {
                let item = &items[i % items.len()];
                let body = serde_json::json!({
                    "model": "upshift",
                    "messages": [{"role": "user", "content": item.prompt}],
                    "upshift": {"blast_radius": "low", "task": item.task},
                });
                let (http, url) = (&http, format!("{api}/v1/chat/completions"));
                async move {
                    let resp = http.post(url).json(&body).send().await?;
                    let status = resp.status().as_u16();
                    let text = resp.text().await?;
                    // 422 is an unresolved answer: a finished job all the same.
                    anyhow::ensure!(matches!(status, 200 | 422), "chat answered {status}: {text}");
                    Ok(())
                }
            })
            .await?;
            let (mut jobs, mut chat) = (jobs, chat);
            let (j50, j99, c50, c99) = (
                quantile(&mut jobs, 0.5),
                quantile(&mut jobs, 0.99),
                quantile(&mut chat, 0.5),
                quantile(&mut chat, 0.99),
            );
            println!(
                "{n:>11}  {:>16}  {:>16}  {:>16.1}",
                format!("{j50:.1} / {j99:.1}"),
                format!("{c50:.1} / {c99:.1}"),
                c50 - j50
            );
        }
        anyhow::Ok(())
    }
    .await;
    fleet.stop().await;
    drop_run(cfg, &id, &db_url).await;
    result
}

/// Runs `n` calls of `call` (given its index), `concurrency` at once;
/// each call's wall time in milliseconds.
async fn timed<F, Fut>(n: usize, concurrency: usize, call: F) -> anyhow::Result<Vec<f64>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let out: Vec<anyhow::Result<f64>> = futures::stream::iter(0..n)
        .map(|i| {
            let started = Instant::now();
            let fut = call(i);
            async move {
                fut.await?;
                Ok(started.elapsed().as_secs_f64() * 1000.0)
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    out.into_iter().collect()
}
