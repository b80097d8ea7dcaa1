//! The rows a unit loads, creates and writes.

use serde::Serialize;
use upshift_shared::{AttemptStatus, AttemptVerdict, JobStatus, StepState, Tier};
use uuid::Uuid;

/// A job as the router needs it.
#[derive(sqlx::FromRow)]
pub(crate) struct JobRow {
    pub id: Uuid,
    pub tenant: String,
    pub kind: String,
    /// The stored request, loaded for `rag` jobs only.
    pub input: Option<serde_json::Value>,
    pub blast_radius: String,
    pub budget_usd: Option<f64>,
    /// Cost recorded before this unit.
    pub cost_usd: f64,
    pub traceparent: Option<String>,
    /// Cost added by this unit.
    #[sqlx(skip)]
    pub added_cost: f64,
    /// Set when this unit finishes the job: status, result, always-strong cost.
    #[sqlx(skip)]
    pub finish: Option<(JobStatus, serde_json::Value, f64)>,
}

impl JobRow {
    /// The job's cost including what this unit added.
    pub fn cost(&self) -> f64 {
        self.cost_usd + self.added_cost
    }
}

/// A step, loaded or new, with the columns the router reads and writes.
#[derive(sqlx::FromRow, Serialize, Clone)]
pub(crate) struct StepRow {
    pub id: Uuid,
    pub job_id: Uuid,
    pub idx: i32,
    pub name: String,
    pub task_type: String,
    pub task_class: String,
    pub input: String,
    pub depends_on: Vec<i32>,
    pub verifiers: Vec<String>,
    pub output_schema: Option<serde_json::Value>,
    pub labels: Vec<String>,
    pub ambiguity: f64,
    pub ambiguity_source: String,
    #[sqlx(try_from = "String")]
    pub state: StepState,
    pub current_tier: Option<String>,
    pub output: Option<String>,
    pub open_findings: serde_json::Value,
    /// Input tokens of the step's first answered attempt (for the always-strong cost).
    #[serde(skip)]
    pub first_in: Option<i32>,
    /// Its output tokens.
    #[serde(skip)]
    pub first_out: Option<i32>,
    /// Its tier (its model's samples scale the always-strong estimate).
    #[serde(skip)]
    pub first_tier: Option<String>,
}

/// An attempt being decided, as loaded under the job's lock.
#[derive(sqlx::FromRow)]
pub(crate) struct AttemptRow {
    pub id: Uuid,
    pub job_id: Uuid,
    pub step_id: Uuid,
    #[sqlx(try_from = "String")]
    pub status: AttemptStatus,
    #[sqlx(try_from = "String")]
    pub tier: Tier,
    /// The model this orchestrator dispatched the attempt to.
    pub model: String,
    /// The token its result must carry back (none on attempts from before
    /// tokens existed).
    pub token: Option<Uuid>,
    pub has_result: bool,
    pub overdue: bool,
}

/// A new attempt.
#[derive(Serialize)]
pub(super) struct NewAttempt {
    pub(super) id: Uuid,
    pub(super) step_id: Uuid,
    pub(super) job_id: Uuid,
    pub(super) tier: &'static str,
    pub(super) model: String,
    pub(super) token: Uuid,
    pub(super) secs: f64,
}

/// What a decision writes onto an attempt (absent fields keep their value).
#[derive(Serialize)]
pub(crate) struct AttemptUpdate {
    pub id: Uuid,
    pub status: AttemptStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<AttemptVerdict>,
    pub findings: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_in: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_out: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_correct: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_sent_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl AttemptUpdate {
    /// An update setting only the status of attempt `id` (and no findings).
    pub fn new(id: Uuid, status: AttemptStatus) -> AttemptUpdate {
        AttemptUpdate {
            id,
            status,
            outcome: None,
            findings: serde_json::json!([]),
            worker_id: None,
            provider: None,
            output: None,
            error: None,
            tokens_in: None,
            tokens_out: None,
            cost_usd: None,
            latency_ms: None,
            confidence: None,
            label_correct: None,
            received_at: None,
            result_sent_at: None,
        }
    }
}

/// A route event to append.
#[derive(Serialize)]
pub(super) struct EventRow {
    pub(super) job_id: Uuid,
    pub(super) step_id: Option<Uuid>,
    pub(super) attempt_id: Option<Uuid>,
    pub(super) event: &'static str,
    pub(super) from_tier: Option<&'static str>,
    pub(super) to_tier: Option<&'static str>,
    pub(super) reasons: Vec<String>,
    pub(super) detail: serde_json::Value,
}

/// A message set aside while deciding (it names an attempt that does not
/// exist, or does not match the attempt it names).
#[derive(Serialize)]
pub(super) struct SetAsideRow {
    pub(super) attempt_id: Uuid,
    pub(super) reason: String,
    pub(super) payload: String,
}

/// A new job's row.
#[derive(Serialize)]
pub(crate) struct NewJob {
    pub id: Uuid,
    pub tenant: String,
    pub kind: String,
    pub input: serde_json::Value,
    pub blast_radius: String,
    pub budget_usd: Option<f64>,
    pub traceparent: Option<String>,
}
