//! Dead letters. JetStream publishes an advisory when a task message exhausts
//! `max_deliver` (a worker crashed on it every time, say); the advisories are
//! captured by the `<PREFIX>_DEAD` stream, so none is missed while no
//! orchestrator runs. For each, the attempt is decided as `dead_lettered`
//! (escalated or failed like any other failure), the message is recorded in
//! `dead_letters` and removed from the task stream. Messages workers set
//! aside as unreadable (`<prefix>.dead`) are recorded too.

use crate::bus::Bus;
use crate::outbox::publish;
use crate::router::{Evidence, settle};
use crate::store::PgStore;
use async_nats::jetstream::{AckKind, Message};
use serde::Deserialize;
use upshift_shared::config::Config;
use upshift_shared::messages::TaskMessage;

/// The fields of JetStream's max-deliveries advisory that matter here.
#[derive(Debug, Deserialize)]
struct MaxDeliveries {
    stream_seq: u64,
    deliveries: u64,
    consumer: String,
}

/// Handles one message of the dead-letter stream; acks only once recorded.
pub async fn handle(store: &PgStore, bus: &Bus, cfg: &Config, msg: Message) {
    let outcome = if msg.subject.starts_with("$JS.EVENT.ADVISORY.") {
        advisory(store, bus, cfg, &msg).await
    } else {
        let header = |k: &str| {
            msg.headers
                .as_ref()
                .and_then(|h| h.get(k))
                .map(|v| v.as_str().to_string())
        };
        let reason = header("Upshift-Reason").unwrap_or_else(|| "unspecified".into());
        let subject = header("Upshift-Subject").unwrap_or_else(|| msg.subject.to_string());
        store
            .record_dead_letter("worker", &subject, &reason, None, &msg.payload)
            .await
    };
    match outcome {
        Ok(()) => {
            let _ = msg.ack().await;
        }
        Err(e) => {
            // Postgres or NATS is failing, not the message (whose bytes are
            // stored as they are): wait longer each time, up to 30 s.
            let (delivered, wait) = crate::bus::redelivery_wait(&msg);
            tracing::warn!(error = %e, delivered, ?wait, "handling a dead letter failed; retrying later");
            let _ = msg.ack_with(AckKind::Nak(Some(wait))).await;
        }
    }
}

async fn advisory(store: &PgStore, bus: &Bus, cfg: &Config, msg: &Message) -> crate::error::Result<()> {
    let adv: MaxDeliveries = match serde_json::from_slice(&msg.payload) {
        Ok(a) => a,
        Err(e) => {
            return store
                .record_dead_letter(
                    "nats",
                    &msg.subject,
                    &format!("unreadable advisory: {e}"),
                    None,
                    &msg.payload,
                )
                .await;
        }
    };
    // A NATS error here is returned, so the advisory is retried: acking it
    // would leave the task in the work queue and the attempt undecided.
    let Some(payload) = bus.task_at(adv.stream_seq).await? else {
        // Already removed (handled before, by another replica or by an
        // earlier delivery of this advisory, or acked at the last moment).
        return Ok(());
    };
    let reason = format!("no result after {} deliveries on {}", adv.deliveries, adv.consumer);
    match TaskMessage::decode(&payload) {
        Ok(task) => {
            tracing::warn!(attempt = %task.attempt_id, deliveries = adv.deliveries, "attempt dead-lettered");
            let next = settle(
                store,
                cfg,
                task.attempt_id,
                Evidence::DeadLettered {
                    deliveries: adv.deliveries,
                },
            )
            .await?;
            store
                .record_dead_letter(
                    "max_deliveries",
                    &bus.subjects.tasks(task.tier),
                    &reason,
                    Some(task.attempt_id),
                    &payload,
                )
                .await?;
            publish(store, bus, &next).await;
        }
        Err(e) => {
            store
                .record_dead_letter(
                    "max_deliveries",
                    &msg.subject,
                    &format!("{reason}; unreadable: {e}"),
                    None,
                    &payload,
                )
                .await?;
        }
    }
    // A failed delete is retried with the advisory: the decision and the
    // record above are idempotent, and the next try finds the task gone.
    bus.delete_task(adv.stream_seq).await
}
