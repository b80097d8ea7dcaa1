//! `upshift bench …`: runs that print figures (no timed tests).

pub mod chaos;
pub mod chat;
pub mod cluster;
pub mod embed;
pub mod engine;
pub mod models;
pub mod rag;
pub mod retrieval;
pub mod streams;

use anyhow::Context;
use std::path::{Path, PathBuf};
use upshift_shared::config::{Config, ProviderConfig};

/// Writes a config for a run of its own: subject prefix `name`, database
/// `upshift_<name>` on the configured server, replay latency `latency_ms`, a
/// free API port; `tweak` adjusts the rest. Returns the file and database URL.
pub fn isolated_config(
    cfg: &Config,
    name: &str,
    latency_ms: u64,
    dir: &Path,
    tweak: impl FnOnce(&mut Config),
) -> anyhow::Result<(PathBuf, String)> {
    let mut c = cfg.clone();
    c.nats.prefix = name.to_string();
    c.api.listen = ([127, 0, 0, 1], 0).into();
    let base = c.database.url.split('?').next().unwrap_or_default();
    let (server, _) = base.rsplit_once('/').context("database.url has no database name")?;
    c.database.url = format!("{server}/upshift_{name}");
    // A benchmark measures the engine, not one tenant's admission limits.
    c.limits.submit_per_sec = 0;
    c.limits.max_jobs_in_flight = 0;
    for m in &mut c.models {
        if let ProviderConfig::Replay { latency_ms: l, .. } = &mut m.provider {
            *l = latency_ms;
        }
    }
    tweak(&mut c);
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, toml::to_string(&c).context("serialising the run's config")?)?;
    Ok((path, c.database.url))
}

/// Deletes a run's streams (prefix `name`) and drops its database.
pub async fn drop_run(cfg: &Config, name: &str, db_url: &str) {
    if let Ok(client) = upshift_runtime::connect_nats(&cfg.nats).await {
        let js = async_nats::jetstream::new(client);
        let s = upshift_shared::subjects::Subjects::new(name);
        for stream in [s.tasks_stream(), s.results_stream(), s.dead_stream()] {
            let _ = js.delete_stream(stream).await;
        }
    }
    let _ = upshift_orchestrator::store::drop_database(db_url).await;
}

/// Benchmarks and fault runs.
#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// The OpenAI-compatible door's overhead against the job API: p50/p99
    /// of the same jobs both ways at 1, 16 and 64 clients, no model time.
    Chat(chat::ChatArgs),
    /// Jobs through orchestrator replicas and worker pools while processes are
    /// kill -9'ed and NATS and Postgres restart; then checks every guarantee.
    Chaos(chaos::ChaosArgs),
    /// Dense retrieval's cost here: passages embedded per second, a
    /// question's embedding, brute-force scans of 10 thousand to 1 million vectors.
    Embed(embed::EmbedArgs),
    /// Throughput, per-hop overhead and memory of the whole system next to the
    /// raw NATS and Postgres floor, measured in the same run (use --release).
    Engine(engine::EngineArgs),
    /// Local model speed and memory beside llama-cpp-python's figure, and the
    /// tier ladder's accuracy and escalation rate on the demo's tasks.
    Models(models::ModelsArgs),
    /// End-to-end latency of rag jobs on the configured models over the
    /// PostgreSQL docs, split by step, with ingestion throughput.
    Rag(rag::RagArgs),
    /// Search latency (p50/p90/p99) over a collection through the API.
    Retrieval(retrieval::RetrievalArgs),
}
