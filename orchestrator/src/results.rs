//! The results loop: pulls `<prefix>.results` from the consumer shared by all
//! replicas, settles each result, publishes follow-up attempts, then acks.
//!
//! A result is acked only after its decision committed, so a crash before the
//! ack redelivers it and [`settle`] recognises it as seen. A malformed or
//! unknown-version message is terminated (not redelivered) with a logged reason.

use crate::bus::Bus;
use crate::outbox::publish;
use crate::router::{Evidence, settle};
use crate::store::PgStore;
use async_nats::jetstream::AckKind;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use upshift_shared::config::Config;
use upshift_shared::messages::ResultMessage;

/// Consumes results until `cancel`; reconnects the consumer after errors.
pub async fn run(store: PgStore, bus: Bus, cfg: Arc<Config>, cancel: CancellationToken) {
    let concurrency = cfg.orchestrator.result_batch.clamp(1, 64);
    while !cancel.is_cancelled() {
        let consumer = match bus.results_consumer().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "results consumer unavailable; retrying");
                tokio::select! { _ = cancel.cancelled() => return, _ = tokio::time::sleep(Duration::from_secs(1)) => continue }
            }
        };
        let messages = match consumer.messages().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "results stream unavailable; retrying");
                tokio::select! { _ = cancel.cancelled() => return, _ = tokio::time::sleep(Duration::from_secs(1)) => continue }
            }
        };
        // Stop pulling on cancel; results already pulled but not acked are redelivered.
        let messages = messages.take_until(cancel.clone().cancelled_owned());
        messages
            .for_each_concurrent(concurrency, |msg| {
                let (store, bus, cfg) = (store.clone(), bus.clone(), cfg.clone());
                async move {
                    let msg = match msg {
                        Ok(m) => m,
                        Err(e) => return tracing::warn!(error = %e, "results pull error"),
                    };
                    handle(&store, &bus, &cfg, msg).await;
                }
            })
            .await;
    }
}

async fn handle(store: &PgStore, bus: &Bus, cfg: &Config, msg: async_nats::jetstream::Message) {
    let result = match ResultMessage::decode(&msg.payload) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, subject = %msg.subject, "rejecting unreadable result message");
            let _ = msg.ack_with(AckKind::Term).await;
            return;
        }
    };
    match settle(store, cfg, result.attempt_id, Evidence::Result(&result)).await {
        Ok(next) => {
            publish(store, bus, &next).await;
            if let Err(e) = msg.ack().await {
                tracing::warn!(error = %e, attempt = %result.attempt_id, "ack failed; the result will be redelivered and recognised");
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, attempt = %result.attempt_id, "settling failed; retrying later");
            let _ = msg.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
        }
    }
}
