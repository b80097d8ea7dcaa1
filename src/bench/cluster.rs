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
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs `cmd` with `sh -c`; an error unless it exits 0.
pub async fn sh(cmd: &str) -> anyhow::Result<()> {
    let status = tokio::process::Command::new("sh").arg("-c").arg(cmd).status().await?;
    anyhow::ensure!(status.success(), "`{cmd}` failed");
    Ok(())
}

impl NatsCluster {
    /// Writes three nodes' configs under `dir` and starts them; returns
    /// once JetStream has a meta leader (streams can be created).
    pub async fn start(dir: &Path, name: &str) -> anyhow::Result<NatsCluster> {
        let clients = [free_port()?, free_port()?, free_port()?];
        let routes = [free_port()?, free_port()?, free_port()?];
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
            return Err(e);
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

/// Checks that `nats-server` is installed before a cluster run.
pub fn check_installed() -> anyhow::Result<()> {
    std::fs::metadata(NATS_SERVER)
        .map(drop)
        .with_context(|| format!("{NATS_SERVER} is needed for --cluster"))
}
