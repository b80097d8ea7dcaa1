//! The decision metrics (listed in [`crate::metrics`]): what one settled
//! attempt contributes, copied out while it is decided and recorded once
//! its transaction committed.

use super::Evidence;
use std::time::Duration;
use upshift_shared::messages::AttemptOutcome;
use upshift_shared::policy::Decision;
use upshift_shared::{JobStatus, Tier};

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
        // Escalations count their reasons, unresolved answers their findings.
        let (reasons, unresolved) = match self.decision {
            Decision::Escalate { .. } => (self.decision.reason_codes(), Vec::new()),
            Decision::Unresolved { .. } => (Vec::new(), self.decision.reason_codes()),
            Decision::Accept { .. } | Decision::Fail { .. } => (Vec::new(), Vec::new()),
        };
        let decision = self.decision.event().as_str();
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
pub fn jobs_finished(finished: &[(String, JobStatus)]) {
    for (tenant, status) in finished {
        metrics::counter!("upshift_jobs_finished_total", "tenant" => tenant.clone(), "status" => status.as_str())
            .increment(1);
    }
}
