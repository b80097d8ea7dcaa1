//! The rows a unit loads, creates and writes.

use crate::store::stored;
use serde::Serialize;
use sqlx::Row;
use sqlx::postgres::PgRow;
use std::str::FromStr;
use upshift_shared::verify::VerifierKind;
use upshift_shared::{AttemptStatus, AttemptVerdict, BlastRadius, JobKind, JobStatus, StepState, TaskType, Tier};
use uuid::Uuid;

/// A job as the router needs it.
#[derive(sqlx::FromRow)]
pub(crate) struct JobRow {
    pub id: Uuid,
    pub tenant: String,
    #[sqlx(try_from = "String")]
    pub kind: JobKind,
    /// The stored request, loaded for the kinds that read it (`rag`).
    pub input: Option<serde_json::Value>,
    #[sqlx(try_from = "String")]
    pub blast_radius: BlastRadius,
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

/// A step, loaded or new, with the columns the router reads and writes,
/// typed: a stored value outside its enum is a decode error at the load,
/// never a string the router parses.
#[derive(Serialize, Clone)]
pub(crate) struct StepRow {
    pub id: Uuid,
    pub job_id: Uuid,
    pub idx: i32,
    pub name: String,
    pub task_type: TaskType,
    pub task_class: String,
    pub input: String,
    pub depends_on: Vec<i32>,
    pub verifiers: Vec<VerifierKind>,
    pub output_schema: Option<serde_json::Value>,
    pub labels: Vec<String>,
    pub ambiguity: f64,
    pub ambiguity_source: String,
    pub state: StepState,
    pub current_tier: Option<Tier>,
    /// Most tokens the model may write (the tier's own limit when `None`).
    pub max_tokens: Option<i32>,
    /// Sequences at which the answer is cut.
    pub stop: Vec<String>,
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
    pub first_tier: Option<Tier>,
}

impl<'r> sqlx::FromRow<'r, PgRow> for StepRow {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        let verifiers: Vec<String> = row.try_get("verifiers")?;
        Ok(StepRow {
            id: row.try_get("id")?,
            job_id: row.try_get("job_id")?,
            idx: row.try_get("idx")?,
            name: row.try_get("name")?,
            task_type: stored("task_type", &row.try_get::<String, _>("task_type")?)?,
            task_class: row.try_get("task_class")?,
            input: row.try_get("input")?,
            depends_on: row.try_get("depends_on")?,
            verifiers: verifiers
                .iter()
                .map(|v| stored("verifiers", v))
                .collect::<sqlx::Result<_>>()?,
            output_schema: row.try_get("output_schema")?,
            labels: row.try_get("labels")?,
            ambiguity: row.try_get("ambiguity")?,
            ambiguity_source: row.try_get("ambiguity_source")?,
            state: stored("state", &row.try_get::<String, _>("state")?)?,
            current_tier: optional("current_tier", row)?,
            max_tokens: row.try_get("max_tokens")?,
            stop: row.try_get("stop")?,
            output: row.try_get("output")?,
            open_findings: row.try_get("open_findings")?,
            first_in: row.try_get("first_in")?,
            first_out: row.try_get("first_out")?,
            first_tier: optional("first_tier", row)?,
        })
    }
}

/// A nullable text column's value as its enum.
fn optional<T: FromStr<Err = String>>(column: &str, row: &PgRow) -> sqlx::Result<Option<T>> {
    row.try_get::<Option<String>, _>(column)?
        .map(|t| stored(column, &t))
        .transpose()
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
    pub kind: JobKind,
    pub input: serde_json::Value,
    pub blast_radius: BlastRadius,
    pub budget_usd: Option<f64>,
    pub traceparent: Option<String>,
}
