//! Admitting a new job: its rows and first decisions, built in a unit of
//! its own that the store's intake writes (in a group commit with other
//! submissions).
//!
//! Every step without dependencies starts on the tier its risk calls for,
//! unless its job's kind starts it (a rag job's retrieve step, from the
//! search done at submission: `Kind::admit_step`).

use super::advance::advance_job;
use super::kind::Kind;
use super::steps;
use crate::collections::Retriever;
use crate::error::Result;
use crate::request::{JobRequest, PlannedStep};
use crate::store::unit::{NewJob, StepRow, Unit};
use crate::store::{Outgoing, PgStore};
use upshift_shared::StepState;
use upshift_shared::config::Config;
use upshift_shared::policy::StepRisk;
use upshift_shared::verify::rag::Retrieval;
use uuid::Uuid;

/// A validated job to admit.
pub(crate) struct Submission<'a> {
    /// Whose job it is.
    pub tenant: &'a str,
    /// The request, its default budget applied.
    pub req: &'a JobRequest,
    /// Its planned steps.
    pub steps: &'a [PlannedStep],
    /// The submission's trace, when traced.
    pub traceparent: Option<&'a str>,
}

/// Submits a validated job as one call: what its kind needs first (a rag
/// job's collection and the search for its question), its rows and first
/// decisions, written atomically. Returns the job's id and the task
/// messages to publish.
pub(crate) async fn submit(
    store: &PgStore,
    retriever: &Retriever,
    cfg: &Config,
    job: Submission<'_>,
) -> Result<(Uuid, Vec<Outgoing>)> {
    let retrieval = Kind::at_submit(store, retriever, job.tenant, job.req).await?;
    let (id, unit) = admit(cfg, job.tenant, job.req, job.steps, job.traceparent, retrieval.as_ref());
    Ok((id, store.create_job(cfg, unit).await?))
}

/// Builds job `req` of `tenant` with its planned `steps` in a new unit and
/// starts what can start; `retrieval` is a rag job's search for its
/// question. Returns the job's id and the unit to write.
fn admit(
    cfg: &Config,
    tenant: &str,
    req: &JobRequest,
    steps: &[PlannedStep],
    traceparent: Option<&str>,
    retrieval: Option<&Retrieval>,
) -> (Uuid, Unit) {
    let mut unit = Unit::default();
    let job_id = Uuid::now_v7();
    let input = serde_json::to_value(req).expect("requests serialise");
    let kind = Kind::of(req.kind, Some(&input));
    let job = NewJob {
        id: job_id,
        tenant: tenant.to_string(),
        kind: req.kind,
        input,
        blast_radius: req.blast_radius,
        budget_usd: req.budget_usd,
        traceparent: traceparent.map(str::to_string),
    };
    let rows: Vec<StepRow> = steps.iter().map(|s| step_row(job_id, s)).collect();
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    unit.create(job, rows);
    for (s, id) in steps.iter().zip(ids) {
        if !s.depends_on.is_empty() {
            continue;
        }
        let risk = StepRisk {
            task: s.task,
            class: &s.class,
            ambiguity: s.ambiguity,
            blast: req.blast_radius,
        };
        if !kind.admit_step(&mut unit, cfg, (id, s, risk), retrieval) {
            steps::start(&mut unit, cfg, id, risk, None, serde_json::Value::Null);
        }
    }
    // A step done without a model (a rag job's search) lets the next start.
    advance_job(&mut unit, cfg, job_id, &kind);
    (job_id, unit)
}

/// A new step's row, `pending`.
fn step_row(job_id: Uuid, s: &PlannedStep) -> StepRow {
    StepRow {
        id: Uuid::now_v7(),
        job_id,
        idx: s.idx,
        name: s.name.clone(),
        task_type: s.task,
        task_class: s.class.clone(),
        input: s.input.clone(),
        depends_on: s.depends_on.clone(),
        verifiers: s.verifiers.clone(),
        output_schema: s.output_schema.clone(),
        labels: s.labels.clone(),
        ambiguity: s.ambiguity,
        ambiguity_source: s.ambiguity_source.to_string(),
        state: StepState::Pending,
        current_tier: None,
        max_tokens: s.max_tokens.map(|m| m as i32),
        stop: s.stop.clone(),
        output: None,
        open_findings: serde_json::json!([]),
        first_in: None,
        first_out: None,
        first_tier: None,
    }
}
