//! The consumer loops: results (`<prefix>.results`) and dead letters (the
//! `<PREFIX>_DEAD` stream), each pulled from a durable consumer shared by all
//! replicas.
//!
//! A message is acked only after its decision committed, so a crash before
//! the ack redelivers it and [`settle`] recognises it as seen. An unreadable
//! message is recorded in `dead_letters` with its reason and terminated, never
//! redelivered in a loop.

use crate::bus::Bus;
use crate::dead;
use crate::outbox::publish;
use crate::router::{Evidence, settle};
use crate::store::PgStore;
use async_nats::jetstream::AckKind;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use upshift_shared::config::Config;
use upshift_shared::messages::ResultMessage;

/// Which shared consumer a loop pulls from.
#[derive(Debug, Clone, Copy)]
pub enum Feed {
    /// Worker results.
    Results,
    /// Dead letters and max-deliveries advisories.
    DeadLetters,
}

/// Consumes `feed` until `cancel`; rebinds the consumer after errors.
pub async fn run(feed: Feed, store: PgStore, bus: Bus, cfg: Arc<Config>, cancel: CancellationToken) {
    let concurrency = cfg.orchestrator.result_batch.clamp(1, 64);
    while !cancel.is_cancelled() {
        let consumer = match feed {
            Feed::Results => bus.results_consumer().await,
            Feed::DeadLetters => bus.dead_consumer().await,
        };
        let messages = match consumer {
            Ok(c) => c.messages().await.map_err(crate::Error::nats),
            Err(e) => Err(e),
        };
        let messages = match messages {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, ?feed, "consumer unavailable; retrying");
                tokio::select! { _ = cancel.cancelled() => return, _ = tokio::time::sleep(Duration::from_secs(1)) => continue }
            }
        };
        // Stop pulling on cancel; messages pulled but not acked are redelivered.
        let messages = messages.take_until(cancel.clone().cancelled_owned());
        messages
            .for_each_concurrent(concurrency, |msg| {
                let (store, bus, cfg) = (store.clone(), bus.clone(), cfg.clone());
                async move {
                    let msg = match msg {
                        Ok(m) => m,
                        Err(e) => return tracing::warn!(error = %e, ?feed, "pull error"),
                    };
                    match feed {
                        Feed::Results => handle_result(&store, &bus, &cfg, msg).await,
                        Feed::DeadLetters => dead::handle(&store, &bus, &cfg, msg).await,
                    }
                }
            })
            .await;
    }
}

async fn handle_result(store: &PgStore, bus: &Bus, cfg: &Config, msg: async_nats::jetstream::Message) {
    let result = match ResultMessage::decode(&msg.payload) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, subject = %msg.subject, "unreadable result message set aside");
            let reason = e.to_string();
            match store
                .record_dead_letter("orchestrator", &msg.subject, &reason, None, &msg.payload)
                .await
            {
                Ok(()) => {
                    let _ = msg.ack_with(AckKind::Term).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "recording the dead letter failed; retrying later");
                    let _ = msg.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
                }
            }
            return;
        }
    };
    let span = tracing::info_span!(
        "attempt.decide",
        job = %result.job_id,
        step = %result.step_id,
        attempt = %result.attempt_id,
        tier = %result.tier,
        model = %result.model,
        decision = tracing::field::Empty,
        reasons = tracing::field::Empty,
        cost_usd = tracing::field::Empty,
    );
    upshift_shared::telemetry::set_parent_from_headers(&span, msg.headers.as_ref());
    let settled = settle(store, cfg, result.attempt_id, Evidence::Result(&result))
        .instrument(span.clone())
        .await;
    match settled {
        Ok(next) => {
            publish(store, bus, &next).instrument(span).await;
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
