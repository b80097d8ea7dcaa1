//! `upshift bench engine`: upshift's own throughput and overhead, next to the
//! floor of its two services measured in the same run.
//!
//! 1. A short calibration run with sqlx statement logging counts the
//!    Postgres statements (each one a round trip) per step.
//! 2. The main run sends `--jobs` single-step jobs (GSM8K prompts, so a share
//!    of them escalate) through the API to the orchestrator(s) and workers with
//!    a zero-latency replay provider, and times them to the last decision.
//! 3. The floor: a JetStream publish → pull → ack loop on a stream with the
//!    same settings, and single-row inserts of a route-event-sized row into
//!    Postgres, each at the same concurrency.
//! 4. Memory: peak RSS of every process, and the orchestrator's RSS at idle
//!    and with `--backlog` steps queued while no worker runs.

use super::isolated_config;
use crate::client::Client;
use crate::eval::dataset::Item;
use crate::eval::dataset::first_dataset;
use crate::fleet::Fleet;
use anyhow::Context;
use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use std::path::Path;
use std::time::{Duration, Instant};
use upshift_orchestrator::store::{PgStore, RunTotals};
use upshift_shared::Tier;
use upshift_shared::config::Config;

/// Options of `upshift bench engine`.
#[derive(clap::Args)]
pub struct EngineArgs {
    /// Jobs in the main run (one step each).
    #[arg(long, default_value_t = 20_000)]
    jobs: usize,
    /// Worker processes per tier.
    #[arg(long, default_value_t = 1)]
    workers_per_tier: usize,
    /// Orchestrator replicas.
    #[arg(long, default_value_t = 1)]
    orchestrators: usize,
    /// Concurrent submitters, and the concurrency of the floor loops.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Steps queued with no worker running, to measure memory under backlog (0 skips).
    #[arg(long, default_value_t = 100_000)]
    backlog: usize,
    /// Messages and rows for each floor measurement.
    #[arg(long, default_value_t = 20_000)]
    floor_ops: usize,
    /// Clients following the main run's jobs over `GET /v1/jobs/{id}/events`
    /// (job i by client i mod N, submit to `done`: at most N streams open at
    /// once); compare jobs/s with a run without (0).
    #[arg(long, default_value_t = 0)]
    streams: usize,
    /// Model time per call in the main run (replay, milliseconds): jobs
    /// that last as long as real model calls make them, with workers that
    /// run enough calls at once not to be the bound.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
}

/// Runs the engine benchmark and prints its table.
pub async fn run(cfg: &Config, args: EngineArgs) -> anyhow::Result<()> {
    let id = format!("bench{}", std::process::id());
    let dir = std::env::temp_dir().join(format!("upshift-{id}"));
    std::fs::create_dir_all(&dir)?;
    let items = crate::eval::dataset::load(&first_dataset(cfg)?, None)?.items;
    println!(
        "upshift bench engine: {} jobs, {} orchestrator(s), {} worker(s) per tier, concurrency {}",
        args.jobs, args.orchestrators, args.workers_per_tier, args.concurrency
    );

    let statements = statements_per_step(cfg, &items, &dir, &format!("{id}cal")).await?;
    let (config, db_url) = isolated_config(cfg, &id, args.latency_ms, &dir, |c| {
        c.orchestrator.result_batch = 64;
        if args.latency_ms > 0 {
            c.worker.concurrency = c.worker.concurrency.max(args.jobs.min(4096));
        }
        c.api.max_streams_per_tenant = c.api.max_streams_per_tenant.max(args.streams);
    })?;
    let mut fleet = fleet(&config, &dir, &args);
    fleet.start(0).await?;
    fleet.revive().await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = status_kb(fleet.pid(0), "VmRSS");
    let pool = PgStore::for_reports(&db_url)?;
    let before = pool.pg_counters().await?;
    let stop = tokio_util::sync::CancellationToken::new();
    let (followers, watchers) = super::streams::hold(fleet.apis(), args.streams, stop.clone());
    let started = Instant::now();
    let submitted = submit(&fleet.apis(), &items, args.jobs, args.concurrency, Some(followers)).await?;
    wait_terminal(&pool, Duration::from_secs(3600)).await?;
    let elapsed = started.elapsed().as_secs_f64();
    stop.cancel();
    let streams_held = watchers.await;
    // Backends flush their statistics at most once a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = pool.pg_counters().await?;
    let hops = pool.hops().await?;
    // Decisions over the span from the first to the last: with model time,
    // the jobs/s above also counts the wait for the first results.
    let RunTotals {
        attempts,
        escalated,
        decisions,
        decision_span_secs: span,
        event_row_bytes: row_bytes,
    } = pool.run_totals().await?;
    let peaks: Vec<(String, Option<u64>)> = (0..fleet.slots.len())
        .map(|i| (fleet.slots[i].name.clone(), status_kb(fleet.pid(i), "VmHWM")))
        .collect();
    // Idle again after the run: the baseline the backlog is compared with.
    let warm_idle_rss = status_kb(fleet.pid(0), "VmRSS");

    // Backlog: stop the workers and queue steps; the orchestrator must not grow with the queue.
    let mut backlog_rss = None;
    if args.backlog > 0 {
        for i in args.orchestrators..fleet.slots.len() {
            fleet.kill9(i).await;
        }
        submit(&fleet.apis(), &items, args.backlog, args.concurrency, None).await?;
        wait_published(&pool).await?;
        backlog_rss = status_kb(fleet.pid(0), "VmRSS");
    }
    fleet.stop().await;

    let nats_floor = nats_floor(cfg, &id, args.floor_ops, args.concurrency).await?;
    let pg_floor = pool.commit_floor(args.floor_ops, args.concurrency).await?;
    let steps_per_s = submitted as f64 / elapsed;
    let floor = nats_floor.min(pg_floor);
    let txns = (after.0 - before.0) as f64 / submitted as f64;
    let rows = (after.1 - before.1) as f64 / submitted as f64;

    println!("\n== upshift bench engine ==");
    println!("jobs (= steps)                   {submitted} in {elapsed:.1}s");
    println!("jobs/s, steps/s                  {steps_per_s:.0}");
    if let Some(span) = span.filter(|s| *s > 0.0) {
        println!(
            "decisions/s, first to last       {:.0} ({decisions} in {span:.1}s)",
            decisions as f64 / span
        );
    }
    if args.streams > 0 {
        println!(
            "event streams                    {} watchers, {} open at most at once, {} opened, {} saw `done`",
            args.streams, streams_held.peak, streams_held.opened, streams_held.done
        );
    }
    println!(
        "attempts/s                       {:.0} ({attempts} attempts, {escalated} escalations)",
        attempts as f64 / elapsed
    );
    for (name, p) in &hops {
        println!(
            "overhead {name:<23} p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms",
            p[0], p[1], p[2]
        );
    }
    println!(
        "postgres statements per step     {}",
        statements.map_or("n/a".into(), |s| format!("{s:.1} (each a round trip)"))
    );
    println!("postgres transactions per step   {txns:.2}");
    println!("rows written per step            {rows:.1}");
    println!("bytes per route event row        {row_bytes:.0}");
    for (name, kb) in &peaks {
        println!("peak RSS {name:<23} {}", mib(*kb));
    }
    println!(
        "orchestrator RSS idle            {} at start, {} after the run",
        mib(idle_rss),
        mib(warm_idle_rss)
    );
    if args.backlog > 0 {
        println!("orchestrator RSS, {} queued {}", args.backlog, mib(backlog_rss));
        if let (Some(i), Some(b)) = (warm_idle_rss, backlog_rss) {
            println!(
                "backlog / idle RSS               {:.2}x (idle after the run)",
                b as f64 / i as f64
            );
        }
    }
    println!(
        "floor: JetStream pub→pull→ack    {nats_floor:.0} msg/s (concurrency {})",
        args.concurrency
    );
    println!(
        "floor: Postgres 1-row commits    {pg_floor:.0} rows/s (concurrency {})",
        args.concurrency
    );
    println!("upshift steps/s / slower floor   {:.2}", steps_per_s / floor);

    super::drop_run(cfg, &id, &db_url).await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn fleet(config: &Path, dir: &Path, args: &EngineArgs) -> Fleet {
    let mut fleet = Fleet::new(Some(config), dir);
    fleet.env("RUST_LOG", "warn");
    for i in 0..args.orchestrators {
        fleet.add(format!("orchestrator-{i}"), &["orchestrator"]);
    }
    for tier in Tier::ALL {
        for i in 0..args.workers_per_tier {
            fleet.add(format!("worker-{tier}-{i}"), &["worker", "--tier", tier.as_str()]);
        }
    }
    fleet
}

/// Statements sqlx logs per step over a short run (each is one round trip).
async fn statements_per_step(cfg: &Config, items: &[Item], dir: &Path, name: &str) -> anyhow::Result<Option<f64>> {
    let (config, db_url) = isolated_config(cfg, name, 0, dir, |_| {})?;
    let mut fleet = Fleet::new(Some(&config), dir);
    fleet.env("RUST_LOG", "warn,sqlx::query=debug");
    fleet.add("calibration-orchestrator".into(), &["orchestrator"]);
    for tier in Tier::ALL {
        fleet.add(
            format!("calibration-worker-{tier}"),
            &["worker", "--tier", tier.as_str()],
        );
    }
    fleet.revive().await?;
    let pool = PgStore::for_reports(&db_url)?;
    let count_logged = || {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("calibration-orchestrator"))
            .map(|e| {
                std::fs::read_to_string(e.path())
                    .unwrap_or_default()
                    .matches("sqlx::query")
                    .count()
            })
            .sum::<usize>()
    };
    // Start-up (migrations, checks) is not part of a step.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = count_logged();
    let n = 200;
    submit(&fleet.apis(), items, n, 8, None).await?;
    wait_terminal(&pool, Duration::from_secs(120)).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logged = count_logged().saturating_sub(baseline);
    fleet.stop().await;
    super::drop_run(cfg, name, &db_url).await;
    Ok((logged > 0).then(|| logged as f64 / n as f64))
}

/// Submits `n` single-step jobs over the API with `concurrency` in flight,
/// handing each one's id to `followers` (dropped when all are submitted).
async fn submit(
    apis: &[String],
    items: &[Item],
    n: usize,
    concurrency: usize,
    followers: Option<super::streams::Followers>,
) -> anyhow::Result<usize> {
    let clients: Vec<Client> = apis
        .iter()
        .map(|a| Client::new(a, None))
        .collect::<anyhow::Result<_>>()?;
    let followers = &followers;
    let done = futures::stream::iter(0..n)
        .map(|i| {
            let item = &items[i % items.len()];
            let client = &clients[i % clients.len()];
            async move {
                let id = client.submit(&item.job_body("low")).await?;
                if let Some(f) = followers {
                    f.follow(i, id);
                }
                anyhow::Ok(id)
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
    done.into_iter().collect::<anyhow::Result<Vec<_>>>().map(|v| v.len())
}

async fn wait_terminal(pool: &PgStore, limit: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + limit;
    loop {
        let running = pool.jobs_running().await?;
        if running == 0 {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < until, "{running} jobs still running after {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_published(pool: &PgStore) -> anyhow::Result<()> {
    for _ in 0..3000 {
        if pool.unpublished_count().await? == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the backlog was not published within 5 minutes")
}

/// JetStream publish → pull → ack on a stream configured like the task stream.
async fn nats_floor(cfg: &Config, id: &str, n: usize, concurrency: usize) -> anyhow::Result<f64> {
    let client = upshift_runtime::connect_nats(&cfg.nats).await?;
    let js = jetstream::new(client);
    let name = format!("FLOOR_{}", id.to_ascii_uppercase());
    let subject = format!("floor{id}.x");
    let s = js
        .create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            duplicate_window: cfg.nats.duplicate_window,
            ..Default::default()
        })
        .await?;
    let c = s
        .create_consumer(consumer::pull::Config {
            durable_name: Some("floor".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await?;
    let payload = bytes::Bytes::from(vec![b'x'; 600]);
    let started = Instant::now();
    let puller = tokio::spawn(async move {
        let mut msgs = c.stream().max_messages_per_batch(concurrency).messages().await?;
        let mut got = 0;
        while got < n {
            let m = msgs
                .next()
                .await
                .context("stream ended")?
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            m.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            got += 1;
        }
        anyhow::Ok(())
    });
    futures::stream::iter(0..n)
        .map(|i| {
            let (js, subject, payload) = (js.clone(), subject.clone(), payload.clone());
            async move {
                let mut h = async_nats::HeaderMap::new();
                h.insert("Nats-Msg-Id", i.to_string().as_str());
                js.publish_with_headers(subject, h, payload).await?.await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<()>>()?;
    puller.await??;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let _ = js.delete_stream(name).await;
    Ok(rate)
}

/// A `VmRSS`/`VmHWM` figure of a process, in KiB.
fn status_kb(pid: Option<u32>, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn mib(kb: Option<u64>) -> String {
    kb.map_or("n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}
