//! The consumer loops: results (`<prefix>.results`) and dead letters (the
//! `<PREFIX>_DEAD` stream), each pulled from a durable consumer shared by all
//! replicas.
//!
//! Results waiting together are decided together, in one transaction
//! ([`settle_batch`]). A message is acked only after its decision committed,
//! so a crash before the ack redelivers it and the router recognises it as
//! seen. An unreadable
//! message is recorded in `dead_letters` with its reason and terminated, never
//! redelivered in a loop.

use crate::bus::Bus;
use crate::collections::Retriever;
use crate::dead;
use crate::outbox::publish;
use crate::router::{Evidence, Item, settle_batch};
use crate::store::PgStore;
use async_nats::jetstream::AckKind;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use upshift_shared::config::Config;
use upshift_shared::messages::{AttemptOutcome, ResultMessage};

/// Which shared consumer a loop pulls from.
#[derive(Debug, Clone, Copy)]
pub enum Feed {
    /// Worker results.
    Results,
    /// Dead letters and max-deliveries advisories.
    DeadLetters,
}

/// Result batches decided at once: while one batch waits on Postgres the
/// next is being read and verified.
const BATCHES_IN_FLIGHT: usize = 2;

/// Consumes `feed` until `cancel`; rebinds the consumer after errors.
pub async fn run(
    feed: Feed,
    store: PgStore,
    bus: Bus,
    cfg: Arc<Config>,
    retriever: Retriever,
    cancel: CancellationToken,
) {
    let batch = cfg.orchestrator.result_batch.clamp(1, 1000);
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
        let messages = messages
            .take_until(cancel.clone().cancelled_owned())
            .filter_map(|m| async move { m.map_err(|e| tracing::warn!(error = %e, ?feed, "pull error")).ok() });
        match feed {
            // Whatever results are waiting (up to `batch`) are decided together.
            Feed::Results => {
                messages
                    .ready_chunks(batch)
                    .for_each_concurrent(BATCHES_IN_FLIGHT, |msgs| {
                        handle_results(&store, &bus, &cfg, &retriever, msgs)
                    })
                    .await
            }
            Feed::DeadLetters => {
                messages
                    .for_each_concurrent(batch, |msg| dead::handle(&store, &bus, &cfg, msg))
                    .await
            }
        }
    }
}

/// A result message with what it decodes to and its `attempt.decide` span.
struct Received {
    msg: async_nats::jetstream::Message,
    result: ResultMessage,
    span: tracing::Span,
}

/// Decides a batch of results in one transaction, publishes what follows,
/// then acks them. If the batch fails, each result is tried alone, so one
/// that cannot be decided delays only itself.
async fn handle_results(
    store: &PgStore,
    bus: &Bus,
    cfg: &Config,
    retriever: &Retriever,
    msgs: Vec<async_nats::jetstream::Message>,
) {
    let mut received = Vec::with_capacity(msgs.len());
    for msg in msgs {
        match ResultMessage::decode(&msg.payload) {
            Ok(mut result) => {
                if let Some(why) = result.make_storable() {
                    tracing::warn!(attempt = %result.attempt_id, %why, "a result that cannot be stored is decided as a failure");
                }
                let span = decide_span(&result, &msg);
                received.push(Received { msg, result, span });
            }
            Err(e) => set_aside(store, msg, e.to_string()).await,
        }
    }
    let items: Vec<Item<'_>> = received.iter().map(Received::item).collect();
    match settle_batch(store, cfg, retriever, &items).await {
        Ok(next) => {
            publish(store, bus, &next).await;
            for r in &received {
                r.ack().await;
            }
        }
        Err(e) if items.len() > 1 => {
            tracing::warn!(error = %e, count = items.len(), "settling a batch failed; settling its results one by one");
            for (r, item) in received.iter().zip(&items) {
                match settle_batch(store, cfg, retriever, std::slice::from_ref(item)).await {
                    Ok(next) => {
                        publish(store, bus, &next).await;
                        r.ack().await;
                    }
                    Err(e) => not_settled(store, bus, cfg, retriever, r, &e).await,
                }
            }
        }
        Err(e) => {
            for r in &received {
                not_settled(store, bus, cfg, retriever, r, &e).await;
            }
        }
    }
}

/// A result that could not be settled alone: retried later, waiting 1 s
/// doubling up to 30 s, so an outage of Postgres loses nothing. On its
/// `orchestrator.result_max_deliver`th delivery it is taken to be a poison
/// message instead: the attempt is decided as a failure without its output
/// (the router escalates it like any failure), the message is kept in
/// `dead_letters` and dropped, so it is never redelivered forever.
async fn not_settled(store: &PgStore, bus: &Bus, cfg: &Config, retriever: &Retriever, r: &Received, e: &crate::Error) {
    let (delivered, wait) = crate::bus::redelivery_wait(&r.msg);
    let attempt = r.result.attempt_id;
    if delivered < cfg.orchestrator.result_max_deliver {
        tracing::warn!(error = %e, %attempt, delivered, ?wait, "settling failed; retrying later");
        let _ = r.msg.ack_with(AckKind::Nak(Some(wait))).await;
        return;
    }
    let reason = upshift_shared::messages::without_nul(&format!(
        "unsettled result: settling failed on {delivered} deliveries: {e}"
    ));
    let mut failed = r.result.clone();
    failed.outcome = AttemptOutcome::Failed {
        class: "fatal".into(),
        message: reason.clone(),
    };
    let item = Item {
        attempt,
        evidence: Evidence::Result(&failed),
        span: r.span.clone(),
    };
    match settle_batch(store, cfg, retriever, std::slice::from_ref(&item)).await {
        Ok(next) => {
            tracing::error!(%attempt, %reason, "a result that never settled is decided as a failure");
            if let Err(e) = store
                .record_dead_letter("orchestrator", &r.msg.subject, &reason, Some(attempt), &r.msg.payload)
                .await
            {
                tracing::warn!(error = %e, %attempt, "recording the unsettled result failed");
            }
            publish(store, bus, &next).await;
            let _ = r.msg.ack_with(AckKind::Term).await;
        }
        Err(e) => {
            // Even the failure cannot be written: Postgres is down.
            tracing::warn!(error = %e, %attempt, "deciding an unsettled result failed; retrying later");
            let _ = r.msg.ack_with(AckKind::Nak(Some(Duration::from_secs(30)))).await;
        }
    }
}

impl Received {
    fn item(&self) -> Item<'_> {
        Item {
            attempt: self.result.attempt_id,
            evidence: Evidence::Result(&self.result),
            span: self.span.clone(),
        }
    }

    async fn ack(&self) {
        if let Err(e) = self.msg.ack().await {
            let attempt = self.result.attempt_id;
            tracing::warn!(error = %e, %attempt, "ack failed; the result will be redelivered and recognised");
        }
    }
}

/// The `attempt.decide` span of a result, in the trace of its job.
fn decide_span(result: &ResultMessage, msg: &async_nats::jetstream::Message) -> tracing::Span {
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
    upshift_runtime::set_parent_from_headers(&span, msg.headers.as_ref());
    span
}

/// Records an unreadable result message in `dead_letters` and terminates it.
async fn set_aside(store: &PgStore, msg: async_nats::jetstream::Message, reason: String) {
    tracing::error!(error = %reason, subject = %msg.subject, "unreadable result message set aside");
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
}
