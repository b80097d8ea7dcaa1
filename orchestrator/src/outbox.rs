//! Publishing after commit, and the sweeper that makes it crash-safe.
//!
//! An attempt is committed as `dispatched` first, then published; its
//! `published_at` is set only once JetStream acknowledged it. If the process
//! dies in between, the sweeper finds the attempt unpublished after a grace
//! period and publishes it again (`Nats-Msg-Id` makes a double publish
//! harmless). The sweeper also settles attempts past their deadline.

use crate::bus::Bus;
use crate::router::{Evidence, settle};
use crate::store::{Marks, Outgoing, PgStore};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use upshift_shared::config::Config;

/// Publishes the task messages of attempts just committed and records the
/// acknowledged ones. Failures are logged and left to the sweeper.
pub async fn publish(store: &PgStore, bus: &Bus, msgs: &[Outgoing]) {
    if msgs.is_empty() {
        return;
    }
    let done = bus.publish_tasks(msgs).await;
    if let Err(e) = store.published(done).await {
        tracing::warn!(error = %e, "marking attempts published failed; they will be re-published (deduplicated)");
    }
}

/// Most attempts marked by one statement.
const MARK_BATCH: usize = 1000;
/// How long marks skipped over a locked row wait before the next try.
const RETRY_AFTER: Duration = Duration::from_millis(5);
/// Tries of a skipped mark before it is left to the sweeper.
const MARK_TRIES: u32 = 40;

/// Marks acknowledged publishes in batches: whatever arrived while the last
/// `UPDATE` ran goes into the next one, so under load one statement and one
/// commit cover many attempts, and at rest a mark is written at once. Marks
/// skipped because a decision held the attempt's row are tried again with
/// the next batch (for at most [`MARK_TRIES`] rounds in a row, 5 ms apart when nothing
/// else arrives). A mark lost in a crash is harmless: the sweeper
/// re-publishes a still-dispatched attempt after `publish_grace_ms` and
/// JetStream drops the duplicate by its message id. Runs until every sender
/// is gone, then returns after the last batch.
pub async fn run_marker(store: PgStore, mut marks: tokio::sync::mpsc::UnboundedReceiver<Marks>) {
    let (mut again, mut tries) = (Marks::default(), 0);
    loop {
        let next = if again.ids.is_empty() {
            marks.recv().await
        } else {
            tokio::time::timeout(RETRY_AFTER, marks.recv())
                .await
                .unwrap_or_else(|_| Some(Marks::default()))
        };
        let Some(mut batch) = next else { break };
        batch.extend(std::mem::take(&mut again));
        while batch.ids.len() < MARK_BATCH {
            match marks.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        match store.mark_published(&batch).await {
            Ok(skipped) if skipped.ids.is_empty() || tries >= MARK_TRIES => tries = 0,
            Ok(skipped) => {
                again = skipped;
                tries += 1;
            }
            Err(e) => {
                tracing::warn!(error = %e, count = batch.ids.len(), "marking attempts published failed; the sweeper re-publishes them (deduplicated)");
            }
        }
    }
}

/// Runs the sweeper until `cancel`: re-publishes stale unpublished attempts
/// and settles overdue ones with `timeout`.
pub async fn run_sweeper(store: PgStore, bus: Bus, cfg: std::sync::Arc<Config>, cancel: CancellationToken) {
    let period = cfg.orchestrator.sweep_interval;
    let grace = cfg.orchestrator.publish_grace;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        match store.unpublished(grace, 500).await {
            Ok(ids) if !ids.is_empty() => {
                tracing::info!(count = ids.len(), "re-publishing unacknowledged attempts");
                match store.task_messages(&ids).await {
                    Ok(msgs) => publish(&store, &bus, &msgs).await,
                    Err(e) => tracing::warn!(error = %e, "sweeper: loading attempts to re-publish failed"),
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "sweeper: database unavailable"),
        }
        match store.overdue(100).await {
            Ok(ids) => {
                for id in ids {
                    match settle(&store, &cfg, id, Evidence::Timeout).await {
                        Ok(next) => publish(&store, &bus, &next).await,
                        Err(e) => tracing::warn!(attempt = %id, error = %e, "sweeper: settling timeout failed"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "sweeper: database unavailable"),
        }
    }
}
