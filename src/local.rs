//! A whole upshift on this machine: one orchestrator and N workers per tier,
//! each a child process of this binary (a [`Fleet`]), logging to files.

use crate::fleet::Fleet;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::process::Command;
use upshift_shared::Tier;
use upshift_shared::config::Config;

/// Line the orchestrator prints on stdout once it is listening.
pub const LISTENING: &str = "UPSHIFT_LISTENING ";

/// A running local stack.
pub struct Stack {
    /// API base URL.
    pub api: String,
    /// Where the processes log.
    pub log_dir: PathBuf,
    fleet: Fleet,
}

/// Set on the processes of a local stack to the pid of the CLI that started
/// them; see [`die_with_parent`].
pub const PARENT_ENV: &str = "UPSHIFT_PARENT_PID";

/// In a process started by a local stack: asks the kernel for a SIGTERM
/// when the CLI that started it dies, however it dies (its `kill_on_drop`
/// covers only an orderly exit), and exits at once if that already happened.
/// The kernel ties the signal to the *thread* that spawned the process: the
/// fleet spawns from the runtime's worker threads, which live as long as the
/// CLI, never from `spawn_blocking` threads, which exit when idle.
pub fn die_with_parent() {
    let Some(parent) = std::env::var(PARENT_ENV).ok().and_then(|p| p.parse::<i32>().ok()) else {
        return;
    };
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM) {
        tracing::warn!(error = %e, "cannot ask to die with the parent process");
    }
    if nix::unistd::getppid().as_raw() != parent {
        std::process::exit(0); // the parent is gone already
    }
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
    cmd.env(PARENT_ENV, std::process::id().to_string())
        .envs(env.iter().cloned())
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
        crate::preflight::check(cfg).await?;
        let log_dir = std::env::temp_dir().join(format!("upshift-local-{}", std::process::id()));
        std::fs::create_dir_all(&log_dir)?;
        let mut fleet = Fleet::new(config, &log_dir);
        for (k, v) in env {
            fleet.env(k, v);
        }
        if !env.iter().any(|(k, _)| k == "UPSHIFT_API__LISTEN") {
            let any_port = std::net::SocketAddr::new(cfg.api.listen.ip(), 0);
            fleet.env("UPSHIFT_API__LISTEN", &any_port.to_string());
        }
        fleet.add("orchestrator".into(), &["orchestrator"]);
        for tier in Tier::ALL {
            for i in 0..workers_per_tier {
                fleet.add(format!("worker-{tier}-{i}"), &["worker", "--tier", tier.as_str()]);
            }
        }
        fleet.revive().await?; // the orchestrator first: it creates the streams
        let api = fleet
            .apis()
            .into_iter()
            .next()
            .context("the orchestrator did not start")?;
        Ok(Stack { api, log_dir, fleet })
    }

    /// Sends SIGTERM to every process and waits (bounded) for them to exit.
    pub async fn stop(mut self) {
        self.fleet.terminate().await;
    }
}
