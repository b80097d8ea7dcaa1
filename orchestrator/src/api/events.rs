//! `GET /v1/jobs/{id}/events`: a job's progress as server-sent events.
//!
//! Each route event (`start`, `dispatch`, `accept`, `escalate` with its
//! reasons, `fail`, …) is sent as an SSE event of that name, its `id` the
//! event's sequence number, so a client that reconnects with `Last-Event-ID`
//! continues where it stopped. A final `done` event carries the job's status
//! and cost, then the stream ends. A stream reads Postgres when it opens,
//! then only when the replica's one poller ([`super::hub`]) has seen an
//! event of its job newer than the last it sent (and every few seconds
//! regardless), which keeps any orchestrator replica able to serve it and
//! an idle stream free of queries. Each read is one statement: the events
//! after the last one sent and the job's status, in one snapshot, so a
//! finished job's last events are never missed and `done` needs no second
//! read. The tenant is checked by the first read, before the stream starts.
//!
//! Streams read through a pool of their own (`api.stream_db_connections`),
//! so decisions never wait for a connection behind them. A tenant holds at
//! most `api.max_streams_per_tenant` streams on one replica (more get 429),
//! and a stream ends after `api.stream_max_secs` even if its job has not
//! finished: the client reconnects with `Last-Event-ID` and loses nothing.

use super::hub::Watch;
use super::views::{JobDone, RouteEvent};
use super::{ApiError, AppState, ErrorBody, StreamTenant};
use crate::store::{EventRecord, JobEnd, Progress};
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
pub(super) struct Slot {
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
    StreamTenant(tenant): StreamTenant,
    id: Result<Path<Uuid>, PathRejection>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Path(id) = id?;
    let after: i64 = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    // The cap first: a tenant at its cap costs no read, whatever job it names.
    let slot = open_stream(&st, &tenant)?;
    // Following before the first read: an event the read misses wakes it.
    let watch = st.hub.watch(id);
    // 404 before the stream starts, for unknown jobs and other tenants'
    // jobs; the same read is the stream's first.
    let first = st.stream_store.progress(Some(&tenant), id, after).await?;
    let ends = Instant::now() + st.cfg.api.stream_max;
    let follow = Follow::new(st, id, after, ends, watch, Some(slot));
    let stream = futures::stream::unfold(Some((follow, Some(first))), |state| async move {
        let (mut follow, mut next) = state?;
        loop {
            let progress = match next.take() {
                Some(p) => p,
                None => follow.next().await?,
            };
            let finished = progress.end.status.is_finished();
            if progress.events.is_empty() && !finished {
                continue;
            }
            let mut out: Vec<Result<Event, Infallible>> = progress.events.iter().map(|e| Ok(sse(e))).collect();
            follow.after = progress.events.last().map_or(follow.after, |e| e.id);
            if finished {
                // Read in one snapshot with its events: nothing comes after.
                out.push(Ok(done(&progress.end)));
                return Some((futures::stream::iter(out), None));
            }
            return Some((futures::stream::iter(out), Some((follow, None))));
        }
    });
    Ok(Sse::new(futures::StreamExt::flatten(stream)).keep_alive(KeepAlive::default()))
}

/// A place for one more stream of `tenant` (event streams and streamed
/// chats alike), or 429 at `api.max_streams_per_tenant`.
pub(super) fn open_stream(st: &AppState, tenant: &str) -> Result<Slot, ApiError> {
    let max = st.cfg.api.max_streams_per_tenant;
    st.streams.open(tenant, max).ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "too_many_streams",
            format!("tenant `{tenant}` has {max} event streams open (api.max_streams_per_tenant)"),
        )
        .retry_after(5)
    })
}

/// Following a job's progress: its state between reads.
pub(super) struct Follow {
    st: AppState,
    id: Uuid,
    /// The last event id sent.
    pub(super) after: i64,
    /// When the stream ends even if its job has not.
    ends: Instant,
    watch: Watch,
    /// Held for the stream's life: its place under the tenant's cap.
    _slot: Option<Slot>,
}

impl Follow {
    /// Follows job `id` from event `after` until `ends`; `watch` is the
    /// hub's, taken before the first read.
    pub(super) fn new(st: AppState, id: Uuid, after: i64, ends: Instant, watch: Watch, slot: Option<Slot>) -> Self {
        Follow {
            st,
            id,
            after,
            ends,
            watch,
            _slot: slot,
        }
    }

    /// Waits until the job may have events after `after` (the poller saw a
    /// newer id, or [`FALLBACK`] passed), then reads them with the job's
    /// status; `None` once the stream is past its lifetime.
    pub(super) async fn next(&mut self) -> Option<Progress> {
        loop {
            let left = self.ends.checked_duration_since(Instant::now())?;
            if left.is_zero() {
                return None;
            }
            tokio::select! {
                changed = self.watch.newest.changed() => match changed {
                    // Told of the newest id seen, look-backs included: read
                    // only when it is past what this stream already sent.
                    Ok(()) if *self.watch.newest.borrow_and_update() <= self.after => continue,
                    Ok(()) => {}
                    // The hub holds the sender while this watch lives; if it
                    // ever did not, the fallback alone paces the reads.
                    Err(_) => tokio::time::sleep(FALLBACK.min(left)).await,
                },
                _ = tokio::time::sleep(FALLBACK.min(left)) => {
                    if Instant::now() >= self.ends {
                        // Past its lifetime: the client resumes with Last-Event-ID.
                        return None;
                    }
                }
            }
            match self.st.stream_store.progress(None, self.id, self.after).await {
                Ok(p) => return Some(p),
                Err(e) => tracing::warn!(job = %self.id, error = %e, "event stream: reading the route failed"),
            }
        }
    }
}

/// A route event as an SSE event named after it, its id the event's.
fn sse(e: &EventRecord) -> Event {
    Event::default()
        .event(e.event.as_str())
        .id(e.id.to_string())
        .json_data(RouteEvent::from(e))
        .unwrap_or_else(|_| Event::default().comment("unserialisable event"))
}

/// The stream's last event: the job's status and what it cost.
fn done(end: &JobEnd) -> Event {
    Event::default()
        .event("done")
        .json_data(JobDone::from(end))
        .unwrap_or_default()
}
