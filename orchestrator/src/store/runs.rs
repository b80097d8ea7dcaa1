//! What the CLI's runs read back from a run's database: how many jobs are
//! still running, the replay demo's summary of its jobs, the chaos run's
//! guarantees and fault counts, and dropping a run's database. The CLI
//! writes no SQL: every statement it needs is here, next to the schema.

use super::PgStore;
use crate::error::Result;
use sqlx::postgres::PgPoolOptions;
use std::str::FromStr;
use uuid::Uuid;

/// Counts by a text key (a status, a tier, a reason), in the key's order.
pub type Counts = Vec<(String, i64)>;

/// The replay demo's figures over its jobs.
#[derive(Debug)]
pub struct RunSummary {
    /// Jobs by status.
    pub statuses: Counts,
    /// Steps by the tier they started on (`-`: without a model).
    pub starts: Counts,
    /// Steps by the tier that accepted them.
    pub accepts: Counts,
    /// Escalations by reason, most frequent first.
    pub reasons: Counts,
    /// Steps escalated at least once.
    pub escalated: i64,
    /// Escalated attempts whose answer was already right.
    pub needless: i64,
    /// Accepted attempts whose label was right.
    pub correct: i64,
    /// Every attempt (model call).
    pub attempts: i64,
    /// What the jobs cost.
    pub cost_usd: f64,
    /// What they would have cost on the strong tier alone.
    pub always_strong_usd: f64,
}

/// One guarantee the chaos run checks, and how many rows break it.
pub type Check = (&'static str, i64);

/// The chaos run's guarantees, each a count that must be 0.
const GUARANTEES: &[(&str, &str)] = &[
    (
        "jobs not terminal",
        "SELECT count(*) FROM jobs WHERE status = 'running'",
    ),
    (
        "steps not terminal",
        "SELECT count(*) FROM steps WHERE state IN ('pending', 'running')",
    ),
    (
        "finished steps without exactly one accept, unresolved or fail",
        "SELECT count(*) FROM steps s WHERE s.state IN ('accepted', 'unresolved', 'failed') AND (SELECT count(*)
         FROM route_events e WHERE e.step_id = s.id AND e.event IN ('accept', 'unresolved', 'fail')) <> 1",
    ),
    (
        "attempts decided more than once",
        "SELECT count(*) FROM (SELECT attempt_id FROM route_events
         WHERE event IN ('accept', 'unresolved', 'escalate', 'fail') AND attempt_id IS NOT NULL
         GROUP BY 1 HAVING count(*) > 1) d",
    ),
    (
        "attempts without exactly one dispatch",
        "SELECT count(*) FROM attempts a WHERE (SELECT count(*) FROM route_events e
         WHERE e.attempt_id = a.id AND e.event = 'dispatch') <> 1",
    ),
    (
        "cost not counted exactly once (micro-dollars off)",
        "SELECT round(1e6 * abs((SELECT coalesce(sum(cost_usd), 0) FROM attempts)
                              - (SELECT coalesce(sum(cost_usd), 0) FROM jobs)))::bigint",
    ),
];

/// The chaos run's fault counts.
#[derive(Debug)]
pub struct FaultCounts {
    /// Jobs in the database.
    pub jobs: i64,
    /// Jobs by status.
    pub statuses: Counts,
    /// Attempts.
    pub attempts: i64,
    /// Attempts that timed out.
    pub timed_out: i64,
    /// Dead letters recorded.
    pub dead_letters: i64,
    /// The commonest dead letters: (source, reason, count).
    pub dead_reasons: Vec<(String, String, i64)>,
    /// Escalations a fault caused rather than a weak answer (the attempt
    /// timed out, was dead-lettered, or its provider failed), by reason.
    pub fault_escalations: Counts,
}

impl PgStore {
    /// A small store on `url` for reading a run's results: no migrations
    /// (the run's orchestrators applied them), connections made on use.
    pub fn for_reports(url: &str) -> Result<PgStore> {
        let opts = sqlx::postgres::PgConnectOptions::from_str(url)?;
        Ok(PgStore {
            pool: PgPoolOptions::new().max_connections(4).connect_lazy_with(opts),
            marks: None,
            intake: None,
        })
    }

    /// Jobs still running.
    pub async fn jobs_running(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM jobs WHERE status = 'running'")
            .fetch_one(&self.pool)
            .await?)
    }

    /// How many of `ids` have finished.
    pub async fn finished_of(&self, ids: &[Uuid]) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM jobs WHERE id = ANY($1) AND status <> 'running'")
                .bind(ids)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// The replay demo's figures over jobs `ids`.
    pub async fn run_summary(&self, ids: &[Uuid]) -> Result<RunSummary> {
        let by_event = |event: &'static str| {
            sqlx::query_as::<_, (Option<String>, i64)>(
                "SELECT CASE WHEN $2 = 'start' THEN to_tier ELSE from_tier END, count(*)
                 FROM route_events WHERE job_id = ANY($1) AND event = $2 GROUP BY 1 ORDER BY 1",
            )
            .bind(ids)
            .bind(event)
        };
        let tiers = |rows: Vec<(Option<String>, i64)>| -> Counts {
            rows.into_iter()
                .map(|(t, n)| (t.unwrap_or_else(|| "-".into()), n))
                .collect()
        };
        let statuses = sqlx::query_as("SELECT status, count(*) FROM jobs WHERE id = ANY($1) GROUP BY 1 ORDER BY 1")
            .bind(ids)
            .fetch_all(&self.pool)
            .await?;
        let starts = tiers(by_event("start").fetch_all(&self.pool).await?);
        let accepts = tiers(by_event("accept").fetch_all(&self.pool).await?);
        let reasons = sqlx::query_as(
            "SELECT reason, count(*) FROM route_events e, unnest(e.reasons) AS reason
             WHERE e.job_id = ANY($1) AND e.event = 'escalate' GROUP BY 1 ORDER BY 2 DESC, 1",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        let (escalated, needless): (i64, i64) = sqlx::query_as(
            "SELECT count(DISTINCT a.step_id), count(*) FILTER (WHERE a.label_correct)
             FROM attempts a WHERE a.job_id = ANY($1) AND a.outcome = 'escalated'",
        )
        .bind(ids)
        .fetch_one(&self.pool)
        .await?;
        let (correct, attempts): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM attempts WHERE job_id = ANY($1) AND outcome = 'accepted' AND label_correct),
                    (SELECT count(*) FROM attempts WHERE job_id = ANY($1))",
        )
        .bind(ids)
        .fetch_one(&self.pool)
        .await?;
        let (cost_usd, always_strong_usd): (Option<f64>, Option<f64>) =
            sqlx::query_as("SELECT sum(cost_usd), sum(always_strong_cost_usd) FROM jobs WHERE id = ANY($1)")
                .bind(ids)
                .fetch_one(&self.pool)
                .await?;
        Ok(RunSummary {
            statuses,
            starts,
            accepts,
            reasons,
            escalated,
            needless,
            correct,
            attempts,
            cost_usd: cost_usd.unwrap_or(0.0),
            always_strong_usd: always_strong_usd.unwrap_or(0.0),
        })
    }

    /// The chaos run's guarantees: every acknowledged job (`acked`) is in
    /// the database, then each of [`GUARANTEES`]; every count must be 0.
    pub async fn guarantees(&self, acked: &[Uuid]) -> Result<Vec<Check>> {
        let found: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE id = ANY($1)")
            .bind(acked)
            .fetch_one(&self.pool)
            .await?;
        let mut out = vec![("acknowledged jobs missing", acked.len() as i64 - found)];
        for (name, sql) in GUARANTEES {
            out.push((*name, sqlx::query_scalar(*sql).fetch_one(&self.pool).await?));
        }
        Ok(out)
    }

    /// The chaos run's fault counts.
    pub async fn fault_counts(&self) -> Result<FaultCounts> {
        let count = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql).fetch_one(&self.pool);
        Ok(FaultCounts {
            jobs: count("SELECT count(*) FROM jobs").await?,
            statuses: sqlx::query_as("SELECT status, count(*) FROM jobs GROUP BY 1 ORDER BY 1")
                .fetch_all(&self.pool)
                .await?,
            attempts: count("SELECT count(*) FROM attempts").await?,
            timed_out: count("SELECT count(*) FROM attempts WHERE status = 'timed_out'").await?,
            dead_letters: count("SELECT count(*) FROM dead_letters").await?,
            dead_reasons: sqlx::query_as(
                "SELECT source, left(reason, 60), count(*) FROM dead_letters GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 5",
            )
            .fetch_all(&self.pool)
            .await?,
            fault_escalations: sqlx::query_as(
                "SELECT r, count(*) FROM route_events, unnest(reasons) r
                 WHERE event = 'escalate' AND r IN ('timeout', 'dead_lettered', 'provider_error') GROUP BY 1 ORDER BY 1",
            )
            .fetch_all(&self.pool)
            .await?,
        })
    }
}

/// Drops the database of `url` (a finished run's), connecting to the
/// server's `postgres` database; errors are the caller's to ignore.
pub async fn drop_database(url: &str) -> Result<()> {
    let Some((server, db)) = url.rsplit_once('/') else {
        return Ok(());
    };
    let admin = sqlx::PgPool::connect(&format!("{server}/postgres")).await?;
    let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", db.replace('"', "\"\""));
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&admin).await?;
    Ok(())
}
