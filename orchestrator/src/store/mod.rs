//! Postgres storage, the orchestrator's bottom layer: every SQL statement
//! and row type lives under this module, and nothing here decides anything.
//! The router decides in a [`unit::Unit`] (rows loaded under lock, changed
//! in memory, written back by [`unit::Unit::flush`]); new jobs arrive
//! already admitted by the router, as units, and are written here in group
//! commits ([`intake`]).
//!
//! Guarantees:
//! - creating a job writes the job, all its steps and its first attempts in
//!   one transaction, or nothing;
//! - every decision about an attempt is taken under its job's row lock
//!   (a batch locks its jobs in id order), which serialises every change to
//!   the job's steps and attempts, so replicas never decide twice, and a
//!   partial unique index on `route_events` backs this up;
//! - an attempt is committed as `dispatched` before it is published, and
//!   `published_at` is set only after the server acknowledged it (outbox).

mod collections;
pub mod intake;
mod measure;
mod read;
mod reports;
mod runs;
pub(crate) mod unit;

pub use collections::{CollectionStatus, Hit, Ingested, NewDocument, embed_input, text_key};
pub use collections::{QueuedText, queued_texts, save_embeddings};
pub(crate) use collections::{collection_version, defining, dense_vectors, naming, passages_by_id, search_in};
pub use measure::RunTotals;
pub use read::{EventRecord, JobEnd, JobRecord, Progress, StepRecord};
pub use reports::{JobListRow, SpendRow};
pub use runs::{Check, Counts, FaultCounts, RunSummary, drop_database};

use crate::error::{Error, Result};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::str::FromStr;
use std::time::Duration;
use unit::Unit;
use upshift_shared::config::Config;
use upshift_shared::messages::{ContextItem, MESSAGE_VERSION, TaskMessage};
use upshift_shared::{ReasonCode, TaskType, Tier};
use uuid::Uuid;

/// A database session the store's functions run their statements on: an
/// open transaction ([`PgStore::begin`]) or a pooled connection
/// ([`PgStore::acquire`]). Opaque outside the store: other modules only pass
/// it along (the router its decision's transaction, the retriever the
/// connection it searches on) and commit it; no statement runs on it but
/// the store's.
pub struct Conn(Session);

enum Session {
    Pool(sqlx::pool::PoolConnection<sqlx::Postgres>),
    Tx(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Conn {
    /// The connection underneath, for the store's statements.
    pub(in crate::store) fn pg(&mut self) -> &mut sqlx::PgConnection {
        match &mut self.0 {
            Session::Pool(c) => c,
            Session::Tx(t) => t,
        }
    }

    /// Commits a transaction; a pooled connection has nothing to commit.
    pub async fn commit(self) -> Result<()> {
        if let Session::Tx(t) = self.0 {
            t.commit().await?;
        }
        Ok(())
    }
}

/// Postgres-backed store.
#[derive(Clone)]
pub struct PgStore {
    /// The connection pool; only this module runs statements on it.
    pool: PgPool,
    /// Where acknowledged publishes are sent to be marked in batches; marked
    /// one call at a time when unset.
    marks: Option<tokio::sync::mpsc::UnboundedSender<Marks>>,
    /// Where new jobs are sent to be written in group commits; written one
    /// call at a time when unset.
    intake: Option<intake::Intake>,
}

/// Attempts the server acknowledged, with when.
#[derive(Debug, Default)]
pub struct Marks {
    /// The attempts.
    pub ids: Vec<Uuid>,
    /// When each was acknowledged.
    pub at: Vec<chrono::DateTime<chrono::Utc>>,
}

impl Marks {
    /// Appends `other`.
    pub fn extend(&mut self, other: Marks) {
        self.ids.extend(other.ids);
        self.at.extend(other.at);
    }
}

/// The stored columns a task message is built from.
#[derive(sqlx::FromRow)]
pub(crate) struct TaskSource {
    pub(crate) attempt_id: Uuid,
    pub(crate) token: Uuid,
    pub(crate) job_id: Uuid,
    pub(crate) step_id: Uuid,
    #[sqlx(try_from = "String")]
    pub(crate) tier: Tier,
    #[sqlx(try_from = "String")]
    pub(crate) task_type: TaskType,
    pub(crate) input: String,
    pub(crate) output_schema: Option<serde_json::Value>,
    pub(crate) labels: Vec<String>,
    pub(crate) max_tokens: Option<i32>,
    pub(crate) stop: Vec<String>,
    pub(crate) traceparent: Option<String>,
}

impl TaskSource {
    /// The task message, with the outputs of the steps it depends on
    /// (`(name, output)`, in order) as its context. The one place a task
    /// message is built: at dispatch and when the sweeper re-publishes.
    pub(crate) fn into_outgoing(self, context: Vec<(String, Option<String>)>) -> Outgoing {
        let msg = TaskMessage {
            version: MESSAGE_VERSION,
            attempt_id: self.attempt_id,
            attempt_token: self.token,
            job_id: self.job_id,
            step_id: self.step_id,
            tier: self.tier,
            task: self.task_type,
            input: self.input,
            context: context
                .into_iter()
                .map(|(step, output)| ContextItem {
                    step,
                    output: output.unwrap_or_default(),
                })
                .collect(),
            output_schema: self.output_schema,
            max_tokens: self.max_tokens.and_then(|m| u32::try_from(m).ok()),
            stop: self.stop,
            labels: self.labels,
        };
        Outgoing {
            msg,
            traceparent: self.traceparent,
        }
    }
}

/// A dispatched attempt's task source, with the steps it depends on.
#[derive(sqlx::FromRow)]
struct Dispatched {
    #[sqlx(flatten)]
    source: TaskSource,
    depends_on: Vec<i32>,
}

/// A task message to publish, with the trace of the job it belongs to.
pub struct Outgoing {
    /// The message.
    pub msg: TaskMessage,
    /// The job's W3C `traceparent`, when the job was traced.
    pub traceparent: Option<String>,
}

/// Text list of reason codes, as stored.
pub(crate) fn reason_texts(reasons: &[ReasonCode]) -> Vec<String> {
    reasons.iter().map(|r| r.as_str().to_string()).collect()
}

impl PgStore {
    /// Connects lazily (the pool retries on use) and applies migrations.
    /// Creates the database first when it does not exist yet.
    pub async fn connect(cfg: &Config) -> Result<PgStore> {
        // Plan every execution for its parameters: the router's statements
        // take arrays of ids whose length varies with the batch, on tables
        // that grow from empty. A generic plan made while a table was small
        // (Postgres switches to one after five executions) keeps
        // sequential scans long after the table has grown; measured in
        // `upshift bench engine`, ~1,000 buffer reads per 15-row batch.
        // No JIT: these are short statements, and a cost estimate made from
        // a young table's statistics made Postgres spend ~110 ms compiling
        // each load of a batch's steps.
        let opts = PgConnectOptions::from_str(&cfg.database.url)?
            .options([("plan_cache_mode", "force_custom_plan"), ("jit", "off")]);
        ensure_database(&opts).await?;
        let pool = PgPoolOptions::new()
            .max_connections(cfg.database.max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await?;
        sqlx::migrate!("../migrations").run(&pool).await?;
        Ok(PgStore {
            pool,
            marks: None,
            intake: None,
        })
    }

    /// A store for event streams: its own pool of `connections`
    /// (application name `upshift-streams`), so however many streams poll,
    /// decisions never wait for a connection behind them.
    pub fn for_streams(&self, connections: u32) -> PgStore {
        let opts = (*self.pool.connect_options())
            .clone()
            .application_name("upshift-streams");
        let pool = PgPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(opts);
        PgStore {
            pool,
            marks: None,
            intake: None,
        }
    }

    /// Writes a new job admitted by the router (`unit` holds its job, steps,
    /// first attempts and route events) atomically and returns the task
    /// messages to publish. With an intake running (see [`intake`]) the job
    /// is written in a group commit with other submissions.
    pub(crate) async fn create_job(&self, cfg: &Config, unit: Unit) -> Result<Vec<Outgoing>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let pending = intake::Pending { unit, reply };
        let pending = match &self.intake {
            Some(intake) => match intake.send(pending).await {
                Ok(()) => match answer.await {
                    Ok(created) => return created,
                    Err(_) => return Err(Error::ShuttingDown("the job intake stopped")),
                },
                Err(e) => e.0, // the intake has stopped: write directly
            },
            None => pending,
        };
        self.write_jobs(cfg, std::slice::from_ref(&pending)).await?;
        let intake::Pending { mut unit, .. } = pending;
        Ok(std::mem::take(&mut unit.outgoing))
    }

    /// Writes the units of `jobs` in one transaction.
    async fn write_jobs(&self, cfg: &Config, jobs: &[intake::Pending]) -> Result<()> {
        let units: Vec<&Unit> = jobs.iter().map(|p| &p.unit).collect();
        let mut tx = self.pool.begin().await?;
        unit::flush_all(&mut tx, cfg, &units).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Begins a transaction, for a unit of work and the statements it runs
    /// on the same connection (see [`unit`]).
    pub async fn begin(&self) -> Result<Conn> {
        Ok(Conn(Session::Tx(self.pool.begin().await?)))
    }

    /// A connection from the pool, for statements that must share one
    /// (a search at submission).
    pub async fn acquire(&self) -> Result<Conn> {
        Ok(Conn(Session::Pool(self.pool.acquire().await?)))
    }

    /// Whether Postgres answers a trivial statement (readiness).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool, waiting for its connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// This store, writing new jobs through `intake` (see [`intake::run_intake`]).
    pub fn with_intake(&self, intake: intake::Intake) -> PgStore {
        PgStore {
            intake: Some(intake),
            ..self.clone()
        }
    }

    /// Builds the task messages of `attempts` from the database (the
    /// sweeper re-publishes them).
    pub async fn task_messages(&self, attempts: &[Uuid]) -> Result<Vec<Outgoing>> {
        let rows: Vec<Dispatched> = sqlx::query_as(
            "SELECT a.id AS attempt_id, a.token, a.job_id, a.step_id, a.tier, s.task_type, s.input, s.output_schema, s.labels,
                    s.max_tokens, s.stop, j.traceparent, s.depends_on
             FROM attempts a JOIN steps s ON s.id = a.step_id JOIN jobs j ON j.id = a.job_id
             WHERE a.id = ANY($1) AND a.status = 'dispatched' AND a.token IS NOT NULL",
        )
        .bind(attempts)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for Dispatched {
            source,
            depends_on: deps,
        } in rows
        {
            let context = if deps.is_empty() {
                Vec::new()
            } else {
                sqlx::query_as("SELECT name, output FROM steps WHERE job_id = $1 AND idx = ANY($2) ORDER BY idx")
                    .bind(source.job_id)
                    .bind(&deps)
                    .fetch_all(&self.pool)
                    .await?
            };
            out.push(source.into_outgoing(context));
        }
        Ok(out)
    }

    /// Marks attempts acknowledged now as published: handed to the batch
    /// marker when one runs (see [`crate::outbox::run_marker`]), else written
    /// at once. Either way `published_at` is the time of the acknowledgement.
    pub async fn published(&self, attempts: Vec<Uuid>) -> Result<()> {
        if attempts.is_empty() {
            return Ok(());
        }
        let marks = Marks {
            at: vec![chrono::Utc::now(); attempts.len()],
            ids: attempts,
        };
        match &self.marks {
            Some(tx) => match tx.send(marks) {
                Ok(()) => Ok(()),
                Err(e) => self.mark_published(&e.0).await.map(drop), // the marker has stopped
            },
            None => self.mark_published(&marks).await.map(drop),
        }
    }

    /// This store, sending its publish marks to `marks`.
    pub fn with_marker(&self, marks: tokio::sync::mpsc::UnboundedSender<Marks>) -> PgStore {
        PgStore {
            marks: Some(marks),
            ..self.clone()
        }
    }

    /// Records when the server acknowledged these attempts and returns the
    /// ones skipped because a decision holds their row locked (to be marked
    /// again shortly; see [`crate::outbox::run_marker`]). Skipping instead of
    /// waiting keeps the marker from locking rows in an order that
    /// deadlocks with a batch of decisions.
    pub async fn mark_published(&self, marks: &Marks) -> Result<Marks> {
        let skipped: Vec<(Uuid, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
            "WITH free AS (
                 SELECT id FROM attempts WHERE id = ANY($1) AND published_at IS NULL FOR UPDATE SKIP LOCKED
             ), done AS (
                 UPDATE attempts a SET published_at = m.at FROM unnest($1::uuid[], $2::timestamptz[]) AS m(id, at)
                 WHERE a.id = m.id AND a.id IN (SELECT id FROM free) RETURNING a.id
             )
             SELECT m.id, m.at FROM unnest($1::uuid[], $2::timestamptz[]) AS m(id, at) JOIN attempts a ON a.id = m.id
             WHERE a.id = ANY($1) AND a.published_at IS NULL AND m.id NOT IN (SELECT id FROM done)",
        )
        .bind(&marks.ids)
        .bind(&marks.at)
        .fetch_all(&self.pool)
        .await?;
        let (ids, at) = skipped.into_iter().unzip();
        Ok(Marks { ids, at })
    }

    /// Dispatched attempts never acknowledged by NATS after `grace`.
    pub async fn unpublished(&self, grace: Duration, limit: i64) -> Result<Vec<Uuid>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM attempts
             WHERE status = 'dispatched' AND published_at IS NULL
               AND created_at < now() - make_interval(secs => $1)
             ORDER BY created_at LIMIT $2",
        )
        .bind(grace.as_secs_f64())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records a message set aside as a dead letter (payload truncated to
    /// 64 KiB); once per attempt and source.
    pub async fn record_dead_letter(
        &self,
        source: &str,
        subject: &str,
        reason: &str,
        attempt: Option<Uuid>,
        payload: &[u8],
    ) -> Result<()> {
        // Kept as text, so a NUL (which Postgres refuses) becomes U+FFFD.
        let clean = upshift_shared::messages::without_nul;
        let text = clean(&String::from_utf8_lossy(&payload[..payload.len().min(64 * 1024)]));
        sqlx::query(
            // An attempt's dead letter is recorded once, however often its
            // handling is retried.
            "INSERT INTO dead_letters (source, subject, reason, attempt_id, payload)
             SELECT $1, $2, $3, $4, $5
             WHERE $4::uuid IS NULL OR NOT EXISTS (SELECT 1 FROM dead_letters WHERE attempt_id = $4 AND source = $1)",
        )
        .bind(source)
        .bind(clean(subject))
        .bind(clean(reason))
        .bind(attempt)
        .bind(text)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The tenant of an active key, by the key's SHA-256.
    pub async fn tenant_of_key(&self, key_sha256: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT tenant FROM api_keys WHERE key_sha256 = $1 AND revoked_at IS NULL")
                .bind(key_sha256)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Whether any key was ever issued, revoked ones too: once keys are in
    /// use, revoking them all never opens the API again.
    pub async fn any_api_keys(&self) -> Result<bool> {
        Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM api_keys)")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Stores a new key's digest for `tenant`; returns the key's id.
    pub async fn create_api_key(&self, tenant: &str, key_sha256: &str) -> Result<Uuid> {
        let id = Uuid::now_v7();
        sqlx::query("INSERT INTO api_keys (id, tenant, key_sha256) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(tenant)
            .bind(key_sha256)
            .execute(&self.pool)
            .await?;
        Ok(id)
    }

    /// Revokes a key by id; `false` if there was no active key with that id.
    pub async fn revoke_api_key(&self, id: Uuid) -> Result<bool> {
        let n = sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// Dispatched attempts past their deadline.
    pub async fn overdue(&self, limit: i64) -> Result<Vec<Uuid>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM attempts WHERE status = 'dispatched' AND deadline < now() ORDER BY deadline LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }
}

/// Creates the database named in `opts` if the server says it does not exist
/// (SQLSTATE 3D000), connecting to the `postgres` database to do so.
pub async fn ensure_database(opts: &PgConnectOptions) -> Result<()> {
    use sqlx::Connection;
    match sqlx::PgConnection::connect_with(opts).await {
        Ok(c) => {
            let _ = c.close().await;
            Ok(())
        }
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {
            let name = opts.get_database().unwrap_or("postgres").to_string();
            let mut admin = sqlx::PgConnection::connect_with(&opts.clone().database("postgres")).await?;
            let quoted = format!("\"{}\"", name.replace('"', "\"\""));
            let sql = format!("CREATE DATABASE {quoted}");
            match sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await {
                Ok(_) => tracing::info!(database = %name, "created database"),
                // Another process created it first.
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
                Err(e) => return Err(e.into()),
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// A closed-enum value read from `column`: a value outside the enum is a
/// decode error (the request fails as a database error would), never a
/// panic.
pub(crate) fn stored<T: FromStr<Err = String>>(column: &str, text: &str) -> sqlx::Result<T> {
    text.parse().map_err(|e: String| sqlx::Error::ColumnDecode {
        index: column.to_string(),
        source: e.into(),
    })
}
