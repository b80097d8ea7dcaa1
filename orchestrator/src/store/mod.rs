//! Postgres storage: the only place that writes jobs, steps, attempts and
//! route events.
//!
//! Guarantees:
//! - creating a job writes the job, all its steps and its first attempts in
//!   one transaction, or nothing;
//! - every decision about an attempt is taken under the job's and the step's
//!   row locks (always in that order), so replicas never decide twice, and a
//!   partial unique index on `route_events` backs this up;
//! - an attempt is committed as `dispatched` before it is published, and
//!   `published_at` is set only after the server acknowledged it (outbox).

mod read;

pub use read::{JobView, RouteEvent, StepView};

use crate::error::Result;
use crate::planner::{JobRequest, PlannedStep};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool};
use std::str::FromStr;
use std::time::Duration;
use upshift_shared::config::Config;
use upshift_shared::messages::{ContextItem, MESSAGE_VERSION, TaskMessage};
use upshift_shared::policy::{StartDecision, StepRisk, start_tier};
use upshift_shared::{ReasonCode, Tier};
use uuid::Uuid;

/// Postgres-backed store.
#[derive(Clone)]
pub struct PgStore {
    /// The connection pool.
    pub pool: PgPool,
    /// Where acknowledged publishes are sent to be marked in batches; marked
    /// one call at a time when unset.
    marks: Option<tokio::sync::mpsc::UnboundedSender<Marks>>,
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

/// What a task message is built from.
#[derive(sqlx::FromRow)]
struct DispatchRow {
    attempt_id: Uuid,
    job_id: Uuid,
    step_id: Uuid,
    tier: String,
    task_type: String,
    input: String,
    depends_on: Vec<i32>,
    output_schema: Option<serde_json::Value>,
    labels: Vec<String>,
    traceparent: Option<String>,
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
        let opts = PgConnectOptions::from_str(&cfg.database.url)?;
        ensure_database(&opts).await?;
        let pool = PgPoolOptions::new()
            .max_connections(cfg.database.max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await?;
        sqlx::migrate!("../migrations").run(&pool).await?;
        Ok(PgStore { pool, marks: None })
    }

    /// Creates a job with its steps and dispatches every step without
    /// dependencies, atomically. Returns the job id and the attempts to publish.
    pub async fn create_job(
        &self,
        cfg: &Config,
        tenant: &str,
        req: &JobRequest,
        steps: &[PlannedStep],
        traceparent: Option<&str>,
    ) -> Result<(Uuid, Vec<Uuid>)> {
        let job_id = Uuid::now_v7();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO jobs (id, tenant, kind, input, blast_radius, budget_usd, status, traceparent)
             VALUES ($1, $2, $3, $4, $5, $6, 'running', $7)",
        )
        .bind(job_id)
        .bind(tenant)
        .bind(req.kind.as_str())
        .bind(serde_json::to_value(req).expect("requests serialise"))
        .bind(req.blast_radius.as_str())
        .bind(req.budget_usd)
        .bind(traceparent)
        .execute(&mut *tx)
        .await?;
        let mut to_publish = Vec::new();
        for s in steps {
            let step_id = Uuid::now_v7();
            let verifiers: Vec<&str> = s.verifiers.iter().map(|v| v.as_str()).collect();
            sqlx::query(
                "INSERT INTO steps (id, job_id, idx, name, task_type, input, depends_on, verifiers,
                                    output_schema, ambiguity, ambiguity_source, state, task_class, labels)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'pending', $12, $13)",
            )
            .bind(step_id)
            .bind(job_id)
            .bind(s.idx)
            .bind(&s.name)
            .bind(s.task.as_str())
            .bind(&s.input)
            .bind(&s.depends_on)
            .bind(&verifiers)
            .bind(&s.output_schema)
            .bind(s.ambiguity)
            .bind(s.ambiguity_source)
            .bind(&s.class)
            .bind(&s.labels)
            .execute(&mut *tx)
            .await?;
            if s.depends_on.is_empty() {
                let risk = StepRisk {
                    task: s.task,
                    class: &s.class,
                    ambiguity: s.ambiguity,
                    blast: req.blast_radius,
                };
                let a = start_step(&mut tx, cfg, job_id, step_id, risk, None, serde_json::Value::Null).await?;
                to_publish.push(a);
            }
        }
        tx.commit().await?;
        Ok((job_id, to_publish))
    }

    /// Builds the task messages of `attempts` from the database.
    pub async fn task_messages(&self, attempts: &[Uuid]) -> Result<Vec<Outgoing>> {
        let rows: Vec<DispatchRow> = sqlx::query_as(
            "SELECT a.id AS attempt_id, a.job_id, a.step_id, a.tier, s.task_type, s.input, s.depends_on,
                    s.output_schema, s.labels, j.traceparent
             FROM attempts a JOIN steps s ON s.id = a.step_id JOIN jobs j ON j.id = a.job_id
             WHERE a.id = ANY($1) AND a.status = 'dispatched'",
        )
        .bind(attempts)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for DispatchRow {
            attempt_id,
            job_id,
            step_id,
            tier,
            task_type: task,
            input,
            depends_on: deps,
            output_schema: schema,
            labels,
            traceparent,
        } in rows
        {
            let context = if deps.is_empty() {
                Vec::new()
            } else {
                let ctx: Vec<(String, Option<String>)> =
                    sqlx::query_as("SELECT name, output FROM steps WHERE job_id = $1 AND idx = ANY($2) ORDER BY idx")
                        .bind(job_id)
                        .bind(&deps)
                        .fetch_all(&self.pool)
                        .await?;
                ctx.into_iter()
                    .map(|(step, output)| ContextItem {
                        step,
                        output: output.unwrap_or_default(),
                    })
                    .collect()
            };
            let msg = TaskMessage {
                version: MESSAGE_VERSION,
                attempt_id,
                job_id,
                step_id,
                tier: parse_stored(&tier),
                task: parse_stored(&task),
                input,
                context,
                output_schema: schema,
                labels,
            };
            out.push(Outgoing { msg, traceparent });
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
                Err(e) => self.mark_published(&e.0).await, // the marker has stopped
            },
            None => self.mark_published(&marks).await,
        }
    }

    /// This store, sending its publish marks to `marks`.
    pub fn with_marker(&self, marks: tokio::sync::mpsc::UnboundedSender<Marks>) -> PgStore {
        PgStore {
            pool: self.pool.clone(),
            marks: Some(marks),
        }
    }

    /// Records when the server acknowledged these attempts.
    pub async fn mark_published(&self, marks: &Marks) -> Result<()> {
        sqlx::query(
            "UPDATE attempts a SET published_at = m.at FROM unnest($1::uuid[], $2::timestamptz[]) AS m(id, at)
             WHERE a.id = m.id AND a.published_at IS NULL",
        )
        .bind(&marks.ids)
        .bind(&marks.at)
        .execute(&self.pool)
        .await?;
        Ok(())
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

    /// Records a message set aside as a dead letter (payload truncated to 64 KiB).
    pub async fn record_dead_letter(
        &self,
        source: &str,
        subject: &str,
        reason: &str,
        attempt: Option<Uuid>,
        payload: &[u8],
    ) -> Result<()> {
        let text = String::from_utf8_lossy(&payload[..payload.len().min(64 * 1024)]);
        sqlx::query(
            "INSERT INTO dead_letters (source, subject, reason, attempt_id, payload) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(source)
        .bind(subject)
        .bind(reason)
        .bind(attempt)
        .bind(text.as_ref())
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

    /// Whether any key was issued and not revoked (then requests need one).
    pub async fn any_api_keys(&self) -> Result<bool> {
        Ok(
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM api_keys WHERE revoked_at IS NULL)")
                .fetch_one(&self.pool)
                .await?,
        )
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

/// Parses a closed-enum value written by this code; a bad value is a bug.
pub(crate) fn parse_stored<T: FromStr<Err = String>>(s: &str) -> T {
    s.parse().unwrap_or_else(|e| panic!("corrupt stored value: {e}"))
}

/// Picks a step's start tier (or takes `forced`, e.g. a rag critique's tier
/// below its synthesiser), records `start` with the ambiguity and its
/// `parts` when known, and dispatches the first attempt.
pub(crate) async fn start_step(
    tx: &mut PgConnection,
    cfg: &Config,
    job_id: Uuid,
    step_id: Uuid,
    risk: StepRisk<'_>,
    forced: Option<StartDecision>,
    parts: serde_json::Value,
) -> Result<Uuid> {
    let (d, rule) = match forced {
        Some(d) => (d, serde_json::json!("below_synthesiser")),
        None => {
            let d = start_tier(&cfg.routing, risk);
            let rule = serde_json::json!(d.rule);
            (d, rule)
        }
    };
    let StepRisk {
        ambiguity,
        blast,
        class,
        ..
    } = risk;
    let lead = Lead {
        event: "start",
        attempt: None,
        from: None,
        reasons: &d.reasons,
        detail: serde_json::json!({
            "ambiguity": ambiguity, "ambiguity_parts": parts, "blast_radius": blast, "task_class": class, "rule": rule,
        }),
    };
    dispatch(tx, cfg, job_id, step_id, d.tier, lead).await
}

/// The route event that leads to a dispatch (`start`, or `escalate` from an
/// attempt), written by the same statement as the dispatch.
pub(crate) struct Lead<'a> {
    /// `start` or `escalate`.
    pub event: &'a str,
    /// The attempt escalated from, if any.
    pub attempt: Option<Uuid>,
    /// The tier escalated from, if any.
    pub from: Option<Tier>,
    /// Why.
    pub reasons: &'a [ReasonCode],
    /// The event's detail.
    pub detail: serde_json::Value,
}

/// Inserts a `dispatched` attempt on `tier`, marks the step running and
/// records the `lead` event and the `dispatch` event, in that order — one
/// statement (data-modifying CTEs), one round trip.
pub(crate) async fn dispatch(
    tx: &mut PgConnection,
    cfg: &Config,
    job_id: Uuid,
    step_id: Uuid,
    tier: Tier,
    lead: Lead<'_>,
) -> Result<Uuid> {
    let id = Uuid::now_v7();
    let model = cfg.tier_model_name(tier);
    sqlx::query(
        "WITH a AS (
             INSERT INTO attempts (id, step_id, job_id, tier, model, status, deadline)
             VALUES ($1, $2, $3, $4, $5, 'dispatched', now() + make_interval(secs => $6))
         ), s AS (
             UPDATE steps SET state = 'running', current_tier = $4 WHERE id = $2
         )
         INSERT INTO route_events (job_id, step_id, attempt_id, event, from_tier, to_tier, reasons, policy_version, detail)
         SELECT $3, $2, e.attempt_id, e.event, $7, $4, e.reasons, $8, e.detail
         FROM (VALUES (1, $9::uuid, $10::text, $11::text[], $12::jsonb),
                      (2, $1::uuid, 'dispatch', '{}'::text[], $13::jsonb))
              AS e (n, attempt_id, event, reasons, detail)
         ORDER BY e.n",
    )
    .bind(id)
    .bind(step_id)
    .bind(job_id)
    .bind(tier.as_str())
    .bind(model)
    .bind(cfg.orchestrator.attempt_deadline_secs as f64)
    .bind(lead.from.map(Tier::as_str))
    .bind(&cfg.routing.policy_version)
    .bind(lead.attempt)
    .bind(lead.event)
    .bind(reason_texts(lead.reasons))
    .bind(lead.detail)
    .bind(serde_json::json!({ "model": model }))
    .execute(&mut *tx)
    .await?;
    Ok(id)
}
