//! A whole upshift on this machine: one orchestrator and N workers per tier,
//! each a child process of this binary, logging to files.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use upshift_shared::Tier;
use upshift_shared::config::Config;

/// Line the orchestrator prints on stdout once it is listening.
pub const LISTENING: &str = "UPSHIFT_LISTENING ";

/// Running child processes.
pub struct Stack {
    /// API base URL.
    pub api: String,
    /// Where the processes log.
    pub log_dir: PathBuf,
    children: Vec<(String, Child)>,
}

pub(crate) fn command(config: Option<&Path>, env: &[(String, String)], log: &Path) -> anyhow::Result<Command> {
    let mut cmd = Command::new(std::env::current_exe()?);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    if !env.iter().any(|(k, _)| k == "RUST_LOG") {
        let log = std::env::var("RUST_LOG").unwrap_or_else(|_| "info,sqlx=warn,async_nats=warn".into());
        cmd.env("RUST_LOG", log);
    }
    cmd.envs(env.iter().cloned())
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?)
        .kill_on_drop(true);
    Ok(cmd)
}

impl Stack {
    /// Starts the orchestrator (on a free port), waits until it listens, then
    /// starts the workers.
    pub async fn start(
        config: Option<&Path>,
        cfg: &Config,
        workers_per_tier: usize,
        env: &[(String, String)],
    ) -> anyhow::Result<Stack> {
        let log_dir = std::env::temp_dir().join(format!("upshift-local-{}", std::process::id()));
        std::fs::create_dir_all(&log_dir)?;
        let mut env = env.to_vec();
        if !env.iter().any(|(k, _)| k == "UPSHIFT_API__LISTEN") {
            let host = cfg.api.listen.rsplit_once(':').map_or("127.0.0.1", |(h, _)| h);
            env.push(("UPSHIFT_API__LISTEN".into(), format!("{host}:0")));
        }
        let mut orch = command(config, &env, &log_dir.join("orchestrator.log"))?;
        orch.arg("orchestrator").stdout(Stdio::piped());
        let mut child = orch.spawn().context("starting the orchestrator")?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(a) = line.strip_prefix(LISTENING) {
                    return Ok::<_, std::io::Error>(Some(a.to_string()));
                }
            }
            Ok(None)
        })
        .await;
        let addr = match addr {
            Ok(Ok(Some(a))) => a,
            _ => bail!(
                "the orchestrator did not start; see {}",
                log_dir.join("orchestrator.log").display()
            ),
        };
        let mut children = vec![("orchestrator".to_string(), child)];
        for tier in Tier::ALL {
            for i in 0..workers_per_tier {
                let name = format!("worker-{tier}-{i}");
                let mut w = command(config, &env, &log_dir.join(format!("{name}.log")))?;
                w.arg("worker").arg("--tier").arg(tier.as_str()).stdout(Stdio::null());
                children.push((name, w.spawn().context("starting a worker")?));
            }
        }
        Ok(Stack {
            api: format!("http://{addr}"),
            log_dir,
            children,
        })
    }

    /// Sends SIGTERM to every process and waits (bounded) for them to exit.
    pub async fn stop(mut self) {
        for (_, c) in &self.children {
            if let Some(pid) = c.id() {
                let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await;
            }
        }
        for (name, c) in &mut self.children {
            if tokio::time::timeout(Duration::from_secs(25), c.wait()).await.is_err() {
                eprintln!("{name} did not stop in time; killing it");
                let _ = c.kill().await;
            }
        }
    }
}
