//! The HTTP API (axum): submit jobs, read status and route, health.
//!
//! Every job endpoint is tenant-scoped through the bearer key. Validation is
//! complete before anything is written, so a 4xx leaves no rows.

mod error;

pub use error::ApiError;

use crate::bus::Bus;
use crate::error::Error;
use crate::planner::{JobRequest, plan};
use crate::store::PgStore;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use upshift_shared::config::Config;
use uuid::Uuid;

/// Shared state of the API handlers.
#[derive(Clone)]
pub struct AppState {
    /// Storage.
    pub store: PgStore,
    /// NATS.
    pub bus: Bus,
    /// Configuration.
    pub cfg: Arc<Config>,
    /// sha256(key) → tenant.
    keys: Arc<HashMap<String, String>>,
}

impl AppState {
    /// State for the handlers.
    pub fn new(store: PgStore, bus: Bus, cfg: Arc<Config>) -> Self {
        let keys = cfg
            .api
            .keys
            .iter()
            .map(|k| (k.key_sha256.to_ascii_lowercase(), k.tenant.clone()))
            .collect();
        Self {
            store,
            bus,
            cfg,
            keys: Arc::new(keys),
        }
    }
}

/// The axum router with every route.
pub fn router(state: AppState) -> Router {
    let limit = state.cfg.api.max_body_bytes;
    Router::new()
        .route("/v1/jobs", post(submit).get(list))
        .route("/v1/jobs/{id}", get(job))
        .route("/v1/jobs/{id}/route", get(route))
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(readyz))
        .fallback(|| async { ApiError::from(Error::NotFound("route".into())) })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// The caller's tenant, from `Authorization: Bearer <key>`.
pub struct Tenant(pub String);

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    /// Keys from `[[api.keys]]` and from `upshift keys create` (Postgres) are
    /// both accepted. With neither, the API is open and the tenant is `default`.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let Some(token) = token else {
            if state.keys.is_empty() && !state.store.any_api_keys().await? {
                return Ok(Tenant("default".into()));
            }
            return Err(Error::Unauthorized.into());
        };
        let hex = sha256_hex(token.trim());
        if let Some(t) = state.keys.get(&hex) {
            return Ok(Tenant(t.clone()));
        }
        state
            .store
            .tenant_of_key(&hex)
            .await?
            .map(Tenant)
            .ok_or_else(|| Error::Unauthorized.into())
    }
}

/// Lower-case hex SHA-256 of `s`: how API keys are stored and compared.
pub fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn submit(
    State(st): State<AppState>,
    Tenant(tenant): Tenant,
    body: Result<Json<JobRequest>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(req) = body?;
    let steps = plan(&req)?;
    let (id, attempts) = st.store.create_job(&st.cfg, &tenant, &req, &steps).await?;
    crate::outbox::publish(&st.store, &st.bus, &attempts).await;
    tracing::info!(job = %id, %tenant, steps = steps.len(), "job accepted");
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "id": id, "status": "running" })),
    ))
}

async fn job(
    State(st): State<AppState>,
    Tenant(tenant): Tenant,
    id: Result<Path<Uuid>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Path(id) = id?;
    Ok(Json(st.store.job(&tenant, id).await?))
}

async fn route(
    State(st): State<AppState>,
    Tenant(tenant): Tenant,
    id: Result<Path<Uuid>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Path(id) = id?;
    let events = st.store.route(&tenant, id).await?;
    Ok(Json(serde_json::json!({ "job_id": id, "events": events })))
}

/// Query of `GET /v1/jobs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    limit: Option<i64>,
}

async fn list(
    State(st): State<AppState>,
    Tenant(tenant): Tenant,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(q) = q?;
    if let Some(s) = &q.status
        && !["running", "succeeded", "failed"].contains(&s.as_str())
    {
        return Err(Error::invalid("status", "must be running, succeeded or failed").into());
    }
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(Error::invalid("limit", "must be between 1 and 1000").into());
    }
    let rows = st.store.list_jobs(&tenant, q.status.as_deref(), limit).await?;
    let jobs: Vec<_> = rows
        .into_iter()
        .map(|(id, status, cost, created)| serde_json::json!({ "id": id, "status": status, "cost_usd": cost, "created_at": created }))
        .collect();
    Ok(Json(serde_json::json!({ "jobs": jobs })))
}

async fn readyz(State(st): State<AppState>) -> impl IntoResponse {
    // Bounded, so a load balancer gets a prompt 503 rather than a hang while Postgres is down.
    let probe = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&st.store.pool);
    let db = matches!(
        tokio::time::timeout(std::time::Duration::from_secs(2), probe).await,
        Ok(Ok(_))
    );
    let nats = st.bus.client.connection_state() == async_nats::connection::State::Connected;
    let status = if db && nats {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(serde_json::json!({ "postgres": db, "nats": nats })))
}
