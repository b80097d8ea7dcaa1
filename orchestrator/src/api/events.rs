//! `GET /v1/jobs/{id}/events`: a job's progress as server-sent events.
//!
//! Each route event (`start`, `dispatch`, `accept`, `escalate` with its
//! reasons, `fail`, …) is sent as an SSE event of that name, its `id` the
//! event's sequence number, so a client that reconnects with `Last-Event-ID`
//! continues where it stopped. A final `done` event carries the job's status
//! and cost, then the stream ends. A stream reads Postgres when the
//! replica's one poller ([`super::hub`]) says its job has new events (and
//! every few seconds regardless), which keeps any orchestrator replica able
//! to serve it and an idle stream free of queries. The tenant is checked
//! once, when the stream opens; each read after that is one query for the
//! events (and, when there are none, one row for the job's status).
//!
//! Streams read through a pool of their own (`api.stream_db_connections`),
//! so decisions never wait for a connection behind them. A tenant holds at most `api.max_streams_per_tenant` streams on one
//! replica (more get 429), and a stream ends after `api.stream_max_secs`
//! even if its job has not finished: the client reconnects with
//! `Last-Event-ID` and loses nothing.

use super::{ApiError, AppState, ErrorBody, Tenant};
use crate::store::RouteEvent;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Open event streams per tenant on this replica.
#[derive(Clone, Default)]
pub struct Streams(Arc<Mutex<HashMap<String, usize>>>);

/// One open stream; dropping it (the stream ended or the client left)
/// frees its place.
struct Slot {
    streams: Streams,
    tenant: String,
}

impl Streams {
    /// A place for one more stream of `tenant`, if it has fewer than `max`.
    fn open(&self, tenant: &str, max: usize) -> Option<Slot> {
        let mut open = self.0.lock().expect("streams lock");
        let n = open.entry(tenant.to_string()).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot {
            streams: self.clone(),
            tenant: tenant.to_string(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.streams.0.lock().expect("streams lock");
        if let Some(n) = open.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.tenant);
            }
        }
    }
}

/// One server-sent event as the stream carries it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents the wire format only
pub struct SseEvent {
    /// `start`, `dispatch`, `accept`, `escalate`, `fail`, `late_result`, `cancel`, or `done`.
    event: String,
    /// The route event's sequence number (absent on `done`).
    id: Option<String>,
    /// JSON: the route event, or `{status, cost_usd, always_strong_cost_usd}` for `done`.
    data: String,
}

/// How often a stream reads even without a wake-up (one may be missed).
const FALLBACK: Duration = Duration::from_secs(3);

/// Follow a job: its route events as they happen, then `done`.
#[utoipa::path(get, path = "/v1/jobs/{id}/events", tag = "jobs",
    params(("id" = Uuid, Path, description = "job id")),
    responses(
        (status = 200, description = "text/event-stream of route events, then `done`", content_type = "text/event-stream", body = SseEvent),
        (status = 400, description = "malformed job id", body = ErrorBody),
        (status = 404, description = "no such job for this tenant", body = ErrorBody),
        (status = 429, description = "the tenant has api.max_streams_per_tenant streams open (Retry-After)", body = ErrorBody),
    ))]
pub async fn events(
    State(st): State<AppState>,
    Tenant(tenant): Tenant,
    id: Result<Path<Uuid>, PathRejection>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Path(id) = id?;
    // 404 before the stream starts, for unknown jobs and other tenants' jobs.
    st.stream_store.job(&tenant, id).await?;
    let max = st.cfg.api.max_streams_per_tenant;
    let Some(slot) = st.streams.open(&tenant, max) else {
        return Err(ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "too_many_streams",
            format!("tenant `{tenant}` has {max} event streams open (api.max_streams_per_tenant)"),
        )
        .retry_after(5));
    };
    let ends = Instant::now() + st.cfg.api.stream_max;
    let after: i64 = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let watch = st.hub.watch(id);
    let stream = futures::stream::unfold(Some((st, after, slot, watch)), move |state| async move {
        let (st, mut after, slot, watch) = state?;
        loop {
            if Instant::now() >= ends {
                // Past its lifetime: the client resumes with Last-Event-ID.
                return None;
            }
            // Listening before reading: a wake-up during the read is kept.
            let notify = watch.notify.clone();
            let woken = notify.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let mut events = read_since(&st, id, after).await;
            let mut finished = None;
            if events.is_empty() {
                match st.stream_store.job_end(id).await {
                    // The job's last events commit with its status: read once
                    // more, or those written between the two reads are lost.
                    Ok(job) if job.status.is_finished() => {
                        events = read_since(&st, id, after).await;
                        finished = Some(job);
                    }
                    _ => {}
                }
            }
            if !events.is_empty() {
                let out: Vec<Result<Event, Infallible>> = events
                    .iter()
                    .map(|e| {
                        Ok(Event::default()
                            .event(e.event.clone())
                            .id(e.id.to_string())
                            .json_data(e)
                            .unwrap_or_else(|_| Event::default().comment("unserialisable event")))
                    })
                    .collect();
                after = events.last().map_or(after, |e| e.id);
                return Some((futures::stream::iter(out), Some((st, after, slot, watch))));
            }
            match finished {
                Some(job) => {
                    let done = Event::default()
                        .event("done")
                        .json_data(serde_json::json!({
                            "status": job.status,
                            "cost_usd": job.cost_usd,
                            "always_strong_cost_usd": job.always_strong_cost_usd,
                        }))
                        .unwrap_or_default();
                    return Some((futures::stream::iter(vec![Ok(done)]), None));
                }
                None => {
                    tokio::select! {
                        _ = &mut woken => {}
                        _ = tokio::time::sleep(FALLBACK) => {}
                    }
                }
            }
        }
    });
    Ok(Sse::new(futures::StreamExt::flatten(stream)).keep_alive(KeepAlive::default()))
}

/// The job's route events after `after` (its tenant was checked when the
/// stream opened); none (logged) when reading fails.
async fn read_since(st: &AppState, id: Uuid, after: i64) -> Vec<RouteEvent> {
    st.stream_store.route_after(id, after).await.unwrap_or_else(|e| {
        tracing::warn!(job = %id, error = %e, "event stream: reading the route failed");
        Vec::new()
    })
}
