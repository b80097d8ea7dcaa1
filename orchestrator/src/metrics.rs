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

use crate::bus::Bus;
use crate::router::Evidence;
use crate::store::PgStore;
use std::time::Duration;
use upshift_shared::Tier;
use upshift_shared::messages::AttemptOutcome;
use upshift_shared::policy::Decision;

/// What one settled attempt contributes.
pub struct Settled<'a> {
    /// Tier of the attempt.
    pub tier: Tier,
    /// The job's tenant.
    pub tenant: &'a str,
    /// The step's task type.
    pub task_type: &'a str,
    /// What arrived.
    pub evidence: &'a Evidence<'a>,
    /// What was decided.
    pub decision: &'a Decision,
    /// The call's cost.
    pub cost_usd: f64,
}

/// Owned labels and values, recorded once the decision committed.
pub struct Observed {
    tier: &'static str,
    tenant: String,
    task_type: String,
    model: Option<String>,
    outcome: &'static str,
    decision: &'static str,
    /// Escalation reasons.
    reasons: Vec<&'static str>,
    /// Why an answer was left unresolved.
    unresolved: Vec<&'static str>,
    cost_microusd: u64,
    latency: Option<Duration>,
    sent_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Settled<'_> {
    /// Copies out what the metrics need.
    pub fn labels(&self) -> Observed {
        let (model, outcome, latency, sent_at) = match self.evidence {
            Evidence::Result(m) => (
                Some(m.model.clone()),
                if matches!(m.outcome, AttemptOutcome::Answered { .. }) {
                    "answered"
                } else {
                    "failed"
                },
                Some(Duration::from_millis(m.latency_ms)),
                m.sent_at,
            ),
            Evidence::Timeout => (None, "timeout", None, None),
            Evidence::DeadLettered { .. } => (None, "dead_lettered", None, None),
        };
        let (decision, reasons, unresolved) = match self.decision {
            Decision::Accept { .. } => ("accept", Vec::new(), Vec::new()),
            Decision::Unresolved { findings } => (
                "unresolved",
                Vec::new(),
                findings.iter().map(|f| f.code.as_str()).collect(),
            ),
            Decision::Escalate { reasons, .. } => {
                ("escalate", reasons.iter().map(|r| r.as_str()).collect(), Vec::new())
            }
            Decision::Fail { .. } => ("fail", Vec::new(), Vec::new()),
        };
        Observed {
            tier: self.tier.as_str(),
            tenant: self.tenant.to_string(),
            task_type: self.task_type.to_string(),
            model,
            outcome,
            decision,
            reasons,
            unresolved,
            cost_microusd: (self.cost_usd * 1e6).round() as u64,
            latency,
            sent_at,
        }
    }
}

/// Records a committed decision.
pub fn record(o: &Observed, took: Duration) {
    let model = o.model.clone().unwrap_or_else(|| "none".into());
    metrics::counter!("upshift_attempts_total", "tier" => o.tier, "model" => model.clone(), "outcome" => o.outcome)
        .increment(1);
    metrics::counter!("upshift_decisions_total", "tier" => o.tier, "decision" => o.decision, "task_type" => o.task_type.clone())
        .increment(1);
    for r in &o.reasons {
        metrics::counter!("upshift_escalations_total", "tier" => o.tier, "reason" => *r, "task_type" => o.task_type.clone())
            .increment(1);
    }
    for r in &o.unresolved {
        metrics::counter!("upshift_unresolved_total", "tier" => o.tier, "reason" => *r, "task_type" => o.task_type.clone())
            .increment(1);
    }
    if o.cost_microusd > 0 {
        metrics::counter!("upshift_cost_microusd_total", "tier" => o.tier, "tenant" => o.tenant.clone())
            .increment(o.cost_microusd);
    }
    if let Some(l) = o.latency {
        metrics::histogram!("upshift_model_call_seconds", "tier" => o.tier, "model" => model).record(l.as_secs_f64());
    }
    metrics::histogram!("upshift_decision_seconds").record(took.as_secs_f64());
    if let Some(sent) = o.sent_at
        && let Ok(d) = (chrono::Utc::now() - sent).to_std()
    {
        metrics::histogram!("upshift_result_to_decision_seconds").record(d.as_secs_f64());
    }
}

/// Counts jobs that finished, by tenant and how they ended.
pub fn jobs_finished(finished: &[(String, &'static str)]) {
    for (tenant, status) in finished {
        metrics::counter!("upshift_jobs_finished_total", "tenant" => tenant.clone(), "status" => *status).increment(1);
    }
}

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
        let running: Result<i64, _> = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE status = 'running'")
            .fetch_one(&store.pool)
            .await;
        if let Ok(n) = running {
            metrics::gauge!("upshift_jobs_in_flight").set(n as f64);
        }
    }
}
