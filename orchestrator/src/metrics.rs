//! Prometheus metrics of the orchestrator, served at `/metrics`. Names follow
//! Prometheus conventions (`upshift_…_total`, `_seconds`, base units; money
//! in micro-dollars because counters are integers).
//!
//! - `upshift_jobs_submitted_total{tenant}`
//! - `upshift_attempts_total{tier, model, outcome}` — outcome: answered, failed, timeout, dead_lettered
//! - `upshift_decisions_total{tier, decision, task_type}` — decision: accept, unresolved, escalate, fail
//! - `upshift_escalations_total{tier, reason, task_type}` — one per reason code
//! - `upshift_unresolved_total{tier, reason, task_type}` — why answers were left undefended, one per reason code
//! - `upshift_jobs_finished_total{tenant, status}` — status: succeeded (defended), unresolved, failed
//! - `upshift_embedded_texts_total` — passages embedded for dense retrieval
//! - `upshift_cost_microusd_total{tier, tenant}`
//! - `upshift_model_call_seconds{tier, model}` (histogram, as the worker timed it)
//! - `upshift_decision_seconds` (histogram: locking, verifying, deciding, committing)
//! - `upshift_result_to_decision_seconds` (histogram: worker sent → decision committed)
//! - `upshift_queue_depth{tier}`, `upshift_redelivered_messages{tier}` (gauges, every 5 s)
//! - `upshift_jobs_in_flight` (gauge, every 5 s)
//!
//! The decision metrics are recorded by the router once a decision commits
//! (`router::observe`); this module samples the gauges.

use crate::bus::Bus;
use crate::store::PgStore;
use std::time::Duration;
use upshift_shared::Tier;

/// Samples queue depths, redeliveries and in-flight jobs every 5 s until cancelled.
pub async fn sample(store: PgStore, bus: Bus, cancel: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        if let Ok(stream) = bus.js.get_stream(bus.subjects.tasks_stream()).await {
            for tier in Tier::ALL {
                let name = bus.subjects.worker_consumer(*tier);
                let consumer: Result<async_nats::jetstream::consumer::PullConsumer, _> =
                    stream.get_consumer(&name).await;
                if let Ok(mut c) = consumer
                    && let Ok(info) = c.info().await
                {
                    let depth = info.num_pending as f64 + info.num_ack_pending as f64;
                    metrics::gauge!("upshift_queue_depth", "tier" => tier.as_str()).set(depth);
                    metrics::gauge!("upshift_redelivered_messages", "tier" => tier.as_str())
                        .set(info.num_redelivered as f64);
                }
            }
        }
        if let Ok(n) = store.running_jobs().await {
            metrics::gauge!("upshift_jobs_in_flight").set(n as f64);
        }
    }
}
