//! The HTTP server and its limits. `axum::serve` installs no timer, so
//! hyper's header-read timeout never applies under it: a client that
//! dribbles its headers would hold a connection (and a task) for ever. This
//! server is hyper's own connection builder with a timer, and two layers:
//! a request timeout (408, which also bounds a dribbled body, read inside
//! the handler), a global cap on requests in flight (503 with
//! Retry-After, never a queue that grows) and a share of it per credential
//! (429), so one key holder cannot take every slot. Event streams are
//! long-lived by design and have neither (their caps are their own); the
//! probes have neither either, so slow clients never fail a health check.

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
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use upshift_shared::config::ApiConfig;

/// The limits every request except event streams and probes runs under.
#[derive(Clone)]
pub(crate) struct Limits {
    timeout: Duration,
    slots: Arc<Semaphore>,
    /// Requests in flight per credential (a hash of the Authorization
    /// header: no lookup, so a bogus key costs nothing here).
    per_key: Arc<Mutex<HashMap<u64, usize>>>,
    share: usize,
}

impl Limits {
    /// The limits configured under `[api]`.
    pub(crate) fn new(cfg: &ApiConfig) -> Self {
        Limits {
            timeout: cfg.request_timeout,
            slots: Arc::new(Semaphore::new(cfg.max_concurrent_requests)),
            per_key: Arc::default(),
            share: cfg.max_concurrent_per_key,
        }
    }

    /// Takes one of `credential`'s slots, if it has one left.
    fn take(&self, credential: u64) -> Option<KeySlot> {
        let mut m = self.per_key.lock().expect("not poisoned");
        let n = m.entry(credential).or_insert(0);
        if *n >= self.share {
            return None;
        }
        *n += 1;
        Some(KeySlot {
            map: self.per_key.clone(),
            credential,
        })
    }
}

/// One request's place in its credential's share; given back on drop.
struct KeySlot {
    map: Arc<Mutex<HashMap<u64, usize>>>,
    credential: u64,
}

impl Drop for KeySlot {
    fn drop(&mut self) {
        let mut m = self.map.lock().expect("not poisoned");
        if let Some(n) = m.get_mut(&self.credential) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.credential);
            }
        }
    }
}

/// The credential a request comes with, hashed (0: none).
fn credential(req: &Request) -> u64 {
    use std::hash::BuildHasher;
    static SEED: std::sync::LazyLock<std::collections::hash_map::RandomState> =
        std::sync::LazyLock::new(std::collections::hash_map::RandomState::new);
    match req.headers().get(axum::http::header::AUTHORIZATION) {
        None => 0,
        Some(v) => SEED.hash_one(v.as_bytes()) | 1,
    }
}

/// Middleware: a request past `api.request_timeout_secs` gets 408, one
/// beyond `api.max_concurrent_per_key` of its credential 429 and one beyond
/// `api.max_concurrent_requests` in flight 503, at once.
pub(crate) async fn limit(State(limits): State<Limits>, req: Request, next: Next) -> Response {
    let Some(_mine) = limits.take(credential(&req)) else {
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_in_flight",
            format!(
                "this key already has {} requests in flight (api.max_concurrent_per_key); retry",
                limits.share
            ),
        )
        .retry_after(1)
        .into_response();
    };
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
