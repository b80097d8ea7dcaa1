//! Admitting a new job: its rows and first decisions, built in a unit of
//! its own that the store's intake writes (in a group commit with other
//! submissions).
//!
//! Every step without dependencies starts on the tier its risk calls for.
//! A rag job's retrieval was already done at submission with the question
//! itself (tier zero): when it clears its floor the retrieve step is
//! accepted without a model and the next step starts at once; when it
//! misses, the step escalates to a model that rewrites the question.

use super::advance::advance_job;
use super::rag::RagJob;
use super::steps;
use crate::request::{JobRequest, PlannedStep};
use crate::store::unit::{NewJob, StepRow, Unit};
use upshift_shared::StepState;
use upshift_shared::config::Config;
use upshift_shared::policy::{StepRisk, first_useful_tier, start_tier};
use upshift_shared::verify::rag::{Retrieval, RetrievalFloor, check_retrieval};
use uuid::Uuid;

/// Builds job `req` of `tenant` with its planned `steps` in a new unit and
/// starts what can start; `retrieval` is a rag job's search for its
/// question. Returns the job's id and the unit to write.
pub(crate) fn admit(
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
    let rag = RagJob::from_input(req.kind, &input);
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
        let searched = retrieval.filter(|_| rag.is_some() && s.idx == 0);
        match searched {
            Some(r) => {
                let detail = serde_json::json!({
                    "by": "search", "mode": r.mode, "passages": r.passages.len(),
                    "best_similarity": r.sentences.first().map(|s| s.similarity),
                });
                match check_retrieval(r, RetrievalFloor::from(&cfg.rag)) {
                    None => {
                        let output = serde_json::to_string(r).expect("retrievals serialise");
                        steps::accept_without_model(&mut unit, id, output, detail);
                    }
                    Some(miss) => {
                        let tier = start_tier(&cfg.routing, risk).tier;
                        match first_useful_tier(&cfg.routing, tier, &s.class) {
                            Some(tier) => {
                                steps::escalate_from_zero(&mut unit, cfg, id, tier, &[miss], detail);
                            }
                            None => {
                                let output = serde_json::to_string(r).expect("retrievals serialise");
                                steps::unresolved_without_model(&mut unit, id, output, &[miss], detail);
                            }
                        }
                    }
                }
            }
            None => {
                steps::start(&mut unit, cfg, id, risk, None, serde_json::Value::Null);
            }
        }
    }
    if rag.is_some() {
        advance_job(&mut unit, cfg, job_id, rag.as_ref());
    }
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
        output: None,
        open_findings: serde_json::json!([]),
        first_in: None,
        first_out: None,
        first_tier: None,
    }
}
