//! The HTTP API (axum): submit jobs, read status and route, health, and the
//! OpenAPI document at `/openapi.json`.
//!
//! Every job endpoint is tenant-scoped through the bearer key. Validation is
//! complete before anything is written, so a 4xx leaves no rows.

mod chat;
mod collections;
mod error;
mod events;
mod hub;
mod jobs;
mod quota;
mod serve;
mod submit;
mod ui;
mod views;

pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use serve::serve;

use crate::bus::Bus;
use crate::error::Error;
use crate::store::PgStore;
use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use upshift_shared::config::Config;

/// Shared state of the API handlers.
#[derive(Clone)]
pub struct AppState {
    /// Storage.
    pub store: PgStore,
    /// NATS.
    pub bus: Bus,
    /// Configuration.
    pub cfg: Arc<Config>,
    /// Searches collections (hybrid when an embedding model is loaded).
    pub retriever: crate::collections::Retriever,
    /// sha256(key) → tenant.
    keys: Arc<HashMap<String, String>>,
    /// Per-tenant admission of jobs.
    pub(crate) quotas: Arc<quota::Quotas>,
    /// Open event streams per tenant.
    pub(crate) streams: events::Streams,
    /// What event streams read through: a pool of their own.
    pub(crate) stream_store: PgStore,
    /// Wakes event streams whose jobs have new events.
    pub(crate) hub: hub::Hub,
    /// Renders `/metrics`.
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Whether keys were ever issued, as last read.
    issued: Arc<KeysIssued>,
}

/// Whether API keys were ever issued in Postgres, read at most once per
/// [`KeysIssued::RECHECK`] while none were: a keyless request would
/// otherwise cost a query on the decisions' pool. Issued keys are never
/// deleted (a revoked key keeps its row), so once `true` it stays true and
/// is never read again; a key issued while the API runs keyless is
/// enforced within the recheck interval.
#[derive(Default)]
struct KeysIssued(std::sync::Mutex<Issued>);

/// What was last read of `api_keys`.
#[derive(Default, Clone, Copy)]
enum Issued {
    /// Never read.
    #[default]
    Unknown,
    /// None at this time.
    NoneAt(std::time::Instant),
    /// Some, for good.
    Yes,
}

impl KeysIssued {
    const RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

    async fn any(&self, store: &PgStore) -> crate::error::Result<bool> {
        match *self.0.lock().expect("keys lock") {
            Issued::Yes => return Ok(true),
            Issued::NoneAt(t) if t.elapsed() < Self::RECHECK => return Ok(false),
            _ => {}
        }
        let any = store.any_api_keys().await?;
        let mut state = self.0.lock().expect("keys lock");
        if any {
            *state = Issued::Yes;
        } else if !matches!(*state, Issued::Yes) {
            // A read that raced a later one never takes back its `Yes`.
            *state = Issued::NoneAt(std::time::Instant::now());
        }
        Ok(any || matches!(*state, Issued::Yes))
    }
}

impl AppState {
    /// State for the handlers; `keys` from [`configured_keys`].
    pub fn new(
        store: PgStore,
        bus: Bus,
        cfg: Arc<Config>,
        retriever: crate::collections::Retriever,
        keys: HashMap<String, String>,
        metrics: metrics_exporter_prometheus::PrometheusHandle,
    ) -> Self {
        Self {
            quotas: quota::Quotas::new(&cfg.limits),
            streams: events::Streams::default(),
            stream_store: store.for_streams(cfg.api.stream_db_connections),
            hub: hub::Hub::default(),
            store,
            bus,
            cfg,
            retriever,
            keys: Arc::new(keys),
            metrics,
            issued: Arc::default(),
        }
    }
}

impl AppState {
    /// Keeps the admission counts current until `cancel` (run it once).
    pub async fn count_jobs_in_flight(self, cancel: tokio_util::sync::CancellationToken) {
        self.quotas.clone().refresh(self.store.clone(), cancel).await
    }

    /// Wakes event streams when their jobs have new events, until `cancel`
    /// (run it once).
    pub async fn wake_event_streams(self, cancel: tokio_util::sync::CancellationToken) {
        self.hub.clone().run(self.stream_store.clone(), cancel).await
    }
}

/// The axum router with every route.
pub fn router(state: AppState) -> Router {
    let limit = state.cfg.api.max_body_bytes;
    let limits = serve::Limits::new(&state.cfg.api);
    // Event streams are long-lived: outside the request timeout and cap.
    let streams = Router::new().route("/v1/jobs/{id}/events", get(events::events));
    // Probes too: slow clients holding the cap must never fail a health check.
    let probes = Router::new()
        .route("/healthz", get(jobs::healthz))
        .route("/readyz", get(jobs::readyz));
    Router::new()
        .route("/v1/jobs", post(jobs::submit).get(jobs::list))
        .route("/v1/jobs/{id}", get(jobs::job))
        .route("/v1/jobs/{id}/route", get(jobs::route))
        .route("/v1/chat/completions", post(chat::completions))
        .route("/v1/models", get(chat::models))
        .route("/v1/collections/{name}/documents", post(collections::ingest))
        .route("/v1/collections/{name}/search", get(collections::search))
        .route("/v1/collections/{name}", get(collections::status))
        .route("/ui", get(ui::jobs))
        .route("/ui/jobs/{id}", get(ui::job))
        .route("/ui/summary", get(ui::summary))
        .route(
            "/openapi.json",
            get(|| async { Json(<ApiDoc as utoipa::OpenApi>::openapi()) }),
        )
        .fallback(|| async { ApiError::from(Error::NotFound("route".into())) })
        .layer(axum::middleware::from_fn_with_state(limits, serve::limit))
        .merge(streams)
        .merge(probes)
        .layer(DefaultBodyLimit::max(limit))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(serve::panicked))
        .with_state(state)
}

/// The operations listener's routes (`api.ops_listen`): `/metrics`, which
/// names every tenant and so is kept off the API, and the probes.
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(jobs::healthz))
        .route("/readyz", get(jobs::readyz))
        .with_state(state)
}

/// Prometheus text exposition of every metric.
async fn metrics_text(axum::extract::State(st): axum::extract::State<AppState>) -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.render(),
    )
}

/// sha256(key) → tenant of the keys in `[[api.keys]]`; a `key_env` key is
/// read from its variable and hashed here (only the orchestrator needs it,
/// so workers sharing the file need not have the variable).
pub fn configured_keys(cfg: &Config) -> crate::error::Result<HashMap<String, String>> {
    let mut keys = HashMap::new();
    for (i, k) in cfg.api.keys.iter().enumerate() {
        let hash = match &k.key_env {
            Some(var) => match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => sha256_hex(v.trim()),
                _ => {
                    return Err(Error::invalid(
                        format!("api.keys[{i}].key_env"),
                        format!("the environment variable {var} is not set"),
                    ));
                }
            },
            None => k.key_sha256.to_ascii_lowercase(),
        };
        keys.insert(hash, k.tenant.clone());
    }
    Ok(keys)
}

/// Refuses to serve key-less requests to the network: listening on a
/// non-loopback `addr` needs a key (configured or issued) or an explicit
/// `api.anonymous = true`, which is then warned about.
pub async fn check_exposure(cfg: &Config, store: &PgStore, addr: std::net::SocketAddr) -> crate::error::Result<()> {
    if cfg.api.anonymous {
        tracing::warn!(%addr, "api.anonymous is on: requests without a key act as tenant `default`");
        return Ok(());
    }
    if addr.ip().is_loopback() || !cfg.api.keys.is_empty() || store.any_api_keys().await? {
        return Ok(());
    }
    Err(Error::invalid(
        "api.listen",
        format!(
            "{addr} is reachable beyond this host and no API key exists: add [[api.keys]] (key_env names a \
             variable holding the key), issue one with `upshift keys create`, or set api.anonymous = true"
        ),
    ))
}

/// The caller's tenant, from `Authorization: Bearer <key>`.
pub struct Tenant(pub String);

/// The same, for event streams: an issued key is looked up on the streams'
/// own pool, so a flood of stream requests with bogus keys never queues
/// behind (or in front of) the decisions.
pub struct StreamTenant(pub String);

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    /// Keys from `[[api.keys]]` and from `upshift keys create` (Postgres) are
    /// both accepted. A request without a key is tenant `default` only with
    /// `api.anonymous`, or while no key was ever configured or issued (and
    /// then the API listens on loopback only: [`check_exposure`]).
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        tenant_of(parts, state, &state.store).await.map(Tenant)
    }
}

impl FromRequestParts<AppState> for StreamTenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        tenant_of(parts, state, &state.stream_store).await.map(StreamTenant)
    }
}

/// The tenant of the request's key, issued keys looked up through `store`.
async fn tenant_of(parts: &Parts, state: &AppState, store: &PgStore) -> Result<String, ApiError> {
    let token = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        if state.cfg.api.anonymous || (state.keys.is_empty() && !state.issued.any(store).await?) {
            return Ok("default".into());
        }
        return Err(Error::Unauthorized.into());
    };
    let hex = sha256_hex(token.trim());
    if let Some(t) = state.keys.get(&hex) {
        return Ok(t.clone());
    }
    store
        .tenant_of_key(&hex)
        .await?
        .ok_or_else(|| Error::Unauthorized.into())
}

/// Lower-case hex SHA-256 of `s`: how API keys are stored and compared.
pub fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The OpenAPI document of this API.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "upshift",
        description = "Run each AI step on the cheapest model tier that can defend its answer."
    ),
    paths(
        jobs::submit,
        jobs::list,
        jobs::job,
        jobs::route,
        events::events,
        jobs::healthz,
        jobs::readyz,
        collections::ingest,
        collections::search,
        collections::status,
        chat::completions,
        chat::models
    ),
    components(schemas(ErrorBody, ErrorDetail, chat::wire::ChatErrorBody, chat::wire::Completion))
)]
pub struct ApiDoc;
