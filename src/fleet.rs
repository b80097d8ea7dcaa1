//! A fleet of upshift processes (children of this binary, logging to files)
//! that can be started, killed and restarted one by one: the local stack of
//! `run-local` and `demo`, and the moving parts of the benchmarks.

use crate::local::{LISTENING, command};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

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
