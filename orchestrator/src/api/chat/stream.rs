//! A streamed chat (`stream: true`): while the cascade runs, each route
//! event goes out as an SSE comment line (it keeps proxies alive and shows
//! progress); once the job is finished, the defended answer follows as
//! `chat.completion.chunk` content, then the final chunk (finish reason
//! and the `upshift` object), a usage chunk when asked, and `[DONE]`. An
//! answer no tier could defend, a failed job or a wait past
//! `api.chat_wait_secs` ends with an OpenAI-shaped error event instead
//! (the SDKs raise it). Only `x-upshift-job-id` can be a header here: the
//! rest is known when the answer is, and travels in the final chunk.

use super::reply::{Answer, completion_id, job_header};
use super::translate::Wanted;
use super::{ChatError, Follow, finished};
use crate::api::AppState;
use crate::store::{EventRecord, Progress};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use tokio::sync::mpsc;
use uuid::Uuid;

/// Content is sent in pieces of about this many bytes.
const PIECE: usize = 64;

/// The streamed answer to job `id`'s chat.
pub(super) fn respond(
    st: AppState,
    tenant: String,
    id: Uuid,
    wanted: Wanted,
    follow: Follow,
    first: Progress,
) -> Response {
    let (tx, rx) = mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        // A send fails only when the client left: then stop following.
        let _ = run(&st, &tenant, id, &wanted, follow, first, &tx).await;
    });
    let events = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    (job_header(id), Sse::new(events).keep_alive(KeepAlive::default())).into_response()
}

/// Sends the route as it happens, then the answer or the error.
async fn run(
    st: &AppState,
    tenant: &str,
    id: Uuid,
    wanted: &Wanted,
    mut follow: Follow,
    mut progress: Progress,
    tx: &mpsc::Sender<Event>,
) -> Result<(), mpsc::error::SendError<Event>> {
    loop {
        for e in &progress.events {
            tx.send(comment(e)).await?;
        }
        if progress.end.status.is_finished() {
            break;
        }
        match follow.next().await {
            Some(p) => {
                follow.after = p.events.last().map_or(follow.after, |e| e.id);
                progress = p;
            }
            None => {
                let e = ChatError::timeout(id, st.cfg.api.chat_wait().as_secs());
                return finish(tx, error_event(&e.body)).await;
            }
        }
    }
    let answer = match finished(st, tenant, id).await {
        Ok(f) => f.answer(&wanted.model),
        Err(e) => return finish(tx, error_event(&ChatError::from(e).body)).await,
    };
    if answer.info.defended || (wanted.unresolved_answer && answer.info.status == "unresolved") {
        for chunk in chunks(&answer, wanted.include_usage) {
            tx.send(Event::default().json_data(chunk).unwrap_or_default()).await?;
        }
        return tx.send(Event::default().data("[DONE]")).await;
    }
    let (_, body) = answer.refusal();
    finish(tx, error_event(&body)).await
}

/// Sends the last event (and `[DONE]` after an error).
async fn finish(tx: &mpsc::Sender<Event>, last: Event) -> Result<(), mpsc::error::SendError<Event>> {
    tx.send(last).await?;
    tx.send(Event::default().data("[DONE]")).await.or(Ok(()))
}

/// A route event as an SSE comment: `upshift: {json}`.
fn comment(e: &EventRecord) -> Event {
    let line = serde_json::json!({
        "step": e.step, "event": e.event, "from_tier": e.from_tier, "to_tier": e.to_tier,
        "reasons": e.reasons, "model": e.model,
    });
    Event::default().comment(format!("upshift: {line}"))
}

/// An OpenAI-shaped error as a data event.
fn error_event(body: &super::wire::ChatErrorBody) -> Event {
    Event::default().json_data(body).unwrap_or_default()
}

/// The answer's chunks: the role, the content in pieces, the final chunk
/// with the finish reason and the `upshift` object, and the usage chunk.
fn chunks(a: &Answer, include_usage: bool) -> Vec<serde_json::Value> {
    let id = completion_id(a.info.job_id);
    let chunk = |delta: serde_json::Value, finish: Option<&str>| {
        serde_json::json!({
            "id": id, "object": "chat.completion.chunk", "created": a.created, "model": a.model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
        })
    };
    let mut out = vec![chunk(serde_json::json!({ "role": "assistant", "content": "" }), None)];
    let text = a.content.as_deref().unwrap_or_default();
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = rest.len().min(PIECE);
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        let (piece, tail) = rest.split_at(cut);
        out.push(chunk(serde_json::json!({ "content": piece }), None));
        rest = tail;
    }
    let mut last = chunk(serde_json::json!({}), Some("stop"));
    last["upshift"] = serde_json::to_value(&a.info).expect("info serialises");
    out.push(last);
    if include_usage {
        out.push(serde_json::json!({
            "id": id, "object": "chat.completion.chunk", "created": a.created, "model": a.model,
            "choices": [], "usage": a.usage,
        }));
    }
    out
}
