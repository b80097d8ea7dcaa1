//! Writing a unit back: one statement per table, in foreign-key and route
//! order.

use super::{EventRow, RowState, StepRow, Unit};
use crate::error::Result;
use serde::Serialize;
use sqlx::PgConnection;
use upshift_shared::config::Config;
use uuid::Uuid;

/// Most bytes of JSON one statement carries; more rows take more statements.
///
/// sqlx does not set `TCP_NODELAY`. A message larger than one `write()`
/// hands to the socket leaves a tail that Nagle's algorithm holds until the
/// server acknowledges what went before, and Linux delays that
/// acknowledgement by up to 40 ms: measured in `upshift bench engine`, every
/// statement of a 64-result batch (~40 KB) took 48 ms, and results queued
/// for seconds. At 8 KB a statement goes out in one write.
const CHUNK_BYTES: usize = 8 * 1024;

/// A job's change: the cost added and, when it finished, how.
#[derive(Serialize)]
struct JobChange<'a> {
    id: Uuid,
    added: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<upshift_shared::JobStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strong: Option<f64>,
}

/// Runs `sql` once per chunk of `rows` (see [`chunks`]), with the chunk's
/// JSON as `$1` and its rows' ids (from `id`) as `$2`.
async fn write<T: Serialize>(
    tx: &mut PgConnection,
    sql: &'static str,
    rows: &[T],
    id: impl Fn(&T) -> Uuid,
) -> Result<()> {
    for (json, ids) in chunks(rows, |r| Some(id(r))) {
        sqlx::query(sql).bind(json).bind(ids).execute(&mut *tx).await?;
    }
    Ok(())
}

/// `rows` as JSON arrays of at most [`CHUNK_BYTES`] (a larger row goes
/// alone), each with the ids `id` gives for its rows, in order.
fn chunks<T: Serialize>(rows: &[T], id: impl Fn(&T) -> Option<Uuid>) -> Vec<(String, Vec<Uuid>)> {
    let mut out = Vec::new();
    let (mut json, mut ids) = (String::from("["), Vec::new());
    for row in rows {
        let text = serde_json::to_string(row).expect("rows serialise");
        if !ids.is_empty() && json.len() + text.len() + 2 > CHUNK_BYTES {
            json.push(']');
            out.push((std::mem::replace(&mut json, "[".into()), std::mem::take(&mut ids)));
        }
        if json.len() > 1 {
            json.push(',');
        }
        json.push_str(&text);
        ids.push(id(row));
    }
    if !ids.is_empty() {
        json.push(']');
        out.push((json, ids));
    }
    out.into_iter()
        .map(|(j, ids)| (j, ids.into_iter().flatten().collect()))
        .collect()
}

/// A route event with its place in the order the events are written.
#[derive(Serialize)]
struct Numbered<'a> {
    n: usize,
    #[serde(flatten)]
    row: &'a EventRow,
}

impl Unit {
    /// Writes everything pending, in foreign-key and event order.
    pub async fn flush(&self, tx: &mut super::super::Conn, cfg: &Config) -> Result<()> {
        flush_all(tx.pg(), cfg, &[self]).await
    }
}

/// Writes everything pending in `units` (new jobs admitted apart, written
/// in one group commit) with one statement per table, in foreign-key order;
/// each unit's route events keep their order.
pub(crate) async fn flush_all(tx: &mut PgConnection, cfg: &Config, units: &[&Unit]) -> Result<()> {
    let new_jobs: Vec<_> = units.iter().flat_map(|u| &u.new_jobs).collect();
    let new_attempts: Vec<_> = units.iter().flat_map(|u| &u.new_attempts).collect();
    let attempt_updates: Vec<_> = units.iter().flat_map(|u| &u.attempt_updates).collect();
    let events: Vec<Numbered<'_>> = units
        .iter()
        .flat_map(|u| &u.events)
        .enumerate()
        .map(|(n, row)| Numbered { n, row })
        .collect();
    let rows_in = |state: RowState| -> Vec<&StepRow> {
        units
            .iter()
            .flat_map(|u| u.steps.iter().zip(&u.row))
            .filter(|(_, r)| **r == state)
            .map(|(s, _)| s)
            .collect()
    };
    let (new, changed) = (rows_in(RowState::New), rows_in(RowState::Changed));
    write(
        tx,
                "INSERT INTO jobs (id, tenant, kind, input, blast_radius, budget_usd, status, traceparent)
                 SELECT r.id, r.tenant, r.kind, r.input, r.blast_radius, r.budget_usd, 'running', r.traceparent
                 FROM jsonb_to_recordset($1::jsonb) AS r(id uuid, tenant text, kind text, input jsonb, blast_radius text,
                                                  budget_usd float8, traceparent text)",
        &new_jobs,
        |j| j.id,
    )
    .await?;
    write(
        tx,
        "INSERT INTO steps (id, job_id, idx, name, task_type, input, depends_on, verifiers, output_schema,
                                    ambiguity, ambiguity_source, state, task_class, labels, current_tier, output,
                                    open_findings, max_tokens, stop)
                 SELECT r.id, r.job_id, r.idx, r.name, r.task_type, r.input, r.depends_on, r.verifiers,
                        r.output_schema, r.ambiguity, r.ambiguity_source, r.state, r.task_class, r.labels,
                        r.current_tier, r.output, r.open_findings, r.max_tokens, r.stop
                 FROM jsonb_to_recordset($1::jsonb) AS r(id uuid, job_id uuid, idx int, name text, task_type text,
                      input text, depends_on int[], verifiers text[], output_schema jsonb, ambiguity float8,
                      ambiguity_source text, state text, task_class text, labels text[], current_tier text,
                      output text, open_findings jsonb, max_tokens int, stop text[])",
        &new,
        |s| s.id,
    )
    .await?;
    write(
        tx,
                "INSERT INTO attempts (id, step_id, job_id, tier, model, token, status, deadline)
                 SELECT r.id, r.step_id, r.job_id, r.tier, r.model, r.token, 'dispatched', now() + make_interval(secs => r.secs)
                 FROM jsonb_to_recordset($1::jsonb) AS r(id uuid, step_id uuid, job_id uuid, tier text, model text, token uuid, secs float8)",
        &new_attempts,
        |a| a.id,
    )
    .await?;
    write(
        tx,
                "UPDATE attempts a SET status = r.status, completed_at = now(), outcome = r.outcome,
                        findings = r.findings, worker_id = coalesce(r.worker_id, a.worker_id),
                        provider = coalesce(r.provider, a.provider), output = coalesce(r.output, a.output),
                        error = coalesce(r.error, a.error), tokens_in = coalesce(r.tokens_in, a.tokens_in),
                        tokens_out = coalesce(r.tokens_out, a.tokens_out), cost_usd = coalesce(r.cost_usd, a.cost_usd),
                        latency_ms = coalesce(r.latency_ms, a.latency_ms),
                        confidence = coalesce(r.confidence, a.confidence),
                        label_correct = coalesce(r.label_correct, a.label_correct),
                        received_at = coalesce(r.received_at, a.received_at),
                        result_sent_at = coalesce(r.result_sent_at, a.result_sent_at)
                 FROM jsonb_to_recordset($1::jsonb) AS r(id uuid, status text, outcome text, findings jsonb, worker_id text,
                      provider text, output text, error text, tokens_in int, tokens_out int, cost_usd float8,
                      latency_ms bigint, confidence float8, label_correct bool, received_at timestamptz,
                      result_sent_at timestamptz)
                 WHERE a.id = ANY($2) AND a.id = r.id",
        &attempt_updates,
        |u| u.id,
    )
    .await?;
    write(
        tx,
        "UPDATE steps s SET state = r.state, current_tier = r.current_tier, output = r.output,
                        open_findings = r.open_findings, ambiguity = r.ambiguity, labels = r.labels
                 FROM jsonb_to_recordset($1::jsonb) AS r(id uuid, state text, current_tier text, output text,
                                                  open_findings jsonb, ambiguity float8, labels text[])
                 WHERE s.id = ANY($2) AND s.id = r.id",
        &changed,
        |s| s.id,
    )
    .await?;
    for (json, _) in chunks(&events, |_| None) {
        sqlx::query(
            "INSERT INTO route_events (job_id, step_id, attempt_id, event, from_tier, to_tier, reasons,
                                       policy_version, detail)
             SELECT r.job_id, r.step_id, r.attempt_id, r.event, r.from_tier, r.to_tier, r.reasons, $2, r.detail
             FROM jsonb_to_recordset($1::jsonb) AS r(n int, job_id uuid, step_id uuid, attempt_id uuid, event text,
                  from_tier text, to_tier text, reasons text[], detail jsonb)
             ORDER BY r.n",
        )
        .bind(json)
        .bind(&cfg.routing.policy_version)
        .execute(&mut *tx)
        .await?;
    }
    let set_aside: Vec<_> = units.iter().flat_map(|u| &u.set_aside).collect();
    if !set_aside.is_empty() {
        // Once per attempt, however often its message is redelivered.
        sqlx::query(
            "INSERT INTO dead_letters (source, subject, reason, attempt_id, payload)
             SELECT 'orchestrator', $2, r.reason, r.attempt_id, r.payload
             FROM jsonb_to_recordset($1::jsonb) AS r(attempt_id uuid, reason text, payload text)
             WHERE NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.attempt_id = r.attempt_id AND d.source = 'orchestrator')",
        )
        .bind(serde_json::to_string(&set_aside).expect("rows serialise"))
        .bind(cfg.nats.subjects().results())
        .execute(&mut *tx)
        .await?;
    }
    let jobs: Vec<JobChange<'_>> = units
        .iter()
        .flat_map(|u| u.jobs.values())
        .filter(|j| j.added_cost != 0.0 || j.finish.is_some())
        .map(|j| JobChange {
            id: j.id,
            added: j.added_cost,
            status: j.finish.as_ref().map(|f| f.0),
            result: j.finish.as_ref().map(|f| &f.1),
            strong: j.finish.as_ref().map(|f| f.2),
        })
        .collect();
    write(
        tx,
        "UPDATE jobs j SET cost_usd = j.cost_usd + r.added, status = coalesce(r.status, j.status),
                    result = CASE WHEN r.status IS NULL THEN j.result ELSE r.result END,
                    finished_at = CASE WHEN r.status IS NULL THEN j.finished_at ELSE now() END,
                    always_strong_cost_usd = coalesce(r.strong, j.always_strong_cost_usd)
             FROM jsonb_to_recordset($1::jsonb) AS r(id uuid, added float8, status text, result jsonb, strong float8)
             WHERE j.id = ANY($2) AND j.id = r.id",
        &jobs,
        |j| j.id,
    )
    .await?;
    Ok(())
}
