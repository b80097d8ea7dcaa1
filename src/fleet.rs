//! A fleet of upshift processes (children of this binary, logging to files)
//! that can be started, killed and restarted one by one: the local stack of
//! `run-local` and `demo`, and the moving parts of the benchmarks.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Line the orchestrator prints on stdout once it is listening.
pub const LISTENING: &str = "UPSHIFT_LISTENING ";
/// Line the orchestrator prints on stdout, before [`LISTENING`], with its
/// operations listener's address (`api.ops_listen`, which may be port 0).
pub const OPS_LISTENING: &str = "UPSHIFT_OPS_LISTENING ";

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

/// One process slot.
pub struct Slot {
    /// e.g. `orchestrator-0`, `worker-small-1`.
    pub name: String,
    args: Vec<String>,
    child: Option<Child>,
    /// API URL, for orchestrators.
    pub api: Option<String>,
    starts: u32,
}

/// Every process of the run.
pub struct Fleet {
    config: Option<PathBuf>,
    log_dir: PathBuf,
    env: Vec<(String, String)>,
    /// The slots.
    pub slots: Vec<Slot>,
}

impl Fleet {
    /// An empty fleet whose processes read `config` and log under `log_dir`.
    pub fn new(config: Option<&Path>, log_dir: &Path) -> Fleet {
        Fleet {
            config: config.map(Path::to_path_buf),
            log_dir: log_dir.to_path_buf(),
            env: Vec::new(),
            slots: Vec::new(),
        }
    }

    /// Sets an environment variable for every process started from now on.
    pub fn env(&mut self, key: &str, value: &str) {
        self.env.push((key.to_string(), value.to_string()));
    }

    /// Process id of slot `i`, if running.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.slots[i].child.as_ref().and_then(|c| c.id())
    }

    /// Adds a slot running `upshift <args>`, not started yet.
    pub fn add(&mut self, name: String, args: &[&str]) {
        let args = args.iter().map(|a| a.to_string()).collect();
        self.slots.push(Slot {
            name,
            args,
            child: None,
            api: None,
            starts: 0,
        });
    }

    /// Starts slot `i`; an orchestrator is started when it listens.
    pub async fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let slot = &mut self.slots[i];
        slot.starts += 1;
        let log = self.log_dir.join(format!("{}.{}.log", slot.name, slot.starts));
        let mut cmd = command(self.config.as_deref(), &self.env, &log)?;
        cmd.args(&slot.args);
        let is_orchestrator = slot.args.first().is_some_and(|a| a == "orchestrator");
        cmd.stdout(if is_orchestrator { Stdio::piped() } else { Stdio::null() });
        let mut child = cmd.spawn().with_context(|| format!("starting {}", slot.name))?;
        if is_orchestrator {
            let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
            let addr = tokio::time::timeout(Duration::from_secs(90), async {
                while let Ok(Some(l)) = lines.next_line().await {
                    if let Some(a) = l.strip_prefix(LISTENING) {
                        return Some(a.to_string());
                    }
                }
                None
            })
            .await;
            match addr {
                Ok(Some(a)) => slot.api = Some(format!("http://{a}")),
                _ => bail!("{} did not start; see {}", slot.name, log.display()),
            }
            // Keep draining stdout so the process never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        }
        slot.child = Some(child);
        Ok(())
    }

    /// `kill -9` slot `i` and reap it.
    pub async fn kill9(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        slot.api = None;
        if let Some(mut c) = slot.child.take() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }

    /// Restarts every slot whose process is not running.
    pub async fn revive(&mut self) -> anyhow::Result<()> {
        for i in 0..self.slots.len() {
            let dead = match self.slots[i].child.as_mut() {
                None => true,
                Some(c) => c.try_wait().ok().flatten().is_some(),
            };
            if dead {
                self.start(i).await?;
            }
        }
        Ok(())
    }

    /// URLs of the orchestrators that are up.
    pub fn apis(&self) -> Vec<String> {
        self.slots.iter().filter_map(|s| s.api.clone()).collect()
    }

    /// Sends SIGTERM to every process and waits (bounded) for each to drain
    /// and exit; one that does not is killed.
    pub async fn terminate(&mut self) {
        for slot in &self.slots {
            if let Some(pid) = slot.child.as_ref().and_then(|c| c.id()) {
                let _ = tokio::process::Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .status()
                    .await;
            }
        }
        for slot in &mut self.slots {
            if let Some(c) = slot.child.as_mut()
                && tokio::time::timeout(Duration::from_secs(25), c.wait()).await.is_err()
            {
                eprintln!("{} did not stop in time; killing it", slot.name);
                let _ = c.kill().await;
            }
        }
    }

    /// Stops everything (SIGKILL; the run is over).
    pub async fn stop(&mut self) {
        for i in 0..self.slots.len() {
            self.kill9(i).await;
        }
    }
}
