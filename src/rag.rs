//! `upshift ask`: a `rag` job from the command line, followed live, then
//! its cited answer, its route and where the time went. The demo and
//! `upshift bench rag` use the same pieces.

use crate::client::{Client, reasons, tier_move};
use std::collections::BTreeMap;
use uuid::Uuid;

/// A job that ended without a defended answer: `upshift ask` exits with
/// [`Undefended::EXIT_CODE`] for it, not 0.
#[derive(Debug, thiserror::Error)]
#[error("job {job} is {status}: no defended answer")]
pub struct Undefended {
    /// The job.
    pub job: Uuid,
    /// `unresolved` or `failed`.
    pub status: String,
}

impl Undefended {
    /// The exit status of a command whose job could not defend its answer.
    pub const EXIT_CODE: u8 = 3;
}

/// Options of `upshift ask`.
#[derive(clap::Args)]
pub struct AskArgs {
    /// The collection to answer from (see `upshift ingest`).
    #[arg(long)]
    pub collection: String,
    /// How much damage a wrong answer does: low, medium or high.
    #[arg(long, default_value = "low")]
    pub blast_radius: String,
    /// Most the job may spend, in US dollars.
    #[arg(long)]
    pub budget_usd: Option<f64>,
    /// The question.
    pub query: String,
}

/// Submits a rag job and waits for it, printing route events as they
/// happen when `progress`. Returns the job id and its status document.
pub async fn ask(client: &Client, args: &AskArgs, progress: bool) -> anyhow::Result<(Uuid, serde_json::Value)> {
    let mut body = serde_json::json!({
        "kind": "rag", "collection": args.collection, "query": args.query, "blast_radius": args.blast_radius,
    });
    if let Some(b) = args.budget_usd {
        body["budget_usd"] = b.into();
    }
    let id = client.submit(&body).await?;
    if progress {
        println!("job {id} submitted");
    }
    Ok((id, client.wait(id, progress).await?))
}

/// Time spent on one step: from its start to its last decision, and in
/// model calls; the tiers it went through.
#[derive(Debug, Default, Clone)]
pub struct StepTime {
    /// Start to last decision, seconds.
    pub wall_s: f64,
    /// Sum of the model calls' latency, seconds.
    pub model_s: f64,
    /// `small → medium` style path of its attempts.
    pub path: Vec<String>,
    /// Reason codes of its escalations.
    pub reasons: Vec<String>,
}

/// Per-step timings from a job's route, in step order of first start.
pub fn step_times(route: &serde_json::Value) -> Vec<(String, StepTime)> {
    let mut order: Vec<String> = Vec::new();
    let mut first: BTreeMap<String, chrono::DateTime<chrono::Utc>> = BTreeMap::new();
    let mut out: BTreeMap<String, StepTime> = BTreeMap::new();
    for e in route["events"].as_array().into_iter().flatten() {
        let Some(step) = e["step"].as_str() else { continue };
        let at: Option<chrono::DateTime<chrono::Utc>> = e["at"].as_str().and_then(|t| t.parse().ok());
        let t = out.entry(step.to_string()).or_default();
        if !order.iter().any(|s| s == step) {
            order.push(step.to_string());
        }
        match e["event"].as_str() {
            Some("dispatch") => t.path.push(e["to_tier"].as_str().unwrap_or("?").to_string()),
            Some("accept" | "unresolved" | "escalate" | "fail") => {
                if e["event"] == "escalate" {
                    t.reasons.extend(reasons(e).into_iter().map(str::to_string));
                }
                t.model_s += e["latency_ms"].as_f64().unwrap_or(0.0) / 1000.0;
                if let (Some(at), Some(start)) = (at, first.get(step)) {
                    t.wall_s = (at - *start).num_milliseconds() as f64 / 1000.0;
                }
            }
            _ => {}
        }
        if let Some(at) = at {
            first.entry(step.to_string()).or_insert(at);
        }
    }
    order
        .into_iter()
        .map(|s| {
            let t = out.remove(&s).unwrap_or_default();
            (s, t)
        })
        .collect()
}

/// Prints a finished rag job: whether its answer was defended, the answer,
/// citations, open findings, the route's decisions with reasons, per-step
/// time and the cost against always-strong.
pub fn print_answer(job: &serde_json::Value, route: &serde_json::Value) {
    let r = &job["result"];
    let answer = r["answer"].as_str().unwrap_or("").trim();
    match job["status"].as_str().unwrap_or("?") {
        "succeeded" => println!("\n== answer (defended) =="),
        "unresolved" => {
            println!("\n== no defended answer (unresolved) ==");
            println!("No tier could defend an answer; the findings below say why.");
            if !answer.is_empty() {
                println!("Best answer found, UNDEFENDED — do not rely on it:");
            }
        }
        other => println!("\n== no answer ({other}) =="),
    }
    if let Some(err) = r.get("error") {
        println!("failed: {err}");
    }
    if !answer.is_empty() {
        println!("{answer}");
    }
    if r["verdict"]["verdict"] == "not_run" {
        println!("critic: not run (no tier's critic is trusted on this class; see docs/rag.md)");
    } else if let Some(v) = r["verdict"]["verdict"].as_str() {
        let conf = r["verdict"]["confidence"]
            .as_f64()
            .map(|c| format!(", confidence {c:.2}"))
            .unwrap_or_default();
        println!(
            "critic: {v} ({} tier{conf})",
            r["verdict"]["tier"].as_str().unwrap_or("?")
        );
    }
    println!("\n== citations ==");
    for c in r["citations"].as_array().into_iter().flatten() {
        println!(
            "[{}] {}\n    {}",
            c["passage_id"].as_str().unwrap_or(""),
            c["title"].as_str().unwrap_or(""),
            c["snippet"].as_str().unwrap_or("").replace('\n', " ")
        );
    }
    let open = r["open_findings"].as_array().cloned().unwrap_or_default();
    if !open.is_empty() {
        println!("\n== open findings ==");
        for f in &open {
            println!(
                "{}: {} ({})",
                f["step"].as_str().unwrap_or("-"),
                f["code"].as_str().unwrap_or(""),
                f["detail"].as_str().unwrap_or("")
            );
        }
    }
    println!("\n== route ==");
    for e in route["events"].as_array().into_iter().flatten() {
        if !matches!(
            e["event"].as_str(),
            Some("start" | "accept" | "unresolved" | "escalate" | "fail" | "cancel")
        ) {
            continue;
        }
        let rs = reasons(e);
        println!(
            "{:<11} {:<8} {:<14} {}{}",
            e["step"].as_str().unwrap_or("-"),
            e["event"].as_str().unwrap_or(""),
            tier_move(e),
            e["model"]
                .as_str()
                .or(e["detail"]["by"].as_str())
                .map(|m| format!("[{m}] "))
                .unwrap_or_default(),
            rs.join(", ")
        );
    }
    println!("\n== time by step ==");
    println!("{:<11} {:>8} {:>8}  tiers", "step", "wall s", "model s");
    for (step, t) in step_times(route) {
        println!(
            "{step:<11} {:>8.1} {:>8.1}  {}",
            t.wall_s,
            t.model_s,
            t.path.join(" → ")
        );
    }
    let (cost, strong) = (
        job["cost_usd"].as_f64().unwrap_or(0.0),
        job["always_strong_cost_usd"].as_f64().unwrap_or(0.0),
    );
    println!("\ncost ${cost:.8}, always-strong estimate ${strong:.8}");
}
