//! The job endpoints and health probes, with their OpenAPI descriptions.

use super::quota::Submitter;
use super::views::{JobView, RouteEvent};
use super::{ApiError, AppState, ErrorBody, Tenant};
use crate::error::Error;
use crate::request::JobRequest;
use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use upshift_shared::JobStatus;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// `202` body of `POST /v1/jobs`.
#[derive(Serialize, ToSchema)]
pub struct Accepted {
    /// The new job's id.
    pub id: Uuid,
    /// Always `running`.
    pub status: JobStatus,
}

/// A job's route.
#[derive(Serialize, ToSchema)]
pub struct RouteDoc {
    /// The job.
    pub job_id: Uuid,
    /// Its events, oldest first.
    pub events: Vec<RouteEvent>,
}

/// One line of the job list.
#[derive(Serialize, ToSchema)]
pub struct JobSummary {
    /// Job id.
    pub id: Uuid,
    /// `running`, `succeeded` (the answer was defended), `unresolved` (no
    /// tier could defend it; the best answer is kept, marked undefended) or
    /// `failed`.
    pub status: JobStatus,
    /// Spent so far.
    pub cost_usd: f64,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// `GET /v1/jobs` body.
#[derive(Serialize, ToSchema)]
pub struct JobList {
    /// Most recent first.
    pub jobs: Vec<JobSummary>,
}

/// `GET /healthz` body.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

/// `GET /readyz` body.
#[derive(Serialize, ToSchema)]
pub struct Ready {
    /// Postgres answered.
    pub postgres: bool,
    /// NATS is connected.
    pub nats: bool,
}

/// Query of `GET /v1/jobs`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only jobs in this state. Read as text so that a wrong one is a 422
    /// naming the field; the document lists [`JobStatus`]'s values.
    #[param(value_type = Option<JobStatus>)]
    status: Option<String>,
    /// At most this many (1–1000, default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// Submit a job: it is planned, persisted and its first attempts published.
#[utoipa::path(post, path = "/v1/jobs", request_body = JobRequest, tag = "jobs",
    responses(
        (status = 202, description = "accepted", body = Accepted),
        (status = 400, description = "malformed JSON", body = ErrorBody),
        (status = 401, description = "missing or unknown API key", body = ErrorBody),
        (status = 413, description = "body over api.max_body_bytes", body = ErrorBody),
        (status = 415, description = "not application/json", body = ErrorBody),
        (status = 422, description = "a field is invalid", body = ErrorBody),
        (status = 429, description = "the tenant's submit rate or jobs in flight are at their limit (Retry-After)", body = ErrorBody),
        (status = 503, description = "a backing service is down", body = ErrorBody),
    ))]
pub async fn submit(
    State(st): State<AppState>,
    Submitter(tenant): Submitter,
    body: Result<Json<JobRequest>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(req) = body?;
    let id = super::submit::submit_job(&st, &tenant, req).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            id,
            status: JobStatus::Running,
        }),
    ))
}

/// A job: status, steps, result, cost and always-strong cost.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = Uuid, Path, description = "job id")),
    responses(
        (status = 200, description = "the job", body = JobView),
        (status = 400, description = "not a UUID", body = ErrorBody),
        (status = 401, description = "missing or unknown API key", body = ErrorBody),
        (status = 404, description = "no such job for this tenant", body = ErrorBody),
        (status = 503, description = "a backing service is down", body = ErrorBody),
    ))]
pub async fn job(
    State(st): State<AppState>,
    Tenant(tenant): Tenant,
    id: Result<Path<Uuid>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Path(id) = id?;
    Ok(Json(JobView::from(st.store.job(&tenant, id).await?)))
}

/// A job's route: every start, dispatch, escalation and decision with reasons.
#[utoipa::path(get, path = "/v1/jobs/{id}/route", tag = "jobs",
    params(("id" = Uuid, Path, description = "job id")),
    responses(
        (status = 200, description = "the route", body = RouteDoc),
        (status = 400, description = "not a UUID", body = ErrorBody),
        (status = 401, description = "missing or unknown API key", body = ErrorBody),
        (status = 404, description = "no such job for this tenant", body = ErrorBody),
        (status = 503, description = "a backing service is down", body = ErrorBody),
    ))]
pub async fn route(
    State(st): State<AppState>,
    Tenant(tenant): Tenant,
    id: Result<Path<Uuid>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Path(id) = id?;
    let events = st
        .store
        .route(&tenant, id)
        .await?
        .iter()
        .map(RouteEvent::from)
        .collect();
    Ok(Json(RouteDoc { job_id: id, events }))
}

/// The tenant's most recent jobs.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(ListQuery),
    responses(
        (status = 200, description = "the jobs", body = JobList),
        (status = 400, description = "unreadable query", body = ErrorBody),
        (status = 401, description = "missing or unknown API key", body = ErrorBody),
        (status = 422, description = "a parameter is invalid", body = ErrorBody),
        (status = 503, description = "a backing service is down", body = ErrorBody),
    ))]
pub async fn list(
    State(st): State<AppState>,
    Tenant(tenant): Tenant,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(q) = q?;
    let status = q
        .status
        .as_deref()
        .map(str::parse::<JobStatus>)
        .transpose()
        .map_err(|_| {
            let all: Vec<&str> = JobStatus::ALL.iter().map(|s| s.as_str()).collect();
            Error::invalid("status", format!("must be one of {}", all.join(", ")))
        })?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(Error::invalid("limit", "must be between 1 and 1000").into());
    }
    let rows = st.store.list_jobs(&tenant, status, limit).await?;
    let jobs = rows
        .into_iter()
        .map(|(id, status, cost_usd, created_at)| JobSummary {
            id,
            status,
            cost_usd,
            created_at,
        })
        .collect();
    Ok(Json(JobList { jobs }))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "up", body = Health)))]
pub async fn healthz() -> impl IntoResponse {
    Json(Health { status: "ok".into() })
}

/// Readiness: Postgres and NATS are reachable.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "ready", body = Ready),
        (status = 503, description = "a backing service is down", body = Ready),
    ))]
pub async fn readyz(State(st): State<AppState>) -> impl IntoResponse {
    // Bounded, so a load balancer gets a prompt 503 rather than a hang while Postgres is down.
    let probe = st.store.ping();
    let postgres = matches!(
        tokio::time::timeout(std::time::Duration::from_secs(2), probe).await,
        Ok(Ok(_))
    );
    let nats = st.bus.client.connection_state() == async_nats::connection::State::Connected;
    let status = if postgres && nats {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(Ready { postgres, nats }))
}
