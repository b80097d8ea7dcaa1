//! `upshift bench rag`: end-to-end latency of `rag` jobs on the configured
//! (by default local) models over the PostgreSQL documentation, split by
//! step, with the ingestion throughput and the tiers each step needed.
//! Starts its own orchestrator and workers on a database of its own.

use crate::client::Client;
use crate::demo::rag::ensure_docs;
use crate::ingest::IngestArgs;
use crate::local::Stack;
use crate::rag::{AskArgs, ask, step_times};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;
use upshift_shared::config::Config;
use upshift_shared::stats::quantile;

/// Questions about the PostgreSQL 15 documentation.
const QUESTIONS: &[&str] = &[
    "Which setting controls how much information is written to the write-ahead log?",
    "How do I build an index without locking out writes to the table?",
    "What does VACUUM do with the storage occupied by dead tuples?",
    "Which setting sets the amount of memory the server uses for shared memory buffers?",
    "Which TCP/IP addresses does the server listen on, and which setting controls them?",
];

/// Options of `upshift bench rag`.
#[derive(clap::Args)]
pub struct RagArgs {
    /// Questions to ask (of the built-in five), one job at a time.
    #[arg(long, default_value_t = 5)]
    questions: usize,
}

/// Runs the benchmark.
pub async fn run(cfg: &Config, args: RagArgs) -> anyhow::Result<()> {
    let docs = ensure_docs()?;
    if crate::models::tiers_need_fetch(cfg) {
        let dir = cfg.worker.model_dir();
        tokio::task::spawn_blocking(move || crate::models::fetch(&dir)).await??;
    }
    let name = format!("benchrag{}", std::process::id());
    let dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&dir)?;
    let (path, db_url) = super::isolated_config(cfg, &name, 0, &dir, |_| {})?;
    print!("{}", crate::models::tier_table(cfg));
    let stack = Stack::start(Some(path.as_path()), cfg, 1, &[]).await?;
    let outcome = drive(&stack.api, &docs, args.questions.clamp(1, QUESTIONS.len())).await;
    stack.stop().await;
    super::drop_run(cfg, &name, &db_url).await;
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

async fn drive(api: &str, docs_dir: &Path, n: usize) -> anyhow::Result<()> {
    let client = Client::new(api, None)?;
    // Ingest prints its own throughput.
    crate::ingest::run(&client, IngestArgs::new("pg", vec![docs_dir.to_path_buf()])).await?;
    let mut by_step: BTreeMap<String, Vec<(f64, f64, String)>> = BTreeMap::new();
    let mut reasons: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut totals = Vec::new();
    // Submit to done minus the time the models took: what orchestration
    // (retrieval, verifiers, NATS hops, Postgres, queueing) adds per job.
    let mut overheads = Vec::new();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for q in &QUESTIONS[..n] {
        let args = AskArgs {
            collection: "pg".into(),
            blast_radius: "low".into(),
            budget_usd: None,
            query: q.to_string(),
        };
        let t = Instant::now();
        let (id, job) = ask(&client, &args, false).await?;
        totals.push(t.elapsed().as_secs_f64());
        *outcomes
            .entry(job["status"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
        let route = client.route(id).await?;
        let steps = step_times(&route);
        let model_s: f64 = steps.iter().map(|(_, st)| st.model_s).sum();
        overheads.push((totals.last().unwrap() - model_s).max(0.0));
        for (step, st) in steps {
            for r in &st.reasons {
                *reasons.entry(step.clone()).or_default().entry(r.clone()).or_default() += 1;
            }
            by_step
                .entry(step)
                .or_default()
                .push((st.wall_s, st.model_s, st.path.join("→")));
        }
        let status = match job["status"].as_str() {
            Some("succeeded") => "defended",
            Some(other) => other,
            None => "?",
        };
        println!("{:>6.1}s  {status:<10} {q}", totals.last().unwrap());
    }
    // A succeeded rag job is a defended answer; unresolved means no tier could
    // defend one (see docs/rag.md).
    let outcomes: Vec<String> = outcomes
        .iter()
        .map(|(s, c)| format!("{c} {}", if s == "succeeded" { "defended" } else { s }))
        .collect();
    println!("\nupshift bench rag: {n} jobs one at a time: {}", outcomes.join(", "));
    println!(
        "{:<11} {:>9} {:>9} {:>10}  tiers used; escalation reasons",
        "step", "p50 wall", "max wall", "p50 model"
    );
    for step in ["retrieve", "extract", "synthesise", "critique"] {
        let Some(rows) = by_step.get(step) else { continue };
        let mut wall: Vec<f64> = rows.iter().map(|r| r.0).collect();
        let mut model: Vec<f64> = rows.iter().map(|r| r.1).collect();
        let mut paths: BTreeMap<&str, usize> = BTreeMap::new();
        for r in rows {
            *paths.entry(r.2.as_str()).or_default() += 1;
        }
        let paths: Vec<String> = paths.iter().map(|(p, c)| format!("{p} ×{c}")).collect();
        let why: Vec<String> = reasons
            .get(step)
            .into_iter()
            .flatten()
            .map(|(r, c)| format!("{r} ×{c}"))
            .collect();
        println!(
            "{step:<11} {:>8.1}s {:>8.1}s {:>9.1}s  {}; {}",
            quantile(&mut wall, 0.5),
            wall.iter().copied().fold(0.0, f64::max),
            quantile(&mut model, 0.5),
            paths.join(", "),
            if why.is_empty() {
                "-".to_string()
            } else {
                why.join(", ")
            }
        );
    }
    println!(
        "{:<11} {:>8.1}s {:>8.1}s",
        "job",
        quantile(&mut totals.clone(), 0.5),
        totals.iter().copied().fold(0.0, f64::max)
    );
    println!(
        "{:<11} {:>8.2}s {:>8.2}s  job time minus model time (retrieval, verifiers, NATS, Postgres)",
        "overhead",
        quantile(&mut overheads.clone(), 0.5),
        overheads.iter().copied().fold(0.0, f64::max)
    );
    Ok(())
}
