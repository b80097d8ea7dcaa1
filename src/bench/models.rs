//! `upshift bench models`: the local provider's speed and memory per model,
//! beside llama.cpp's own figure from `llama-cpp-python` on the same file and
//! prompt in the same run, then a short eval of the tier ladder on the demo's
//! labelled tasks (per-tier accuracy and escalation rate).
//!
//! Each model is measured in a child process (`--only`), so its peak memory
//! is its own.

use crate::tasks;
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use upshift_shared::Tier;
use upshift_shared::config::{Config, ProviderConfig};
use upshift_shared::messages::TaskMessage;
use upshift_shared::verify;
use upshift_worker::providers::{LocalModel, ModelProvider, Provider};

/// Options of `upshift bench models`.
#[derive(clap::Args)]
pub struct ModelsArgs {
    /// Tokens generated per speed measurement.
    #[arg(long, default_value_t = 64)]
    gen_tokens: u32,
    /// Skip the llama-cpp-python comparison.
    #[arg(long)]
    no_python: bool,
    /// Internal: measure one catalog model in this process and print JSON.
    #[arg(long, hide = true)]
    only: Option<String>,
}

/// One speed measurement.
#[derive(Debug, Serialize, Deserialize)]
struct Speed {
    prompt_tokens: u32,
    prompt_tps: f64,
    gen_tokens: u32,
    gen_tps: f64,
    peak_rss_mib: f64,
}

/// A prompt of a typical step's size (~130 tokens).
fn bench_prompt() -> String {
    let t = tasks::all();
    let mut text = String::from("Classify each text as positive or negative.\n\n");
    for _ in 0..3 {
        for task in &t[..2] {
            text.push_str(&format!(
                "Text: {}\n",
                task.body["steps"][0]["input"].as_str().unwrap_or("")
            ));
        }
    }
    text.push_str("Answer:");
    text
}

/// Runs the benchmark.
pub async fn run(cfg: &Config, config: Option<&Path>, args: ModelsArgs) -> anyhow::Result<()> {
    if let Some(name) = &args.only {
        let speed = measure(cfg, name, args.gen_tokens)?;
        println!("{}", serde_json::to_string(&speed)?);
        return Ok(());
    }
    let dir = cfg.worker.model_dir();
    let mut rows = vec![
        [
            "model",
            "engine",
            "prompt tok",
            "prompt tok/s",
            "gen tok",
            "gen tok/s",
            "peak RSS",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let mut seen: Vec<PathBuf> = Vec::new();
    for m in &cfg.models {
        let ProviderConfig::Local(l) = &m.provider else {
            continue;
        };
        let path = l.file(&dir);
        if seen.contains(&path) {
            continue;
        }
        seen.push(path.clone());
        let mut cmd = tokio::process::Command::new(std::env::current_exe()?);
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        let out = cmd
            .args([
                "bench",
                "models",
                "--gen-tokens",
                &args.gen_tokens.to_string(),
                "--only",
                &m.name,
            ])
            .env("RUST_LOG", "warn")
            .output()
            .await?;
        if !out.status.success() {
            bail!("measuring {}: {}", m.name, String::from_utf8_lossy(&out.stderr));
        }
        let s: Speed = serde_json::from_slice(&out.stdout).context("reading the child's figures")?;
        rows.push(row(&m.name, "upshift (llama-cpp-2)", &s));
        if !args.no_python {
            match python_speed(&path, l.threads, args.gen_tokens).await {
                Ok(p) => rows.push(row(&m.name, "llama-cpp-python", &p)),
                Err(e) => rows.push(vec![m.name.clone(), format!("llama-cpp-python: {e:#}")]),
            }
        }
    }
    println!("== local provider speed (2 threads, greedy) ==");
    print!("{}", crate::table::render(&rows, None));
    println!("\n== tier ladder on the demo's labelled tasks ==");
    ladder(cfg).await
}

fn row(name: &str, engine: &str, s: &Speed) -> Vec<String> {
    vec![
        name.into(),
        engine.into(),
        s.prompt_tokens.to_string(),
        format!("{:.1}", s.prompt_tps),
        s.gen_tokens.to_string(),
        format!("{:.1}", s.gen_tps),
        format!("{:.0} MiB", s.peak_rss_mib),
    ]
}

fn measure(cfg: &Config, name: &str, n_gen: u32) -> anyhow::Result<Speed> {
    let m = cfg.model(name).with_context(|| format!("no model `{name}`"))?;
    let ProviderConfig::Local(l) = &m.provider else {
        bail!("`{name}` is not a local model")
    };
    let model = LocalModel::load(l, &cfg.worker.model_dir()).map_err(anyhow::Error::msg)?;
    let text = bench_prompt();
    model.bench(&text, 8).map_err(anyhow::Error::msg)?; // warm-up
    let (pt, ps, gt, gs) = model.bench(&text, n_gen).map_err(anyhow::Error::msg)?;
    Ok(Speed {
        prompt_tokens: pt,
        prompt_tps: f64::from(pt) / ps,
        gen_tokens: gt,
        gen_tps: f64::from(gt) / gs,
        peak_rss_mib: peak_rss_kib() as f64 / 1024.0,
    })
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("VmHWM"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// llama.cpp's own timings through `llama-cpp-python`, same file and prompt.
async fn python_speed(path: &Path, threads: u32, n_gen: u32) -> anyhow::Result<Speed> {
    const SCRIPT: &str = r#"
import json, resource, sys, time
from llama_cpp import Llama
path, threads, gen, prompt = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.stdin.read()
llm = Llama(model_path=path, n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)
toks = llm.tokenize(prompt.encode(), add_bos=False, special=True)
def run(n):
    llm.reset()
    t0 = time.perf_counter(); llm.eval(toks); t1 = time.perf_counter()
    for _ in range(n):
        tok = int(llm.scores[llm.n_tokens - 1].argmax())
        llm.eval([tok])
    return t1 - t0, time.perf_counter() - t1
run(8)
ps, gs = run(gen)
print(json.dumps({"prompt_tokens": len(toks), "prompt_tps": len(toks) / ps, "gen_tokens": gen,
                  "gen_tps": gen / gs, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"#;
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(path)
        .arg(threads.to_string())
        .arg(n_gen.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("python3")?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(bench_prompt().as_bytes())
        .await?;
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!("{}", err.lines().last().unwrap_or("failed"));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Runs every demo task on every tier's model directly and reports what the
/// router would see: accuracy, and how often the tier's answer would be
/// escalated (a verifier finding or confidence under the tier's threshold).
async fn ladder(cfg: &Config) -> anyhow::Result<()> {
    let tasks = tasks::all();
    let mut rows = vec![
        [
            "tier",
            "model",
            "accuracy",
            "escalation rate",
            "mean confidence",
            "tokens/task",
            "s/task",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for tier in Tier::ALL {
        let m = cfg.tier_model(*tier);
        let provider = Provider::from_config(m, &cfg.worker.model_dir())?;
        let threshold = cfg.routing.accept.get(tier).map_or(0.0, |a| a.min_confidence);
        let (mut right, mut escalate, mut conf, mut tokens) = (0, 0, 0.0, 0u64);
        let started = std::time::Instant::now();
        for t in &tasks {
            let msg = task_message(t, *tier)?;
            let c = provider
                .complete(&msg)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", t.name))?;
            right += usize::from(tasks::is_correct(&t.expected, &c.output));
            let expect = verify::Expect {
                rag: None,
                schema: msg.output_schema.as_ref(),
                labels: &msg.labels,
                input: Some(&msg.input),
            };
            let kinds = verify::default_verifiers(msg.task, msg.output_schema.is_some(), !msg.labels.is_empty());
            let findings = verify::run(&kinds, &c.output, expect);
            let confidence = c.confidence.unwrap_or(1.0);
            escalate += usize::from(!findings.is_empty() || confidence < threshold);
            conf += confidence;
            tokens += u64::from(c.tokens_in.unwrap_or(0) + c.tokens_out.unwrap_or(0));
        }
        let n = tasks.len() as f64;
        rows.push(vec![
            tier.to_string(),
            m.name.clone(),
            format!("{right}/{}", tasks.len()),
            format!("{:.2}", escalate as f64 / n),
            format!("{:.2}", conf / n),
            format!("{:.0}", tokens as f64 / n),
            format!("{:.2}", started.elapsed().as_secs_f64() / n),
        ]);
    }
    print!("{}", crate::table::render(&rows, None));
    Ok(())
}

/// The task message of a demo task's single step.
fn task_message(t: &tasks::Task, tier: Tier) -> anyhow::Result<TaskMessage> {
    let step = &t.body["steps"][0];
    crate::tasks::direct_task(
        tier,
        &step["task"],
        &step["input"],
        step.get("labels").unwrap_or(&serde_json::json!([])),
        step.get("output_schema").unwrap_or(&serde_json::Value::Null),
    )
}
