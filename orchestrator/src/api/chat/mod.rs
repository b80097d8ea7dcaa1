//! The OpenAI-compatible front door: `POST /v1/chat/completions` and
//! `GET /v1/models`, behind the same keys, tenants, quotas and budgets as
//! the job API. A chat becomes a job through the same submission as
//! `POST /v1/jobs` ([`super::submit`]); the handler then follows the job
//! (the event streams' hub and pool, never the decisions') until it is
//! finished or `api.chat_wait_secs` pass.
//!
//! An answer no tier could defend is not a success: 422 with an
//! OpenAI-shaped error carrying the best answer in `upshift`, unless the
//! request says `x-upshift-unresolved: answer`. Nothing unverified is ever
//! sent as content, streamed or not.

mod reply;
mod stream;
mod translate;
pub mod wire;

use super::events::{Follow, Slot};
use super::quota::Submitter;
use super::{ApiError, AppState, Tenant};
use crate::error::Error;
use crate::store::Progress;
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use reply::{Finished, job_header};
pub use translate::{CASCADE_MODEL, RAG_PREFIX};
use uuid::Uuid;
use wire::{ChatErrorBody, ChatErrorDetail, ChatRequest, ModelCard, ModelList, Usage};

/// Answer a chat: the cascade (`upshift`) or a collection
/// (`upshift-rag/<collection>`), verified and recorded like any job.
#[utoipa::path(post, path = "/v1/chat/completions", request_body = ChatRequest, tag = "openai",
    params(
        ("x-upshift-unresolved" = Option<String>, Header, description = "`answer`: an undefended best answer is a 200 with `upshift.defended = false` instead of a 422"),
        ("x-upshift-blast-radius" = Option<String>, Header, description = "`low`, `medium` (default) or `high`"),
        ("x-upshift-budget-usd" = Option<f64>, Header, description = "most the job may spend"),
        ("x-upshift-task" = Option<String>, Header, description = "the step's task type"),
    ),
    responses(
        (status = 200, description = "the defended answer (or, with `x-upshift-unresolved: answer`, the best one); `text/event-stream` of `chat.completion.chunk` with `stream: true`. Headers: x-upshift-job-id, x-upshift-status, x-upshift-tier, x-upshift-model, x-upshift-route, x-upshift-cost-usd, x-upshift-always-strong-usd",
            content((wire::Completion = "application/json"), (String = "text/event-stream"))),
        (status = 400, description = "a parameter is invalid (`error.param` names it)", body = ChatErrorBody),
        (status = 401, description = "missing or unknown API key", body = ChatErrorBody),
        (status = 404, description = "no such model", body = ChatErrorBody),
        (status = 413, description = "body over api.max_body_bytes", body = ChatErrorBody),
        (status = 415, description = "not application/json", body = ChatErrorBody),
        (status = 422, description = "unresolved: no tier could defend an answer (`code` `budget_exhausted` when the budget stopped the cascade); `upshift.best_answer` holds the best one", body = ChatErrorBody),
        (status = 429, description = "a rate limit or jobs-in-flight cap (Retry-After)", body = ChatErrorBody),
        (status = 502, description = "the job failed: no tier produced an answer", body = ChatErrorBody),
        (status = 503, description = "a backing service is down", body = ChatErrorBody),
        (status = 504, description = "not finished within api.chat_wait_secs; the job keeps running (x-upshift-job-id)", body = ChatErrorBody),
    ))]
pub async fn completions(
    State(st): State<AppState>,
    tenant: Result<Submitter, ApiError>,
    headers: HeaderMap,
    body: Result<Json<ChatRequest>, JsonRejection>,
) -> Result<Response, ChatError> {
    let Submitter(tenant) = tenant?;
    let Json(req) = body.map_err(ApiError::from)?;
    let (job, wanted) = translate::to_job(req, &headers)?;
    // A streamed answer holds a stream's place: taken before anything is written.
    let slot = wanted
        .stream
        .then(|| super::events::open_stream(&st, &tenant))
        .transpose()?;
    let id = super::submit::submit_job(&st, &tenant, job).await?;
    let (follow, first) = follow(&st, &tenant, id, slot).await?;
    if wanted.stream {
        return Ok(stream::respond(st, tenant, id, wanted, follow, first));
    }
    if wait(follow, first).await.is_none() {
        return Err(ChatError::timeout(id, st.cfg.api.chat_wait().as_secs()));
    }
    let answer = finished(&st, &tenant, id).await?.answer(&wanted.model);
    let headers = answer.headers();
    if answer.info.defended || (wanted.unresolved_answer && answer.info.status == "unresolved") {
        return Ok((headers, Json(answer.completion())).into_response());
    }
    let (status, body) = answer.refusal();
    Ok((status, headers, Json(body)).into_response())
}

/// The models a tenant may ask for: the cascade and one per collection.
#[utoipa::path(get, path = "/v1/models", tag = "openai",
    responses(
        (status = 200, description = "the models", body = ModelList),
        (status = 401, description = "missing or unknown API key", body = ChatErrorBody),
    ))]
pub async fn models(
    State(st): State<AppState>,
    tenant: Result<Tenant, ApiError>,
) -> Result<Json<ModelList>, ChatError> {
    let Tenant(tenant) = tenant?;
    let card = |id: String, owned_by: &str| ModelCard {
        id,
        object: "model",
        created: 0,
        owned_by: owned_by.to_string(),
    };
    let mut data = vec![card(CASCADE_MODEL.to_string(), "upshift")];
    for c in st.store.collection_names(&tenant).await.map_err(ApiError::from)? {
        data.push(card(format!("{RAG_PREFIX}{c}"), &tenant));
    }
    Ok(Json(ModelList { object: "list", data }))
}

/// Follows job `id` until `api.chat_wait_secs` from now: the follower and
/// its first read (the hub is watched before it, so nothing is missed).
async fn follow(st: &AppState, tenant: &str, id: Uuid, slot: Option<Slot>) -> Result<(Follow, Progress), ApiError> {
    let watch = st.hub.watch(id);
    let first = st.stream_store.progress(Some(tenant), id, 0).await?;
    let ends = std::time::Instant::now() + st.cfg.api.chat_wait();
    let mut follow = Follow::new(st.clone(), id, 0, ends, watch, slot);
    follow.after = first.events.last().map_or(0, |e| e.id);
    Ok((follow, first))
}

/// Waits for the job to finish; `None` when the wait runs out first.
async fn wait(mut follow: Follow, mut progress: Progress) -> Option<()> {
    loop {
        if progress.end.status.is_finished() {
            return Some(());
        }
        progress = follow.next().await?;
        follow.after = progress.events.last().map_or(follow.after, |e| e.id);
    }
}

/// The finished job read whole: its view, every event (one snapshot with
/// its status) and its tokens.
async fn finished(st: &AppState, tenant: &str, id: Uuid) -> Result<Finished, ApiError> {
    let store = &st.stream_store;
    let job = store.job(tenant, id).await?;
    let events = store.progress(Some(tenant), id, 0).await?.events;
    let (prompt, completion) = store.job_tokens(id).await?;
    Ok(Finished {
        job,
        events,
        usage: Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
        },
    })
}

/// An error of the chat door, OpenAI-shaped:
/// `{"error": {message, type, code, param}}`, with `x-upshift-job-id`
/// once a job exists.
#[derive(Debug)]
pub struct ChatError {
    status: StatusCode,
    body: ChatErrorBody,
    headers: HeaderMap,
}

impl ChatError {
    fn new(status: StatusCode, kind: &str, code: &str, message: String, param: Option<String>) -> Self {
        ChatError {
            status,
            body: ChatErrorBody {
                error: ChatErrorDetail {
                    message,
                    kind: kind.into(),
                    code: code.into(),
                    param,
                },
                upshift: None,
            },
            headers: HeaderMap::new(),
        }
    }

    /// 504: job `id` did not finish within the wait; it keeps running.
    fn timeout(id: Uuid, secs: u64) -> Self {
        let mut e = ChatError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            "timeout",
            format!(
                "job {id} did not finish within {secs} s (api.chat_wait_secs); it keeps running: follow /v1/jobs/{id}"
            ),
            None,
        );
        e.body.upshift = Some(serde_json::json!({ "job_id": id, "status": "running" }));
        e.headers = job_header(id);
        e
    }
}

impl From<ApiError> for ChatError {
    fn from(e: ApiError) -> Self {
        let param = e.field().map(chat_param);
        let (status, kind, code) = match e.status() {
            // A rag model names a collection the tenant does not have.
            StatusCode::UNPROCESSABLE_ENTITY if e.field() == Some("collection") => {
                (StatusCode::NOT_FOUND, "invalid_request_error", "model_not_found")
            }
            StatusCode::UNPROCESSABLE_ENTITY => (StatusCode::BAD_REQUEST, "invalid_request_error", e.code()),
            StatusCode::UNAUTHORIZED => (StatusCode::UNAUTHORIZED, "authentication_error", "invalid_api_key"),
            StatusCode::NOT_FOUND if e.message().starts_with("model ") => {
                (StatusCode::NOT_FOUND, "invalid_request_error", "model_not_found")
            }
            StatusCode::TOO_MANY_REQUESTS => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", e.code()),
            StatusCode::REQUEST_TIMEOUT => (StatusCode::REQUEST_TIMEOUT, "timeout", e.code()),
            s if s.is_server_error() => (s, "server_error", e.code()),
            s => (s, "invalid_request_error", e.code()),
        };
        let param = param.or_else(|| (code == "model_not_found").then(|| "model".to_string()));
        let message = match param.as_deref() {
            Some(p) if e.field() != Some(p) => {
                format!("{p}: {}", e.message().split_once(": ").map_or(e.message(), |m| m.1))
            }
            _ => e.message().to_string(),
        };
        let mut out = ChatError::new(status, kind, code, message, param);
        if let Some(secs) = e.retry_secs() {
            out.headers.insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        out
    }
}

impl From<Error> for ChatError {
    fn from(e: Error) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for ChatError {
    fn into_response(self) -> Response {
        (self.status, self.headers, Json(self.body)).into_response()
    }
}

/// The chat request's name for a job field an error names.
fn chat_param(field: &str) -> String {
    match field {
        "steps[0].output_schema" => "response_format.json_schema.schema",
        "steps[0].input" | "query" => "messages",
        "steps[0].labels" => "upshift.labels",
        "budget_usd" => "upshift.budget_usd",
        "collection" => "model",
        f => f,
    }
    .to_string()
}
