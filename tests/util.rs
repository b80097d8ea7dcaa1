//! Test harness. A missing service fails the test with the command that
//! starts it; nothing is skipped silently.

#![allow(dead_code)]

use sqlx::{Connection, PgPool};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use uuid::Uuid;

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const NATS_URL: &str = "nats://127.0.0.1:4222";
const PG_START: &str = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start";
const NATS_START: &str = "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log";

/// Options for one test's config.
pub struct Opts {
    /// Simulated latency of the small/medium/strong replay models (ms).
    pub latency_ms: [u64; 3],
    /// Worker concurrency.
    pub concurrency: usize,
    /// Attempt deadline (s).
    pub deadline_secs: u64,
    /// Extra TOML appended to the config.
    pub extra: String,
    /// `nats.ack_wait_secs`.
    pub ack_wait_secs: u64,
    /// `nats.max_deliver`.
    pub max_deliver: i64,
    /// `worker.progress_interval_secs`.
    pub progress_secs: u64,
    /// `RUST_LOG` of the processes.
    pub log: &'static str,
    /// `[[models]]` and `[tiers]` TOML replacing the replay fixture models.
    pub models: Option<String>,
    /// `orchestrator.result_max_deliver`.
    pub result_max_deliver: u64,
    /// Extra keys of the `[api]` table.
    pub api_extra: String,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            latency_ms: [0, 0, 0],
            concurrency: 4,
            deadline_secs: 120,
            extra: String::new(),
            ack_wait_secs: 10,
            max_deliver: 5,
            progress_secs: 2,
            log: "info,sqlx=warn,async_nats=warn",
            models: None,
            result_max_deliver: 3,
            api_extra: String::new(),
        }
    }
}

/// Installs ring as the TLS provider of the test process (reqwest needs one).
pub fn install_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// One test's private world: database, subject prefix, config file, processes.
pub struct Harness {
    pub db_name: String,
    pub db_url: String,
    pub prefix: String,
    pub config: PathBuf,
    pub pool: PgPool,
    pub nats: async_nats::Client,
    procs: Vec<Child>,
    pub api: Option<String>,
    pub dir: PathBuf,
    log: &'static str,
    /// Set once [`Harness::finish`] removed what the test made.
    cleaned: bool,
}

/// A running orchestrator.
pub struct Proc {
    pub child: Child,
    pub api: String,
    /// The operations listener's URL, when `UPSHIFT_API__OPS_LISTEN` was given.
    pub ops: Option<String>,
}

impl Harness {
    pub async fn new(opts: Opts) -> Harness {
        install_tls();
        let id = Uuid::now_v7().simple().to_string();
        let short = &id[id.len() - 12..];
        let db_name = format!("upshift_test_{short}");
        let mut admin = sqlx::PgConnection::connect(PG_ADMIN)
            .await
            .unwrap_or_else(|e| panic!("Postgres is not reachable at 127.0.0.1:5432 ({e}); start it with: {PG_START}"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let nats = async_nats::connect(NATS_URL)
            .await
            .unwrap_or_else(|e| panic!("NATS is not reachable at 127.0.0.1:4222 ({e}); start it with: {NATS_START}"));
        let db_url = format!("postgres://postgres@127.0.0.1:5432/{db_name}");
        let prefix = format!("t{short}");
        let dir = std::env::temp_dir().join(format!("upshift-test-{short}"));

        std::fs::create_dir_all(&dir).unwrap();
        let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/replay.csv");
        let [ls, lm, lg] = opts.latency_ms;
        let model = |name: &str, price: f64, lat: u64| {
            format!(
                "[[models]]\nname = \"{name}\"\nusd_per_m_in = {price}\nusd_per_m_out = {price}\nprovider = {{ kind = \"replay\", datasets = [\"{}\"], column = \"{name}\", latency_ms = {lat} }}\n",
                fixture.display()
            )
        };
        let models = opts.models.clone().unwrap_or_else(|| {
            format!(
                "{}{}{}\n[tiers]\nsmall = \"fx-small\"\nmedium = \"fx-medium\"\nstrong = \"fx-strong\"\n",
                model("fx-small", 0.2, ls),
                model("fx-medium", 2.0, lm),
                model("fx-strong", 20.0, lg),
            )
        });
        let config = format!(
            "[nats]\nurl = \"{NATS_URL}\"\nprefix = \"{prefix}\"\nack_wait_secs = {}\nmax_deliver = {}\n\n\
             [database]\nurl = \"{db_url}\"\nmax_connections = 5\n\n\
             [api]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = 65536\n{}\n\n\
             [orchestrator]\nresult_batch = 16\nsweep_interval_ms = 200\npublish_grace_ms = 1000\nattempt_deadline_secs = {}\nresult_max_deliver = {}\n\n\
             [worker]\nconcurrency = {}\nprogress_interval_secs = {}\n\n\
             {models}\n{}\n",
            opts.ack_wait_secs,
            opts.max_deliver,
            opts.api_extra,
            opts.deadline_secs,
            opts.result_max_deliver,
            opts.concurrency,
            opts.progress_secs,
            opts.extra,
        );
        let config_path = dir.join("upshift.toml");
        std::fs::write(&config_path, config).unwrap();
        let pool = PgPool::connect(&db_url).await.unwrap();
        Harness {
            db_name,
            db_url,
            prefix,
            config: config_path,
            pool,
            nats,
            procs: Vec::new(),
            api: None,
            dir,
            log: opts.log,
            cleaned: false,
        }
    }

    /// The `upshift` binary with this harness's config and `args`, logging to `log`.
    pub fn command(&self, args: &[&str], log: &str) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_upshift"));
        cmd.arg("--config").arg(&self.config).args(args);
        cmd.env("RUST_LOG", self.log)
            .env_remove("UPSHIFT_CONFIG")
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join(log)).unwrap())
            .kill_on_drop(true);
        cmd
    }

    /// Starts an orchestrator and waits until it listens.
    pub async fn orchestrator(&mut self) -> Proc {
        self.orchestrator_with(&[]).await
    }

    /// Starts an orchestrator with extra environment and waits until it listens.
    pub async fn orchestrator_with(&mut self, env: &[(&str, &str)]) -> Proc {
        let n = self.procs.len();
        let mut cmd = self.command(&["orchestrator"], &format!("orchestrator-{n}.log"));
        cmd.envs(env.iter().copied()).stdout(Stdio::piped());
        let mut child = cmd.spawn().expect("spawning upshift orchestrator");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // The operations listener's address comes first when one is set
        // (port 0: bound by the orchestrator, no port race between tests).
        let (addr, ops) = tokio::time::timeout(Duration::from_secs(60), async {
            let mut ops = None;
            while let Ok(Some(l)) = lines.next_line().await {
                if let Some(a) = l.strip_prefix("UPSHIFT_OPS_LISTENING ") {
                    ops = Some(format!("http://{a}"));
                } else if let Some(a) = l.strip_prefix("UPSHIFT_LISTENING ") {
                    return (a.to_string(), ops);
                }
            }
            panic!("orchestrator exited; see {}", self.dir.display());
        })
        .await
        .expect("orchestrator did not start within 60s");
        let api = format!("http://{addr}");
        self.api = Some(api.clone());
        Proc { child, api, ops }
    }

    /// Runs the `upshift` CLI with this harness's config; returns (success, stdout, stderr).
    pub async fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_upshift"));
        cmd.arg("--config").arg(&self.config);
        if let Some(api) = &self.api {
            cmd.arg("--api").arg(api);
        }
        let out = cmd
            .args(args)
            .env_remove("UPSHIFT_CONFIG")
            .env("RUST_LOG", self.log)
            .output()
            .await
            .expect("running upshift");
        let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
        (out.status.success(), text(out.stdout), text(out.stderr))
    }

    /// The fixture dataset the replay models answer from.
    pub fn fixture() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/replay.csv")
    }

    /// Starts a worker for `tier` and hands it to the caller.
    pub fn spawn_worker(&self, tier: &str, env: &[(&str, &str)]) -> Child {
        let mut cmd = self.command(
            &["worker", "--tier", tier],
            &format!("worker-{tier}-{}.log", Uuid::now_v7()),
        );
        cmd.envs(env.iter().copied()).stdout(Stdio::null());
        cmd.spawn().expect("spawning upshift worker")
    }

    /// Starts a worker for `tier`; the harness kills it at the end.
    pub fn worker(&mut self, tier: &str) {
        let n = self.procs.len();
        let mut cmd = self.command(&["worker", "--tier", tier], &format!("worker-{tier}-{n}.log"));
        cmd.stdout(Stdio::null());
        self.procs.push(cmd.spawn().expect("spawning upshift worker"));
    }

    /// One worker per tier.
    pub fn workers(&mut self) {
        for t in ["small", "medium", "strong"] {
            self.worker(t);
        }
    }

    pub fn api(&self) -> &str {
        self.api.as_deref().expect("start the orchestrator first")
    }

    /// POSTs raw bytes to `path`; returns status and JSON body.
    pub async fn post_raw(&self, path: &str, body: &[u8], headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
        let mut req = reqwest::Client::new()
            .post(format!("{}{path}", self.api()))
            .body(body.to_vec());
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
            req = req.header("content-type", "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> (u16, serde_json::Value) {
        let mut req = reqwest::Client::new().get(format!("{}{path}", self.api()));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Submits a one-step `answer` job for `input`; returns the job id.
    pub async fn submit_answer(&self, input: &str, blast: &str) -> Uuid {
        let body = serde_json::json!({"kind":"steps","blast_radius":blast,
            "steps":[{"name":"solve","task":"answer","input":input}]});
        let (status, v) = self.post_raw("/v1/jobs", body.to_string().as_bytes(), &[]).await;
        assert_eq!(status, 202, "{v}");
        v["id"].as_str().unwrap().parse().unwrap()
    }

    /// Waits until every job in `ids` is finished.
    pub async fn wait_all(&self, ids: &[Uuid], timeout: Duration) {
        let pool = self.pool.clone();
        let ids = ids.to_vec();
        eventually(timeout, || {
            let (pool, ids) = (pool.clone(), ids.clone());
            async move {
                let n: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE id = ANY($1) AND status <> 'running'")
                    .bind(&ids)
                    .fetch_one(&pool)
                    .await
                    .ok()?;
                (n as usize == ids.len()).then_some(())
            }
        })
        .await;
    }

    /// (attempt id, step id) of `job`'s attempt on `tier`, once it is published.
    pub async fn published_attempt(&self, job: Uuid, tier: &str) -> (Uuid, Uuid) {
        let pool = self.pool.clone();
        let tier = tier.to_string();
        eventually(Duration::from_secs(20), move || {
            let (pool, tier) = (pool.clone(), tier.clone());
            async move {
                sqlx::query_as(
                    "SELECT id, step_id FROM attempts WHERE job_id = $1 AND tier = $2 AND published_at IS NOT NULL",
                )
                .bind(job)
                .bind(&tier)
                .fetch_optional(&pool)
                .await
                .ok()
                .flatten()
            }
        })
        .await
    }

    /// Stops processes, then drops the database and the streams.
    pub async fn finish(mut self) {
        for p in &mut self.procs {
            let _ = p.kill().await;
        }
        self.pool.close().await;
        remove_world(&self.nats, &self.prefix, &self.db_name, &self.dir).await;
        self.cleaned = true;
    }
}

/// Removes a test's streams, database and directory.
async fn remove_world(nats: &async_nats::Client, prefix: &str, db_name: &str, dir: &std::path::Path) {
    let js = async_nats::jetstream::new(nats.clone());
    let stem = prefix.to_ascii_uppercase();
    for stream in ["TASKS", "RESULTS", "DEAD"] {
        let _ = js.delete_stream(format!("{stem}_{stream}")).await;
    }
    if let Ok(mut admin) = sqlx::PgConnection::connect(PG_ADMIN).await {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await;
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A test that ends without [`Harness::finish`] still leaves nothing
/// behind: its processes die with it (`kill_on_drop`), and its streams,
/// database and directory are removed here, on a thread of its own (the
/// test's runtime may be shutting down). A failing test keeps them for
/// inspection; the panic message's paths name them.
impl Drop for Harness {
    fn drop(&mut self) {
        if self.cleaned || std::thread::panicking() {
            return;
        }
        // Stopped first, so no process recreates what is removed.
        for p in &mut self.procs {
            let _ = p.start_kill();
        }
        let (prefix, db, dir) = (self.prefix.clone(), self.db_name.clone(), self.dir.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let nats = async_nats::connect(NATS_URL).await.ok()?;
                remove_world(&nats, &prefix, &db, &dir).await;
                Some(())
            })
        })
        .join();
    }
}

/// Sends SIGTERM to `child` and waits (bounded) for it to exit cleanly.
pub async fn sigterm_and_wait(child: &mut Child, within: Duration) {
    let pid = child.id().expect("running").to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(within, child.wait())
        .await
        .expect("exits in bounded time");
    assert!(status.unwrap().success(), "clean exit after SIGTERM");
}

/// Polls `probe` until it returns `Some`, panicking after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One route event: (event, from_tier, to_tier, reasons).
pub type Event = (String, Option<String>, Option<String>, Vec<String>);

/// Route events of a job, in order.
pub async fn route(pool: &PgPool, job: Uuid) -> Vec<Event> {
    sqlx::query_as("SELECT event, from_tier, to_tier, reasons FROM route_events WHERE job_id = $1 ORDER BY id")
        .bind(job)
        .fetch_all(pool)
        .await
        .unwrap()
}

/// Attempt ids with more than one decision (must be empty).
pub async fn duplicate_decisions(pool: &PgPool) -> Vec<Uuid> {
    sqlx::query_scalar(
        "SELECT attempt_id FROM route_events
         WHERE event IN ('accept', 'unresolved', 'escalate', 'fail') AND attempt_id IS NOT NULL
         GROUP BY attempt_id HAVING count(*) > 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The token issued with `attempt` (nil for an attempt that does not exist).
pub async fn attempt_token(pool: &PgPool, attempt: Uuid) -> Uuid {
    sqlx::query_scalar::<_, Option<Uuid>>("SELECT token FROM attempts WHERE id = $1")
        .bind(attempt)
        .fetch_optional(pool)
        .await
        .unwrap()
        .flatten()
        .unwrap_or_else(Uuid::nil)
}

/// A worker's answered result for an attempt, carrying the attempt's token
/// as a worker that read its task would: 100 tokens in, 50 out, and a
/// claimed $0.25 (the orchestrator books its own price).
pub async fn answered_result(
    pool: &PgPool,
    job: Uuid,
    step: Uuid,
    attempt: Uuid,
    tier: upshift_shared::Tier,
    text: &str,
) -> upshift_shared::messages::ResultMessage {
    use upshift_shared::messages::{AttemptOutcome, MESSAGE_VERSION, ResultMessage};
    ResultMessage {
        version: MESSAGE_VERSION,
        attempt_id: attempt,
        attempt_token: attempt_token(pool, attempt).await,
        job_id: job,
        step_id: step,
        tier,
        worker_id: "test".into(),
        provider: "test".into(),
        model: "fx-small".into(),
        latency_ms: 5,
        received_at: None,
        sent_at: None,
        outcome: AttemptOutcome::Answered {
            output: text.into(),
            tokens_in: 100,
            tokens_out: 50,
            cost_usd: 0.25,
            confidence: None,
            label_correct: Some(true),
        },
    }
}

/// A free local TCP port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

/// A nats-server of the test's own on 127.0.0.1:`port` (`args` beyond the
/// address: `-js -sd DIR`, or `-c FILE`), with `envs`, logging to `log`;
/// returned once it listens.
pub async fn own_nats(port: u16, args: &[&str], envs: &[(String, String)], log: Option<&std::path::Path>) -> Child {
    const NATS_SERVER: &str = "/usr/sbin/nats-server";
    assert!(
        std::path::Path::new(NATS_SERVER).exists(),
        "{NATS_SERVER} is missing: apt-get install nats-server"
    );
    let mut cmd = Command::new(NATS_SERVER);
    cmd.args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .envs(envs.iter().cloned())
        .stdout(Stdio::null())
        .stderr(match log {
            Some(p) => Stdio::from(std::fs::File::create(p).unwrap()),
            None => Stdio::null(),
        })
        .kill_on_drop(true);
    let child = cmd.spawn().expect("starting nats-server");
    eventually(Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()
    })
    .await;
    child
}

/// (key id, key) from the output of `upshift keys create`.
pub fn key_of(out: &str) -> (String, String) {
    let last = |prefix: &str| {
        out.lines()
            .find(|l| {
                l.split_whitespace()
                    .take(prefix.split(' ').count())
                    .eq(prefix.split(' '))
            })
            .and_then(|l| l.split_whitespace().last())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no `{prefix}` in {out}"))
    };
    let key = out
        .lines()
        .find(|l| l.starts_with("key ") && !l.starts_with("key id"))
        .and_then(|l| l.split_whitespace().last());
    (last("key id"), key.unwrap_or_else(|| panic!("{out}")).to_string())
}
