//! upshift orchestrator: owns all state and every routing decision.
//!
//! [`run`] connects to Postgres and NATS, then runs three loops until the
//! cancellation token fires: the HTTP API, the results consumer and the
//! outbox sweeper. Replicas share nothing in memory.

pub mod api;
pub mod bus;
pub mod collections;
pub mod dead;
pub mod embed;
pub mod error;
pub mod metrics;
pub mod outbox;
pub mod planner;
pub mod rag;
pub mod request;
pub mod results;
pub mod router;
pub mod store;

pub use error::{Error, Result};

use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use upshift_shared::config::Config;

/// The addresses an orchestrator bound (useful with port 0): the API's, and
/// the operations listener's when `api.ops_listen` is set.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// The API.
    pub api: std::net::SocketAddr,
    /// `/metrics` (`api.ops_listen`).
    pub ops: Option<std::net::SocketAddr>,
}

/// Runs the orchestrator until `cancel`; `on_listen` receives the bound
/// addresses.
pub async fn run(cfg: Config, cancel: CancellationToken, on_listen: impl FnOnce(Bound)) -> Result<()> {
    let cfg = Arc::new(cfg);
    let keys = api::configured_keys(&cfg)?;
    let store = store::PgStore::connect(&cfg).await?;
    let bus = bus::Bus::connect(&cfg.nats).await?;
    let listener = tokio::net::TcpListener::bind(&cfg.api.listen)
        .await
        .map_err(|e| Error::invalid("api.listen", e.to_string()))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::invalid("api.listen", e.to_string()))?;
    api::check_exposure(&cfg, &store, addr).await?;
    let ops = match &cfg.api.ops_listen {
        Some(a) => {
            let l = tokio::net::TcpListener::bind(a)
                .await
                .map_err(|e| Error::invalid("api.ops_listen", e.to_string()))?;
            let a = l
                .local_addr()
                .map_err(|e| Error::invalid("api.ops_listen", e.to_string()))?;
            tracing::info!(addr = %a, "operations listener (/metrics)");
            Some((l, a))
        }
        None => None,
    };
    tracing::info!(%addr, prefix = %cfg.nats.prefix, "orchestrator listening");
    on_listen(Bound {
        api: addr,
        ops: ops.as_ref().map(|(_, a)| *a),
    });

    let prometheus = upshift_runtime::install_metrics();
    // The embedding model loads in about a second; dense retrieval needs it.
    let retriever = {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || collections::Retriever::load(&cfg))
            .await
            .map_err(|e| Error::Embedding(e.to_string()))?
    };
    let tracker = TaskTracker::new();
    // Publish marks are written in batches by one task; it ends after the
    // last store clone (and so the last sender) is dropped at shutdown.
    let (marks, marks_rx) = tokio::sync::mpsc::unbounded_channel();
    let marker = tokio::spawn(outbox::run_marker(store.clone(), marks_rx));
    let store = store.with_marker(marks);
    // New jobs are written in group commits by one task; it ends after the
    // last API handler's store is dropped, before the marker.
    let (jobs, jobs_rx) = store::intake::channel();
    let intake = tokio::spawn(store::intake::run_intake(store.clone(), cfg.clone(), jobs_rx));
    let store = store.with_intake(jobs);
    tracker.spawn(metrics::sample(store.clone(), bus.clone(), cancel.clone()));
    for feed in [results::Feed::Results, results::Feed::DeadLetters] {
        tracker.spawn(results::run(
            feed,
            store.clone(),
            bus.clone(),
            cfg.clone(),
            retriever.clone(),
            cancel.clone(),
        ));
    }
    if let Some(model) = retriever.model() {
        let cache = cfg
            .rag
            .embedding_cache
            .then(|| collections::embedding::DiskCache::open(&cfg.worker.model_dir(), model));
        tracker.spawn(collections::embedding::run(
            store.clone(),
            retriever.clone(),
            cache,
            cancel.clone(),
        ));
    }
    tracker.spawn(outbox::run_sweeper(
        store.clone(),
        bus.clone(),
        cfg.clone(),
        cancel.clone(),
    ));
    let state = api::AppState::new(store.clone(), bus.clone(), cfg.clone(), retriever, keys, prometheus);
    tracker.spawn(state.clone().count_jobs_in_flight(cancel.clone()));
    tracker.spawn(state.clone().wake_event_streams(cancel.clone()));
    if let Some((ops, _)) = ops {
        let (app, api, shutdown) = (api::ops_router(state.clone()), cfg.api.clone(), cancel.clone());
        tracker.spawn(async move { api::serve(ops, app, &api, shutdown).await });
    }
    let app = api::router(state);
    tracker.spawn({
        let (api, shutdown) = (cfg.api.clone(), cancel.clone());
        async move { api::serve(listener, app, &api, shutdown).await }
    });
    tracker.close();
    cancel.cancelled().await;
    // Shutdown: 1. loops stop pulling and the server stops accepting (same token);
    // 2. in-flight decisions finish their transaction; 3. give up after 10 s —
    // anything unfinished is redelivered or swept on the next start.
    if tokio::time::timeout(Duration::from_secs(10), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("shutdown timed out; unfinished work will be redelivered");
    }
    drop(store);
    let _ = tokio::time::timeout(Duration::from_secs(2), intake).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), marker).await;
    Ok(())
}

pub use upshift_runtime::init_tracing;

/// Runs the orchestrator until SIGTERM or Ctrl-C, then shuts down gracefully.
pub async fn serve(cfg: Config, on_listen: impl FnOnce(Bound)) -> Result<()> {
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        upshift_runtime::shutdown_signal().await;
        tracing::info!("shutdown requested");
        c.cancel();
    });
    run(cfg, cancel, on_listen).await
}
