//! What `upshift bench engine` measures in a run's database: attempts and
//! escalations, the decisions' span, the route events' row size, the three
//! hops' latencies, Postgres's own counters, the publish backlog, and the
//! floor of single-row commits on this machine.

use super::PgStore;
use crate::error::Result;
use futures::StreamExt;
use std::time::Instant;

/// p50/p90/p99 in milliseconds of each hop (`ms` computed by the inner query).
macro_rules! percentiles {
    ($inner:literal) => {
        concat!(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), percentile_cont(0.9) WITHIN GROUP (ORDER BY ms), ",
            "percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) FROM (",
            $inner,
            ") x"
        )
    };
}

/// The three hops: submit → published (first attempts: API, commit, publish
/// ack), dispatch → worker pull (attempt committed → worker received it),
/// result → decision (worker sent the result → decision transaction began).
const HOPS: [(&str, &str); 3] = [
    (
        "submit → published",
        percentiles!(
            "SELECT 1000 * extract(epoch FROM a.published_at - j.created_at)::float8 AS ms
             FROM attempts a JOIN jobs j ON j.id = a.job_id
             WHERE a.published_at IS NOT NULL AND NOT EXISTS (
               SELECT 1 FROM attempts b WHERE b.step_id = a.step_id AND b.created_at < a.created_at)"
        ),
    ),
    (
        "dispatch → worker pull",
        percentiles!(
            "SELECT 1000 * extract(epoch FROM received_at - created_at)::float8 AS ms
             FROM attempts WHERE received_at IS NOT NULL"
        ),
    ),
    (
        "result → decision",
        percentiles!(
            "SELECT 1000 * extract(epoch FROM e.at - a.result_sent_at)::float8 AS ms
             FROM route_events e JOIN attempts a ON a.id = e.attempt_id
             WHERE e.event IN ('accept', 'unresolved', 'escalate', 'fail') AND a.result_sent_at IS NOT NULL"
        ),
    ),
];

/// A run's totals.
#[derive(Debug)]
pub struct RunTotals {
    /// Attempts (model calls).
    pub attempts: i64,
    /// Attempts escalated.
    pub escalated: i64,
    /// Decisions recorded.
    pub decisions: i64,
    /// Seconds from the first decision to the last.
    pub decision_span_secs: Option<f64>,
    /// Mean size of a route-event row, in bytes.
    pub event_row_bytes: f64,
}

impl PgStore {
    /// (transactions committed, rows inserted + updated) of the database.
    pub async fn pg_counters(&self) -> Result<(i64, i64)> {
        Ok(sqlx::query_as(
            "SELECT xact_commit, tup_inserted + tup_updated FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// The run's totals.
    pub async fn run_totals(&self) -> Result<RunTotals> {
        let count = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql).fetch_one(&self.pool);
        let (decisions, decision_span_secs): (i64, Option<f64>) = sqlx::query_as(
            "SELECT count(*), extract(epoch FROM max(at) - min(at))::float8 FROM route_events
             WHERE event IN ('accept', 'unresolved', 'escalate', 'fail')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(RunTotals {
            attempts: count("SELECT count(*) FROM attempts").await?,
            escalated: count("SELECT count(*) FROM attempts WHERE outcome = 'escalated'").await?,
            decisions,
            decision_span_secs,
            event_row_bytes: sqlx::query_scalar(
                "SELECT coalesce(avg(pg_column_size(e.*)), 0)::float8 FROM route_events e",
            )
            .fetch_one(&self.pool)
            .await?,
        })
    }

    /// p50/p90/p99 (ms) of each of the three hops; NaN where none was seen.
    pub async fn hops(&self) -> Result<Vec<(&'static str, [f64; 3])>> {
        let mut out = Vec::new();
        for (name, sql) in HOPS {
            let r: (Option<f64>, Option<f64>, Option<f64>) = sqlx::query_as(sql).fetch_one(&self.pool).await?;
            out.push((name, [r.0, r.1, r.2].map(|v| v.unwrap_or(f64::NAN))));
        }
        Ok(out)
    }

    /// Attempts dispatched whose task is not published yet.
    pub async fn unpublished_count(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM attempts WHERE status = 'dispatched' AND published_at IS NULL")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Commits per second of `n` single-row inserts of a route-event-sized
    /// row, `concurrency` at a time, into a copy of `route_events` (the
    /// floor a decision's commit cannot go below on this machine).
    pub async fn commit_floor(&self, n: usize, concurrency: usize) -> Result<f64> {
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS floor_events (LIKE route_events INCLUDING DEFAULTS INCLUDING INDEXES)",
        )
        .execute(&self.pool)
        .await?;
        let job: uuid::Uuid = sqlx::query_scalar("SELECT job_id FROM route_events LIMIT 1")
            .fetch_one(&self.pool)
            .await?;
        let started = Instant::now();
        futures::stream::iter(0..n)
            .map(|_| async move {
                sqlx::query(
                    "INSERT INTO floor_events (job_id, step_id, attempt_id, event, from_tier, to_tier, reasons, policy_version, detail)
                     VALUES ($1, NULL, NULL, 'accept', 'small', NULL, ARRAY['arithmetic_mismatch'], 'seed-1', $2)",
                )
                .bind(job)
                .bind(serde_json::json!({ "findings": [], "confidence": null, "defensibility": null }))
                .execute(&self.pool)
                .await
            })
            .buffer_unordered(concurrency)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        Ok(n as f64 / started.elapsed().as_secs_f64())
    }
}
