//! A whole upshift on this machine: one orchestrator and N workers per tier,
//! each a child process of this binary (a [`Fleet`]), logging to files.

use crate::fleet::Fleet;
use anyhow::Context;
use std::path::{Path, PathBuf};
use upshift_shared::Tier;
use upshift_shared::config::Config;

/// A running local stack.
pub struct Stack {
    /// API base URL.
    pub api: String,
    /// Where the processes log.
    pub log_dir: PathBuf,
    fleet: Fleet,
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
