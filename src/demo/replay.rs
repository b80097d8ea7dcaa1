//! `upshift demo --replay`: pushes every prompt of a RouteLLM-format dataset through a
//! local stack as single-step jobs, waits for all of them, and reports the
//! figures from Postgres: escalations by reason, accuracy from the recorded
//! labels, cost against always-strong, wall time.

use super::DemoArgs;
use crate::client::Client;
use crate::eval::dataset::Item;
use crate::local::Stack;
use anyhow::Context;
use futures::StreamExt;
use std::path::Path;
use std::time::{Duration, Instant};
use upshift_orchestrator::store::{PgStore, RunSummary};
use upshift_shared::config::Config;
use uuid::Uuid;

/// Runs the replay demo end to end.
pub(super) async fn run(config: Option<&Path>, cfg: &Config, args: DemoArgs) -> anyhow::Result<()> {
    let dataset = match args.dataset {
        Some(d) => d,
        None => crate::eval::dataset::first_dataset(cfg).context("pass --dataset")?,
    };
    let mut ds = crate::eval::dataset::load(&dataset, None)?;
    if let Some(n) = args.limit {
        ds.items.truncate(n);
    }
    println!("upshift demo: {} prompts from {}", ds.items.len(), dataset.display());
    let profile = [("UPSHIFT_PROFILE".to_string(), "replay".to_string())];
    let stack = Stack::start(config, cfg, args.workers_per_tier, &profile).await?;
    println!(
        "local stack up: API {} (logs in {})",
        stack.api,
        stack.log_dir.display()
    );
    let outcome = drive(
        cfg,
        &stack,
        &ds.items,
        &args.blast_radius,
        Duration::from_secs(args.timeout_secs),
    )
    .await;
    stack.stop().await;
    outcome
}

async fn drive(cfg: &Config, stack: &Stack, items: &[Item], blast: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = Client::new(&stack.api, None)?;
    let started = Instant::now();
    let ids: Vec<Uuid> = futures::stream::iter(items.iter().enumerate())
        .map(|(i, item)| {
            let mut body = item.job_body(blast);
            body["metadata"] = serde_json::json!({ "demo_item": i });
            let client = &client;
            async move { client.submit(&body).await }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    println!(
        "submitted {} jobs in {:.1}s",
        ids.len(),
        started.elapsed().as_secs_f64()
    );
    let pool = PgStore::for_reports(&cfg.database.url).context("connecting to Postgres for the report")?;
    loop {
        let done = pool.finished_of(&ids).await?;
        eprint!("\r  finished {done}/{}", ids.len());
        if done as usize == ids.len() {
            eprintln!();
            break;
        }
        if started.elapsed() > timeout {
            eprintln!();
            anyhow::bail!(
                "timed out with {} of {} jobs unfinished",
                ids.len() as i64 - done,
                ids.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let wall = started.elapsed();
    report(&pool, &ids, wall).await
}

async fn report(pool: &PgStore, ids: &[Uuid], wall: Duration) -> anyhow::Result<()> {
    let RunSummary {
        statuses,
        starts,
        accepts,
        reasons,
        escalated,
        needless,
        correct,
        attempts,
        cost_usd: cost,
        always_strong_usd: strong,
    } = pool.run_summary(ids).await?;
    let n = ids.len() as f64;
    let pairs = |v: &[(String, i64)]| v.iter().map(|(t, c)| format!("{t}={c}")).collect::<Vec<_>>().join(" ");
    println!("\n== upshift demo report ==");
    println!("items                 {}", ids.len());
    println!(
        "jobs                  {}",
        statuses
            .iter()
            .map(|(s, c)| format!("{s}={c}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("model calls           {attempts} ({:.2} per item)", attempts as f64 / n);
    println!("start tier            {}", pairs(&starts));
    println!("accepted on tier      {}", pairs(&accepts));
    println!(
        "escalated steps       {escalated} ({:.1}%)",
        100.0 * escalated as f64 / n
    );
    for (r, c) in &reasons {
        println!("  reason {r:<22} {c} ({:.1}% of items)", 100.0 * *c as f64 / n);
    }
    println!("needless escalations  {needless} (the escalated answer was already right)");
    println!(
        "accuracy (labels)     {:.3} ({correct}/{})",
        correct as f64 / n,
        ids.len()
    );
    println!("cost                  ${cost:.4}");
    println!("always-strong cost    ${strong:.4}");
    println!(
        "cost ratio            {:.3}",
        if strong > 0.0 { cost / strong } else { 0.0 }
    );
    println!(
        "wall time             {:.1}s ({:.1} jobs/s)",
        wall.as_secs_f64(),
        n / wall.as_secs_f64()
    );
    Ok(())
}
