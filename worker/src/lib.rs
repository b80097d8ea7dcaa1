//! upshift worker: a stateless process that runs attempts for one tier.
//! It pulls from NATS, calls its model provider, and publishes results. It
//! never talks to Postgres.

pub mod error;
pub mod pool;
pub mod providers;

pub use error::{Error, ProviderError, Result};

pub use upshift_shared::telemetry::init_tracing;

use std::time::Duration;
use tokio_util::sync::CancellationToken;
use upshift_shared::Tier;
use upshift_shared::config::Config;

/// Runs a worker for `tier` until SIGTERM or Ctrl-C: it then stops pulling,
/// lets in-flight attempts finish for up to `drain`, and naks the rest.
pub async fn serve(cfg: &Config, tier: Tier, drain: Duration) -> Result<()> {
    let (stop, hard) = (CancellationToken::new(), CancellationToken::new());
    let (s, h) = (stop.clone(), hard.clone());
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested: no new pulls, draining in-flight attempts");
        s.cancel();
        tokio::time::sleep(drain).await;
        h.cancel();
    });
    pool::run(cfg, tier, stop, hard).await
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term.recv() => {} }
}
