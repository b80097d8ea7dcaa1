//! Tenant-scoped reads for the API. A job of another tenant is reported as
//! not found, never as forbidden, so ids do not leak across tenants. The
//! records here are what was stored; what the API shows of them, and its
//! OpenAPI schema, is `api::views`.

use super::PgStore;
use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use upshift_shared::{JobStatus, RouteEventKind, StepState};
use uuid::Uuid;

/// A job as stored, with its steps.
#[derive(Debug)]
pub struct JobRecord {
    /// Job id.
    pub id: Uuid,
    /// Owner.
    pub tenant: String,
    /// Kind.
    pub kind: String,
    /// `running`, `succeeded` (every step's answer was defended),
    /// `unresolved` (a step's answer could not be defended on any tier; the
    /// result keeps the best answer, marked undefended, with the findings)
    /// or `failed`.
    pub status: JobStatus,
    /// Caller's blast radius.
    pub blast_radius: String,
    /// Caller's budget.
    pub budget_usd: Option<f64>,
    /// Answer, outputs and open findings, or the error.
    pub result: Option<serde_json::Value>,
    /// Spent so far, every call counted.
    pub cost_usd: f64,
    /// What each finished step would have cost once on the strong tier.
    pub always_strong_cost_usd: f64,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// The steps.
    pub steps: Vec<StepRecord>,
}

/// A job's status and what it cost: the `done` event of its stream.
#[derive(Debug)]
pub struct JobEnd {
    /// Its status.
    pub status: JobStatus,
    /// Spent, every call counted.
    pub cost_usd: f64,
    /// What each finished step would have cost once on the strong tier.
    pub always_strong_cost_usd: f64,
}

/// A job's route events after some id, and its status as of the same
/// read: what an event stream sends next.
#[derive(Debug)]
pub struct Progress {
    /// The events, in order.
    pub events: Vec<EventRecord>,
    /// The job's status and costs when they were read.
    pub end: JobEnd,
}

/// One row of [`PgStore::progress`]: the job's columns, and one event's
/// (all null when the job has no event after the id asked for).
#[derive(sqlx::FromRow)]
struct ProgressRow {
    job_status: String,
    job_cost_usd: f64,
    job_always_strong_cost_usd: f64,
    id: Option<i64>,
    at: Option<DateTime<Utc>>,
    step: Option<String>,
    attempt_id: Option<Uuid>,
    event: Option<String>,
    from_tier: Option<String>,
    to_tier: Option<String>,
    reasons: Option<Vec<String>>,
    model: Option<String>,
    cost_usd: Option<f64>,
    latency_ms: Option<i64>,
    confidence: Option<f64>,
    policy_version: Option<String>,
    detail: Option<serde_json::Value>,
}

/// A step as stored.
#[derive(Debug, sqlx::FromRow)]
pub struct StepRecord {
    /// Step name.
    pub name: String,
    /// Task type.
    pub task: String,
    /// `pending`, `running`, `accepted` (defended), `unresolved` (the best
    /// answer, undefended: see `open_findings`), `failed`, `cancelled`.
    #[sqlx(try_from = "String")]
    pub state: StepState,
    /// Tier of the latest attempt.
    pub tier: Option<String>,
    /// Ambiguity used for routing.
    pub ambiguity: f64,
    /// `request` or `estimate`.
    pub ambiguity_source: String,
    /// Accepted output.
    pub output: Option<String>,
    /// A label step's choices (a classification's labels, a rag
    /// extraction's candidate spans, a critique's verdicts).
    pub labels: Vec<String>,
    /// Findings that kept the answer from being defended.
    pub open_findings: serde_json::Value,
    /// Attempts made.
    pub attempts: i64,
}

/// One route event as stored, with its attempt's figures.
#[derive(Debug, Clone)]
pub struct EventRecord {
    /// Sequence number of the event (increasing; the SSE event id).
    pub id: i64,
    /// Time.
    pub at: DateTime<Utc>,
    /// Step name.
    pub step: Option<String>,
    /// Attempt id.
    pub attempt_id: Option<Uuid>,
    /// What it records. A step done without a model (tier zero) has
    /// `start` and `accept` without tiers.
    pub event: RouteEventKind,
    /// Tier before.
    pub from_tier: Option<String>,
    /// Tier after.
    pub to_tier: Option<String>,
    /// Reason codes.
    pub reasons: Vec<String>,
    /// Model of the attempt.
    pub model: Option<String>,
    /// Cost of the attempt.
    pub cost_usd: Option<f64>,
    /// Latency of the attempt.
    pub latency_ms: Option<i64>,
    /// Confidence of the attempt.
    pub confidence: Option<f64>,
    /// Policy version that decided.
    pub policy_version: String,
    /// Findings and other detail.
    pub detail: serde_json::Value,
}

type JobRow = (
    Uuid,
    String,
    String,
    String,
    String,
    Option<f64>,
    Option<serde_json::Value>,
    f64,
    f64,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

impl PgStore {
    /// The jobs with route events after id `after`, each with its newest
    /// event id, and the largest such id; with no `after`, none and the
    /// largest id so far (event streams' poller, which wakes their streams).
    pub async fn jobs_with_events_after(&self, after: Option<i64>) -> Result<(Vec<(Uuid, i64)>, Option<i64>)> {
        let Some(after) = after else {
            let max: Option<i64> = sqlx::query_scalar("SELECT max(id) FROM route_events")
                .fetch_one(&self.pool)
                .await?;
            return Ok((Vec::new(), max));
        };
        let rows: Vec<(Uuid, i64)> =
            sqlx::query_as("SELECT job_id, max(id) FROM route_events WHERE id > $1 GROUP BY job_id")
                .bind(after)
                .fetch_all(&self.pool)
                .await?;
        let max = rows.iter().map(|r| r.1).max();
        Ok((rows, max))
    }

    /// Running jobs per tenant (admission's in-flight cap).
    pub async fn running_jobs_by_tenant(&self) -> Result<std::collections::HashMap<String, u64>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT tenant, count(*) FROM jobs WHERE status = 'running' GROUP BY tenant")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|(t, n)| (t, n.max(0) as u64)).collect())
    }

    /// The job `id` if `tenant` owns it.
    pub async fn job(&self, tenant: &str, id: Uuid) -> Result<JobRecord> {
        let row: Option<JobRow> = sqlx::query_as(
            "SELECT id, tenant, kind, status, blast_radius, budget_usd, result, cost_usd, always_strong_cost_usd,
                    created_at, finished_at
             FROM jobs WHERE id = $1 AND tenant = $2",
        )
        .bind(id)
        .bind(tenant)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else {
            return Err(Error::NotFound(format!("job {id}")));
        };
        let steps: Vec<StepRecord> = sqlx::query_as(
            "SELECT s.name, s.task_type AS task, s.state, s.current_tier AS tier, s.ambiguity, s.ambiguity_source,
                    s.output, s.labels, s.open_findings,
                    (SELECT count(*) FROM attempts a WHERE a.step_id = s.id) AS attempts
             FROM steps s WHERE s.job_id = $1 ORDER BY s.idx",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(JobRecord {
            id: r.0,
            tenant: r.1,
            kind: r.2,
            status: super::stored("jobs.status", &r.3)?,
            blast_radius: r.4,
            budget_usd: r.5,
            result: r.6,
            cost_usd: r.7,
            always_strong_cost_usd: r.8,
            created_at: r.9,
            finished_at: r.10,
            steps,
        })
    }

    /// Tokens in and out over every attempt of job `id` (a chat's usage).
    pub async fn job_tokens(&self, id: Uuid) -> Result<(i64, i64)> {
        Ok(sqlx::query_as(
            "SELECT coalesce(sum(tokens_in), 0)::int8, coalesce(sum(tokens_out), 0)::int8 FROM attempts WHERE job_id = $1",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await?)
    }

    /// The ordered route of job `id` if `tenant` owns it.
    pub async fn route(&self, tenant: &str, id: Uuid) -> Result<Vec<EventRecord>> {
        self.route_since(tenant, id, 0).await
    }

    /// The job's route events with a sequence number above `after`.
    pub async fn route_since(&self, tenant: &str, id: Uuid, after: i64) -> Result<Vec<EventRecord>> {
        Ok(self.progress(Some(tenant), id, after).await?.events)
    }

    /// Job `id`'s route events above `after` and its status, in one
    /// statement and so one snapshot: a finished status is never read
    /// without the events committed with it. With `tenant`, another
    /// tenant's job is not found; an event stream checks when it opens and
    /// passes `None` after that (a job never changes tenant).
    pub async fn progress(&self, tenant: Option<&str>, id: Uuid, after: i64) -> Result<Progress> {
        let rows: Vec<ProgressRow> = sqlx::query_as(
            "SELECT j.status AS job_status, j.cost_usd AS job_cost_usd,
                    j.always_strong_cost_usd AS job_always_strong_cost_usd,
                    e.id, e.at, s.name AS step, e.attempt_id, e.event, e.from_tier, e.to_tier, e.reasons,
                    a.model, a.cost_usd, a.latency_ms, a.confidence, e.policy_version, e.detail
             FROM jobs j
             LEFT JOIN route_events e ON e.job_id = j.id AND e.id > $2
             LEFT JOIN steps s ON s.id = e.step_id
             LEFT JOIN attempts a ON a.id = e.attempt_id
             WHERE j.id = $1 AND ($3::text IS NULL OR j.tenant = $3)
             ORDER BY e.id",
        )
        .bind(id)
        .bind(after)
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        let first = rows.first().ok_or_else(|| Error::NotFound(format!("job {id}")))?;
        let end = JobEnd {
            status: super::stored("jobs.status", &first.job_status)?,
            cost_usd: first.job_cost_usd,
            always_strong_cost_usd: first.job_always_strong_cost_usd,
        };
        let events = rows
            .into_iter()
            .filter_map(|r| {
                Some(EventRecord {
                    id: r.id?,
                    at: r.at?,
                    step: r.step,
                    attempt_id: r.attempt_id,
                    // The column's CHECK admits only the enum's names.
                    event: r.event?.parse().ok()?,
                    from_tier: r.from_tier,
                    to_tier: r.to_tier,
                    reasons: r.reasons.unwrap_or_default(),
                    model: r.model,
                    cost_usd: r.cost_usd,
                    latency_ms: r.latency_ms,
                    confidence: r.confidence,
                    policy_version: r.policy_version.unwrap_or_default(),
                    detail: r.detail.unwrap_or_default(),
                })
            })
            .collect();
        Ok(Progress { events, end })
    }

    /// The tenant's most recent jobs, optionally by status: (id, status, created).
    pub async fn list_jobs(
        &self,
        tenant: &str,
        status: Option<JobStatus>,
        limit: i64,
    ) -> Result<Vec<(Uuid, JobStatus, f64, DateTime<Utc>)>> {
        let rows: Vec<(Uuid, String, f64, DateTime<Utc>)> = sqlx::query_as(
            "SELECT id, status, cost_usd, created_at FROM jobs
             WHERE tenant = $1 AND ($2::text IS NULL OR status = $2)
             ORDER BY created_at DESC LIMIT $3",
        )
        .bind(tenant)
        .bind(status.map(JobStatus::as_str))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, s, cost, at)| Ok((id, super::stored("jobs.status", &s)?, cost, at)))
            .collect()
    }
}
