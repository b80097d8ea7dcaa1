//! upshift worker: a stateless process that runs attempts for one tier.
//! It pulls from NATS, calls its model provider, and publishes results. It
//! never talks to Postgres.

pub mod error;
mod http;
pub mod pool;
pub mod prompt;
pub mod providers;
pub mod retry;

pub use error::{Error, ProviderError, Result};

pub use upshift_runtime::init_tracing;

use std::time::Duration;
use tokio_util::sync::CancellationToken;
use upshift_shared::Tier;
use upshift_shared::config::Config;

/// Runs a worker for `tier` until SIGTERM or Ctrl-C: it then stops pulling,
/// lets in-flight attempts finish for up to `drain`, and naks the rest.
///
/// With `worker.listen` set it also serves `/metrics`, `/healthz` and
/// `/readyz` (NATS connected) there; `on_listen` gets the bound address.
pub async fn serve(
    cfg: &Config,
    tier: Tier,
    drain: Duration,
    on_listen: impl FnOnce(std::net::SocketAddr),
) -> Result<()> {
    if let Some(addr) = &cfg.worker.listen {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| Error::Listen {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?;
        if let Ok(a) = listener.local_addr() {
            on_listen(a);
        }
        let nats = upshift_runtime::connect_nats(&cfg.nats).await.map_err(Error::nats)?;
        tokio::spawn(http::serve(listener, upshift_runtime::install_metrics(), nats));
    }
    let (stop, hard) = (CancellationToken::new(), CancellationToken::new());
    let (s, h) = (stop.clone(), hard.clone());
    tokio::spawn(async move {
        upshift_runtime::shutdown_signal().await;
        tracing::info!("shutdown requested: no new pulls, draining in-flight attempts");
        s.cancel();
        tokio::time::sleep(drain).await;
        h.cancel();
    });
    pool::run(cfg, tier, stop, hard).await
}
