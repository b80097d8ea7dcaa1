//! `upshift bench chaos`: the fault run. Jobs flow through orchestrator
//! replicas and worker pools (replay provider with simulated latency) while
//! random processes are killed with SIGKILL and restarted, NATS restarts once
//! and Postgres once. With `--cluster` it runs on a 3-node JetStream cluster
//! of its own (streams with 3 replicas) and kills -9 one NATS node at a time,
//! several times, instead of restarting the single server. Afterwards it checks, from Postgres and JetStream:
//! every job terminal; every finished step decided exactly once; no attempt
//! dispatched or decided twice; every call's cost counted once; and it prints
//! the redeliveries seen. Any violation makes it exit non-zero.
//!
//! Loopback only, bounded in jobs and time; it uses its own database and
//! subject prefix, removed after a clean run.

use super::cluster::{NatsCluster, sh};
use super::isolated_config;
use crate::client::Client;
use crate::fleet::Fleet;
use crate::preflight::{NATS_START, PG_START};
use anyhow::{Context, bail};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use upshift_orchestrator::store::{FaultCounts, PgStore};
use upshift_shared::Tier;
use upshift_shared::config::Config;
use uuid::Uuid;

const NATS_STOP: &str = "start-stop-daemon --stop --oknodo --retry 10 --exec /usr/sbin/nats-server";
const PG_STOP: &str = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main stop";

/// Options of `upshift bench chaos`.
#[derive(clap::Args)]
pub struct ChaosArgs {
    /// Jobs to submit.
    #[arg(long, default_value_t = 1000)]
    jobs: usize,
    /// Processes to kill -9 (and restart) along the way.
    #[arg(long, default_value_t = 10)]
    kills: usize,
    /// Orchestrator replicas.
    #[arg(long, default_value_t = 2)]
    orchestrators: usize,
    /// Worker processes per tier.
    #[arg(long, default_value_t = 2)]
    workers_per_tier: usize,
    /// Simulated model latency, milliseconds.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// Give up waiting for jobs after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// Do not restart NATS and Postgres (for machines where this user cannot).
    #[arg(long)]
    no_service_restarts: bool,
    /// Seed of the random kill schedule.
    #[arg(long)]
    seed: Option<u64>,
    /// Run on a 3-node NATS JetStream cluster started for the run (streams
    /// with 3 replicas) and kill -9 one of its nodes this many times.
    #[arg(long, value_name = "NODE_KILLS")]
    cluster: Option<usize>,
}

/// What happened during the run.
#[derive(Default)]
struct Log {
    kills: Vec<String>,
    nats_restarts: Vec<String>,
    pg_restart: Option<String>,
}

/// Runs the chaos run.
pub async fn run(cfg: &Config, args: ChaosArgs) -> anyhow::Result<()> {
    let run_id = format!("{}{}", std::process::id(), chrono::Utc::now().timestamp() % 100_000);
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    fastrand::seed(seed);
    let dir = std::env::temp_dir().join(format!("upshift-chaos-{run_id}"));
    std::fs::create_dir_all(&dir)?;
    let cluster = match args.cluster {
        Some(_) => {
            super::cluster::check_installed()?;
            let c = NatsCluster::start(&dir, &format!("chaos{run_id}")).await?;
            println!("NATS cluster: {}", c.url());
            Some(c)
        }
        None => None,
    };
    let mut nats = cfg.nats.clone();
    if let Some(c) = &cluster {
        (nats.url, nats.replicas) = (c.url(), 3);
    }
    let (config, db_url) = isolated_config(cfg, &format!("chaos{run_id}"), args.latency_ms, &dir, |c| {
        (c.nats.url, c.nats.replicas) = (nats.url.clone(), nats.replicas);
        c.nats.ack_wait = Duration::from_secs(10);
        c.worker.progress_interval = Duration::from_secs(3);
        c.orchestrator.attempt_deadline = Duration::from_secs(60);
    })?;
    let dataset = crate::eval::dataset::first_dataset(cfg)?;
    let items = crate::eval::dataset::load(&dataset, None)?.items;
    println!(
        "chaos run {run_id}: {} jobs, {} kills, {} orchestrators, {} workers per tier, {} ms latency, seed {seed}",
        args.jobs, args.kills, args.orchestrators, args.workers_per_tier, args.latency_ms
    );
    println!("logs and config in {}", dir.display());

    let mut fleet = Fleet::new(Some(&config), &dir);
    for i in 0..args.orchestrators {
        fleet.add(format!("orchestrator-{i}"), &["orchestrator"]);
    }
    for tier in Tier::ALL {
        for i in 0..args.workers_per_tier {
            fleet.add(format!("worker-{tier}-{i}"), &["worker", "--tier", tier.as_str()]);
        }
    }
    fleet.start(0).await?; // the first orchestrator creates the database and streams
    fleet.revive().await?;
    let fleet = Arc::new(Mutex::new(fleet));
    let started = Instant::now();

    // Submissions are paced to span the whole kill schedule.
    let span = Duration::from_millis(900 * args.kills as u64 + 6000);
    let pace = span / args.jobs.max(1) as u32;
    let submitter = tokio::spawn(submit_all(fleet.clone(), items, args.jobs, pace));
    let log = chaos(fleet.clone(), &args, cluster.as_ref()).await?;
    let (acked, submit_retries) = submitter.await??;
    fleet.lock().await.revive().await?;

    let pool = PgStore::for_reports(&db_url).context("connecting to the chaos database")?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    loop {
        let running = pool.jobs_running().await.unwrap_or(i64::MAX);
        if running == 0 || Instant::now() > deadline {
            break;
        }
        // Processes may have died on their own (e.g. during the Postgres restart).
        fleet.lock().await.revive().await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let wall = started.elapsed();
    let redeliveries = redeliveries(&nats, &run_id).await;
    fleet.lock().await.stop().await;
    if let Some(c) = &cluster {
        c.stop().await;
    }
    let violations = report(&pool, &acked, submit_retries, &log, redeliveries, wall).await?;
    if violations > 0 {
        bail!(
            "{violations} guarantee(s) violated; database and logs kept (see {})",
            dir.display()
        );
    }
    drop(pool);
    super::drop_run(cfg, &format!("chaos{run_id}"), &db_url).await;
    let _ = std::fs::remove_dir_all(&dir);
    println!("all guarantees held");
    Ok(())
}

/// Submits `n` jobs, retrying on any replica that is up; returns acknowledged ids and retries.
async fn submit_all(
    fleet: Arc<Mutex<Fleet>>,
    items: Vec<crate::eval::dataset::Item>,
    n: usize,
    pace: Duration,
) -> anyhow::Result<(Vec<Uuid>, usize)> {
    let mut acked = Vec::with_capacity(n);
    let mut retries = 0;
    for i in 0..n {
        let item = &items[i % items.len()];
        let body = item.job_body("low");
        let mut tries = 0;
        loop {
            let apis = fleet.lock().await.apis();
            if let Some(api) = apis.get(fastrand::usize(..apis.len().max(1)))
                && let Ok(id) = Client::new(api, None)?.submit(&body).await
            {
                acked.push(id);
                break;
            }
            tries += 1;
            retries += 1;
            anyhow::ensure!(tries < 600, "no orchestrator accepted job {i} for 2 minutes");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(pace).await;
    }
    Ok((acked, retries))
}

/// The kill schedule, with one NATS restart (on a cluster: `--cluster`
/// kills of one node each, spread over the run) and one Postgres restart.
async fn chaos(fleet: Arc<Mutex<Fleet>>, args: &ChaosArgs, cluster: Option<&NatsCluster>) -> anyhow::Result<Log> {
    let mut log = Log::default();
    let node_kills = args.cluster.unwrap_or(0);
    // The kill indexes after which a NATS node dies: spread evenly.
    let node_kill_at: Vec<usize> = (1..=node_kills).map(|j| j * args.kills / (node_kills + 1)).collect();
    for k in 0..args.kills {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(300..1500))).await;
        let (i, name) = {
            let mut f = fleet.lock().await;
            let i = fastrand::usize(..f.slots.len());
            f.kill9(i).await;
            (i, f.slots[i].name.clone())
        };
        let t = Instant::now();
        tokio::time::sleep(Duration::from_millis(fastrand::u64(100..800))).await;
        fleet.lock().await.start(i).await?;
        log.kills
            .push(format!("{name} (down {:.1}s)", t.elapsed().as_secs_f64()));
        if let Some(c) = cluster {
            for _ in node_kill_at.iter().filter(|at| **at == k) {
                let n = &c.nodes()[fastrand::usize(..c.nodes().len())];
                let what = restart_service(&fleet, &n.kill_cmd(), &n.start_cmd(), n.port).await?;
                log.nats_restarts.push(format!("kill -9 of the node on {what}"));
            }
        } else if !args.no_service_restarts && k == args.kills / 3 {
            log.nats_restarts
                .push(restart_service(&fleet, NATS_STOP, NATS_START, 4222).await?);
        }
        if !args.no_service_restarts && k == (2 * args.kills) / 3 {
            log.pg_restart = Some(restart_service(&fleet, PG_STOP, PG_START, 5432).await?);
        }
    }
    Ok(log)
}

/// Stops (`stop`), starts (`start`) a service and reports what `/readyz` said meanwhile.
async fn restart_service(fleet: &Arc<Mutex<Fleet>>, stop: &str, start: &str, port: u16) -> anyhow::Result<String> {
    sh(stop).await?;
    // While it is down (or restarting), ask the orchestrators whether they are ready.
    let mut not_ready = false;
    for _ in 0..10 {
        not_ready |= any_not_ready(fleet).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sh(start).await?;
    let t = Instant::now();
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut ready_again = None;
    for _ in 0..150 {
        if !any_not_ready(fleet).await {
            ready_again = Some(t.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(format!(
        "port {port}: /readyz said not-ready while down: {}; ready again {} after the restart",
        if not_ready { "yes" } else { "no" },
        ready_again.map_or("(not within 30 s)".into(), |d| format!("{:.1}s", d.as_secs_f64()))
    ))
}

async fn any_not_ready(fleet: &Arc<Mutex<Fleet>>) -> bool {
    let apis = fleet.lock().await.apis();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    for api in apis {
        match http.get(format!("{api}/readyz")).send().await {
            Ok(r) if r.status().is_success() => {}
            _ => return true,
        }
    }
    false
}

/// Deliveries beyond the first, from the JetStream consumers' counters.
async fn redeliveries(nats: &upshift_shared::config::NatsConfig, run_id: &str) -> Option<(u64, u64)> {
    let client = upshift_runtime::connect_nats(nats).await.ok()?;
    let js = async_nats::jetstream::new(client);
    let subjects = upshift_shared::subjects::Subjects::new(format!("chaos{run_id}"));
    let mut tasks_stream = js.get_stream(subjects.tasks_stream()).await.ok()?;
    let stored = tasks_stream.info().await.ok()?.state.last_sequence;
    let mut delivered = 0;
    for tier in Tier::ALL {
        let mut c: async_nats::jetstream::consumer::PullConsumer =
            tasks_stream.get_consumer(&subjects.worker_consumer(*tier)).await.ok()?;
        delivered += c.info().await.ok()?.delivered.consumer_sequence;
    }
    let mut results = js.get_stream(subjects.results_stream()).await.ok()?;
    let results_stored = results.info().await.ok()?.state.last_sequence;
    let mut rc: async_nats::jetstream::consumer::PullConsumer =
        results.get_consumer(subjects.orchestrator_consumer()).await.ok()?;
    let results_delivered = rc.info().await.ok()?.delivered.consumer_sequence;
    Some((
        delivered.saturating_sub(stored),
        results_delivered.saturating_sub(results_stored),
    ))
}

/// Prints the checks; returns the number of violations.
async fn report(
    pool: &PgStore,
    acked: &[Uuid],
    submit_retries: usize,
    log: &Log,
    redeliveries: Option<(u64, u64)>,
    wall: Duration,
) -> anyhow::Result<usize> {
    let checks = pool.guarantees(acked).await?;
    let FaultCounts {
        jobs,
        statuses: by_status,
        attempts,
        timed_out: timeouts,
        dead_letters: dead,
        dead_reasons: reasons,
        fault_escalations: faults,
    } = pool.fault_counts().await?;
    println!("\n== chaos report ==");
    println!("wall time                 {:.1}s", wall.as_secs_f64());
    println!(
        "jobs acknowledged         {} ({} jobs in the database, {submit_retries} submit retries)",
        acked.len(),
        jobs
    );
    println!(
        "jobs by status            {}",
        by_status
            .iter()
            .map(|(s, n)| format!("{s}={n}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("attempts                  {attempts} ({timeouts} timed out, {dead} dead letters)");
    for (source, reason, n) in reasons {
        println!("  dead letters            {n} from {source}: {reason}");
    }
    // Escalations a fault caused rather than a weak answer: the step went a
    // tier up because its attempt timed out, was dead-lettered or its
    // provider failed. A NATS node kill should cost redeliveries, not these.
    println!(
        "escalations by faults     {}{}",
        faults.iter().map(|(_, n)| n).sum::<i64>(),
        faults.iter().map(|(r, n)| format!(" {r}={n}")).collect::<String>()
    );
    println!(
        "kills                     {}: {}",
        log.kills.len(),
        log.kills.join(", ")
    );
    if log.nats_restarts.is_empty() {
        println!("nats restart              skipped");
    }
    for r in &log.nats_restarts {
        println!("nats restart              {r}");
    }
    println!(
        "postgres restart          {}",
        log.pg_restart.as_deref().unwrap_or("skipped")
    );
    match redeliveries {
        Some((t, r)) => println!("redeliveries              {t} task, {r} result"),
        None => println!("redeliveries              unavailable"),
    }
    let mut violations = 0;
    for (name, n) in checks {
        let verdict = if n == 0 { "ok" } else { "VIOLATED" };
        println!("check {name:<48} {n:>6}  {verdict}");
        violations += usize::from(n != 0);
    }
    Ok(violations)
}
