//! The HTTP server and its limits. `axum::serve` installs no timer, so
//! hyper's header-read timeout never applies under it: a client that
//! dribbles its headers would hold a connection (and a task) for ever. This
//! server is hyper's own connection builder with a timer, and two layers:
//! a request timeout (408, which also bounds a dribbled body, read inside
//! the handler) and a global cap on requests in flight (503 with
//! Retry-After, never a queue that grows). Event streams are long-lived by
//! design and have neither: their caps are their own.

use super::ApiError;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use upshift_shared::config::ApiConfig;

/// The limits every request except event streams runs under.
#[derive(Clone)]
pub(crate) struct Limits {
    timeout: Duration,
    slots: Arc<Semaphore>,
}

impl Limits {
    /// The limits configured under `[api]`.
    pub(crate) fn new(cfg: &ApiConfig) -> Self {
        Limits {
            timeout: cfg.request_timeout,
            slots: Arc::new(Semaphore::new(cfg.max_concurrent_requests)),
        }
    }
}

/// Middleware: a request past `api.request_timeout_secs` gets 408, one
/// beyond `api.max_concurrent_requests` in flight gets 503 at once.
pub(crate) async fn limit(State(limits): State<Limits>, req: Request, next: Next) -> Response {
    let Ok(_slot) = limits.slots.clone().try_acquire_owned() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many requests in flight; retry",
        )
        .retry_after(1)
        .into_response();
    };
    match tokio::time::timeout(limits.timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the request took longer than {} s", limits.timeout.as_secs()),
        )
        .into_response(),
    }
}

/// A handler that panicked: 500 JSON (the panic is logged), instead of a
/// connection closed without a response.
pub(crate) fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the server failed on this request; it has been logged",
    )
    .into_response()
}

/// Serves `app` on `listener` until `shutdown`, then lets open connections
/// finish for up to 10 s.
pub async fn serve(listener: TcpListener, app: Router, cfg: &ApiConfig, shutdown: CancellationToken) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_read_timeout);
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: back off, never spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(app.clone());
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("open connections did not finish within 10 s");
    }
}
