//! `upshift demo`: real jobs on real models, end to end on this machine.
//!
//! Fetches the local models if missing, starts an orchestrator and one worker
//! per tier, submits the labelled tasks of [`crate::tasks`], prints the route events
//! as they happen, then each answer with its route and the cost against
//! always-strong. Then the RAG part ([`rag`]): the PostgreSQL docs are
//! ingested and a question is answered with citations, live.
//! `--replay` runs the RouteLLM replay demo instead.

pub mod rag;
mod replay;

use crate::client::Client;
use crate::local::Stack;
use crate::tasks;
use anyhow::Context;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use upshift_shared::config::Config;
use uuid::Uuid;

/// Options of `upshift demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Run the replay demo: every prompt of a RouteLLM dataset on recorded outputs.
    #[arg(long)]
    replay: bool,
    /// Replay: dataset whose `prompt` column becomes the jobs (default: the first replay dataset).
    #[arg(long, requires = "replay")]
    dataset: Option<PathBuf>,
    /// Replay: submit only the first N prompts.
    #[arg(long, requires = "replay")]
    limit: Option<usize>,
    /// Replay: blast radius of every job.
    #[arg(long, default_value = "low")]
    blast_radius: String,
    /// Worker processes per tier.
    #[arg(long, default_value_t = 1)]
    workers_per_tier: usize,
    /// The question of the RAG part.
    #[arg(long, default_value = rag::QUESTION)]
    question: String,
    /// Skip the RAG part.
    #[arg(long)]
    no_rag: bool,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
}

/// Runs the demo end to end.
pub async fn run(config: Option<&Path>, args: DemoArgs) -> anyhow::Result<()> {
    if args.replay {
        // The children load the same profile through the environment.
        let cfg = Config::load_profile(Some(upshift_shared::config::REPLAY_TOML), config.as_slice())
            .context("loading configuration")?;
        return replay::run(config, &cfg, args).await;
    }
    let cfg = Config::load(config).context("loading configuration")?;
    if crate::models::tiers_need_fetch(&cfg) {
        let dir = cfg.worker.model_dir();
        println!("local models missing in {}: fetching them", dir.display());
        tokio::task::spawn_blocking(move || crate::models::fetch(&dir)).await??;
    }
    println!("upshift demo: {} labelled tasks on these tiers:", tasks::all().len());
    print!("{}", crate::models::tier_table(&cfg));
    let stack = Stack::start(config, &cfg, args.workers_per_tier, &[]).await?;
    println!(
        "local stack up: API {} (logs in {})\n",
        stack.api,
        stack.log_dir.display()
    );
    let mut outcome = drive(&stack, Duration::from_secs(args.timeout_secs)).await;
    if outcome.is_ok() && !args.no_rag {
        outcome = rag::run(&stack.api, &args.question).await;
    }
    stack.stop().await;
    outcome
}

async fn drive(stack: &Stack, timeout: Duration) -> anyhow::Result<()> {
    let client = Client::new(&stack.api, None)?;
    let tasks = tasks::all();
    let started = Instant::now();
    let mut ids = Vec::with_capacity(tasks.len());
    for t in &tasks {
        ids.push(
            client
                .submit(&t.body)
                .await
                .with_context(|| format!("submitting {}", t.name))?,
        );
    }
    // Follow every job's route until all are finished.
    let mut shown: HashMap<Uuid, usize> = HashMap::new();
    let mut done: HashMap<Uuid, serde_json::Value> = HashMap::new();
    while done.len() < ids.len() {
        if started.elapsed() > timeout {
            anyhow::bail!(
                "timed out with {} of {} jobs unfinished",
                ids.len() - done.len(),
                ids.len()
            );
        }
        for (t, id) in tasks.iter().zip(&ids) {
            if done.contains_key(id) {
                continue;
            }
            let route = client.route(*id).await?;
            let events = route["events"].as_array().cloned().unwrap_or_default();
            let from = shown.get(id).copied().unwrap_or(0);
            for e in events.iter().skip(from) {
                println!(
                    "{:>6.1}s  {:<9} {}",
                    started.elapsed().as_secs_f64(),
                    t.name,
                    describe(e)
                );
            }
            shown.insert(*id, events.len());
            let job = client.job(*id).await?;
            if job["status"] != "running" {
                done.insert(*id, job);
            }
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    report(&client, &tasks, &ids, &done, started.elapsed()).await
}

/// One route event as a line: `escalate small→medium: low_confidence`.
fn describe(e: &serde_json::Value) -> String {
    let (tiers, reasons) = (crate::client::tier_move(e), crate::client::reasons(e));
    let mut line = format!("{} {tiers}", e["event"].as_str().unwrap_or("?"));
    if let Some(m) = e["model"].as_str() {
        line.push_str(&format!(" [{m}]"));
    }
    if !reasons.is_empty() {
        line.push_str(&format!(": {}", reasons.join(", ")));
    }
    line
}

async fn report(
    client: &Client,
    tasks: &[tasks::Task],
    ids: &[Uuid],
    done: &HashMap<Uuid, serde_json::Value>,
    wall: Duration,
) -> anyhow::Result<()> {
    println!("\n== answers ==");
    let (mut correct, mut cost, mut strong) = (0, 0.0, 0.0);
    let (mut defended, mut wrong_accepted) = (0, 0);
    for (t, id) in tasks.iter().zip(ids) {
        let job = &done[id];
        let route = client.route(*id).await?;
        let step = &job["steps"][0];
        let output = step["output"].as_str().unwrap_or("").trim().to_string();
        let ok = tasks::is_correct(&t.expected, &output);
        correct += usize::from(ok);
        let accepted = job["status"] == "succeeded";
        defended += usize::from(accepted);
        wrong_accepted += usize::from(accepted && !ok);
        cost += job["cost_usd"].as_f64().unwrap_or(0.0);
        strong += job["always_strong_cost_usd"].as_f64().unwrap_or(0.0);
        let path: Vec<String> = route["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| matches!(e["event"].as_str(), Some("accept" | "escalate" | "fail" | "unresolved")))
            .map(describe)
            .collect();
        let status = if accepted {
            "defended"
        } else {
            "UNRESOLVED, not relied on"
        };
        println!(
            "{} {:<9} {}  (expected {}; {status})\n            route: {}",
            if ok { "✓" } else { "✗" },
            t.name,
            output.replace('\n', " "),
            t.expected,
            path.join(" → ")
        );
    }
    println!("\n== summary ==");
    println!(
        "correct               {correct}/{} (best answers, defended or not)",
        tasks.len()
    );
    println!("defended              {defended}/{}", tasks.len());
    println!("wrong and accepted    {wrong_accepted}");
    println!("cost                  ${cost:.8}");
    println!("always-strong cost    ${strong:.8} (estimate: each step's first prompt and answer at strong prices)");
    if strong > 0.0 {
        println!("cost ratio            {:.2}", cost / strong);
    }
    println!("wall time             {:.1}s", wall.as_secs_f64());
    Ok(())
}
