//! What the viewer and the metrics sampler read: a tenant's job list, its
//! spend against always-strong, escalations by reason, and jobs running.

use super::PgStore;
use crate::error::Result;
use upshift_shared::JobStatus;
use uuid::Uuid;

/// A row of the job list: id, status, cost, always-strong cost, created,
/// attempts.
pub type JobListRow = (Uuid, String, f64, f64, chrono::DateTime<chrono::Utc>, i64);
/// A day of spend: day, jobs, cost, always-strong cost.
pub type SpendRow = (chrono::DateTime<chrono::Utc>, i64, Option<f64>, Option<f64>);

impl PgStore {
    /// A tenant's newest jobs (at most 200) with their attempt counts,
    /// `status` (or any) created in the last `hours`. Counted through the
    /// `attempts_job` index, never a scan of every attempt.
    pub async fn job_list(&self, tenant: &str, status: Option<JobStatus>, hours: i32) -> Result<Vec<JobListRow>> {
        Ok(sqlx::query_as(JOB_LIST_SQL)
            .bind(tenant)
            .bind(status.map(JobStatus::as_str))
            .bind(hours)
            .fetch_all(&self.pool)
            .await?)
    }

    /// The plan Postgres chooses for [`PgStore::job_list`] with these
    /// parameters (`EXPLAIN (FORMAT JSON)`): what the viewer's test checks
    /// for a scan of every attempt.
    pub async fn job_list_plan(
        &self,
        tenant: &str,
        status: Option<JobStatus>,
        hours: i32,
    ) -> Result<serde_json::Value> {
        let explain = format!("EXPLAIN (FORMAT JSON) {JOB_LIST_SQL}");
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(explain))
            .bind(tenant)
            .bind(status.map(JobStatus::as_str))
            .bind(hours)
            .fetch_one(&self.pool)
            .await?)
    }

    /// A tenant's spend per day against always-strong, newest 30 days.
    pub async fn spend_by_day(&self, tenant: &str) -> Result<Vec<SpendRow>> {
        Ok(sqlx::query_as(
            "SELECT day, jobs, cost_usd, always_strong_cost_usd FROM spend_vs_strong WHERE tenant = $1
             ORDER BY day DESC LIMIT 30",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?)
    }

    /// A tenant's escalations by reason and task type: (reason, task type,
    /// count), most frequent first.
    pub async fn escalations_by_reason(&self, tenant: &str) -> Result<Vec<(String, String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT reason, task_type, sum(escalations)::bigint FROM escalations_by_reason WHERE tenant = $1
             GROUP BY 1, 2 ORDER BY 3 DESC",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?)
    }

    /// How many jobs are running, every tenant's.
    pub async fn running_jobs(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM jobs WHERE status = 'running'")
            .fetch_one(&self.pool)
            .await?)
    }
}

/// The job list's statement: $1 tenant, $2 status or NULL, $3 hours back
/// (public so the index test can EXPLAIN exactly what the viewer runs).
const JOB_LIST_SQL: &str = "SELECT j.id, j.status, j.cost_usd, j.always_strong_cost_usd, j.created_at,
        (SELECT count(*) FROM attempts a WHERE a.job_id = j.id)
 FROM jobs j WHERE j.tenant = $1 AND ($2::text IS NULL OR j.status = $2)
   AND j.created_at > now() - make_interval(hours => $3::int)
 ORDER BY j.created_at DESC LIMIT 200";
