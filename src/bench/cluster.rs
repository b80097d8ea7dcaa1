//! A 3-node NATS JetStream cluster on loopback for `upshift bench chaos
//! --cluster`: each node a `nats-server` process of its own (client and
//! route ports picked free, store in the run's directory), started and
//! killed with `start-stop-daemon` through a pid file, so a kill is a real
//! `kill -9` of one node while the other two keep the streams' quorum.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The cluster's nodes.
pub struct NatsCluster {
    nodes: Vec<Node>,
}

/// One node: its client port and how to start and kill it.
pub struct Node {
    /// Client port on 127.0.0.1.
    pub port: u16,
    conf: PathBuf,
    pid: PathBuf,
}

const NATS_SERVER: &str = "/usr/sbin/nats-server";

impl Node {
    /// The shell command that starts the node in the background.
    pub fn start_cmd(&self) -> String {
        format!(
            "start-stop-daemon --start --background --make-pidfile --pidfile {} --exec {NATS_SERVER} -- -c {}",
            self.pid.display(),
            self.conf.display()
        )
    }

    /// The shell command that kills the node with SIGKILL.
    pub fn kill_cmd(&self) -> String {
        format!(
            "start-stop-daemon --stop --oknodo --signal KILL --retry 5 --pidfile {} --exec {NATS_SERVER}",
            self.pid.display()
        )
    }
}

/// A free TCP port on loopback (bound, read, released).
/// `n` distinct free ports: every listener is held until all are bound,
/// so the kernel cannot hand the same port out twice (a client port equal
/// to another node's route port leaves a two-node cluster that can never
/// place a three-replica stream).
fn free_ports<const N: usize>() -> anyhow::Result<[u16; N]> {
    let held = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ports = [0u16; N];
    for (port, l) in ports.iter_mut().zip(&held) {
        *port = l.local_addr()?.port();
    }
    Ok(ports)
}

/// Runs `cmd` with `sh -c`; an error unless it exits 0.
pub async fn sh(cmd: &str) -> anyhow::Result<()> {
    let status = tokio::process::Command::new("sh").arg("-c").arg(cmd).status().await?;
    anyhow::ensure!(status.success(), "`{cmd}` failed");
    Ok(())
}

impl NatsCluster {
    /// Writes three nodes' configs under `dir` and starts them; returns
    /// once JetStream has a meta leader (streams can be created). A cluster
    /// that does not come up (a port taken between the pick and the start,
    /// a slow election on a loaded machine) is stopped and started once
    /// more on fresh ports and a fresh store; the second failure is the
    /// error, with each node's last log lines.
    pub async fn start(dir: &Path, name: &str) -> anyhow::Result<NatsCluster> {
        match Self::start_once(&dir.join("try-1"), name).await {
            Ok(c) => Ok(c),
            Err(first) => {
                tracing::warn!("the NATS cluster did not start, trying once more: {first:#}");
                Self::start_once(&dir.join("try-2"), name).await
            }
        }
    }

    async fn start_once(dir: &Path, name: &str) -> anyhow::Result<NatsCluster> {
        let [c0, c1, c2, r0, r1, r2] = free_ports::<6>()?;
        let (clients, routes) = ([c0, c1, c2], [r0, r1, r2]);
        let route_urls: Vec<String> = routes.iter().map(|p| format!("nats-route://127.0.0.1:{p}")).collect();
        let mut nodes = Vec::new();
        for i in 0..3 {
            let store = dir.join(format!("nats-{i}"));
            std::fs::create_dir_all(&store)?;
            let conf = dir.join(format!("nats-{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "server_name: {name}-{i}\nlisten: 127.0.0.1:{}\n\
                     log_file: \"{}\"\n\
                     jetstream {{ store_dir: \"{}\", max_memory_store: 256MB, max_file_store: 2GB }}\n\
                     cluster {{ name: {name}, listen: 127.0.0.1:{}, routes: [{}] }}\n",
                    clients[i],
                    dir.join(format!("nats-{i}.log")).display(),
                    store.display(),
                    routes[i],
                    route_urls.join(", ")
                ),
            )?;
            nodes.push(Node {
                port: clients[i],
                conf,
                pid: dir.join(format!("nats-{i}.pid")),
            });
        }
        let cluster = NatsCluster { nodes };
        for n in &cluster.nodes {
            sh(&n.start_cmd()).await?;
        }
        if let Err(e) = cluster.wait_for_jetstream(Duration::from_secs(60)).await {
            cluster.stop().await;
            let logs: Vec<String> = (0..3).map(|i| log_tail(&dir.join(format!("nats-{i}.log")))).collect();
            return Err(e.context(format!("node logs:\n{}", logs.join("\n"))));
        }
        Ok(cluster)
    }

    /// The nodes.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The client URLs, comma-separated (`nats.url`).
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until JetStream answers through the cluster (a meta leader
    /// was elected).
    async fn wait_for_jetstream(&self, within: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + within;
        let urls: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect();
        loop {
            // A stream on all three nodes can be created once the cluster
            // has a meta leader and every node has joined.
            let last = match async_nats::connect(urls.as_slice()).await {
                Ok(client) => {
                    let js = async_nats::jetstream::new(client);
                    let probe = async_nats::jetstream::stream::Config {
                        name: "UPSHIFT_PROBE".into(),
                        subjects: vec!["upshift.probe".into()],
                        num_replicas: 3,
                        ..Default::default()
                    };
                    match js.create_stream(probe).await {
                        Ok(_) => {
                            let _ = js.delete_stream("UPSHIFT_PROBE").await;
                            return Ok(());
                        }
                        Err(e) => e.to_string(),
                    }
                }
                Err(e) => e.to_string(),
            };
            if Instant::now() > until {
                bail!("the NATS cluster had no JetStream leader within {within:?}: {last}");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Kills every node (the run is over).
    pub async fn stop(&self) {
        for n in &self.nodes {
            let _ = sh(&n.kill_cmd()).await;
        }
    }
}

/// The last lines of a node's log, for an error that says why it failed.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("({e})"));
    let lines: Vec<&str> = text.lines().collect();
    format!(
        "{}:\n  {}",
        path.display(),
        lines[lines.len().saturating_sub(5)..].join("\n  ")
    )
}

/// Checks that `nats-server` is installed before a cluster run.
pub fn check_installed() -> anyhow::Result<()> {
    std::fs::metadata(NATS_SERVER)
        .map(drop)
        .with_context(|| format!("{NATS_SERVER} is needed for --cluster"))
}
