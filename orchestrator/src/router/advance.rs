//! Moving a job on after a decision, in the unit: starting the steps whose
//! dependencies are done, finishing or failing the job.

use super::unit::Unit;
use crate::rag::route::{Done, RagJob, prepare_start};
use crate::store::{parse_stored, reason_texts};
use upshift_shared::config::Config;
use upshift_shared::policy::StepRisk;
use upshift_shared::verify::rag::Retrieval;
use upshift_shared::{BlastRadius, ReasonCode};
use uuid::Uuid;

/// Starts the steps whose dependencies are now all accepted; finishes the
/// job when every step is accepted. For a rag job, `retrieval` is what its
/// retrieve step found (the decision already has it).
pub(super) fn advance_job(
    unit: &mut Unit,
    cfg: &Config,
    job_id: Uuid,
    blast: BlastRadius,
    rag: Option<&RagJob>,
    retrieval: Option<&Retrieval>,
) {
    let accepted: Vec<i32> = unit
        .steps_of(job_id)
        .filter(|s| s.state == "accepted")
        .map(|s| s.idx)
        .collect();
    let ready: Vec<Uuid> = unit
        .steps_of(job_id)
        .filter(|s| s.state == "pending" && s.depends_on.iter().all(|i| accepted.contains(i)))
        .map(|s| s.id)
        .collect();
    for id in &ready {
        let s = unit.step(*id);
        let (base, first, task, class) = (s.ambiguity, s.idx == 0, s.task_type.clone(), s.task_class.clone());
        let (ambiguity, parts, forced) = match rag {
            Some(job) if !first => prepare_start(unit, job, retrieval, *id),
            _ => (base, serde_json::Value::Null, None),
        };
        let risk = StepRisk {
            task: parse_stored(&task),
            class: &class,
            ambiguity,
            blast,
        };
        unit.start(cfg, *id, risk, forced, parts);
    }
    if !ready.is_empty() || unit.steps_of(job_id).any(|s| s.state != "accepted") {
        return;
    }
    let strong = unit.always_strong_cost(cfg, job_id);
    let steps: Vec<_> = unit.steps_of(job_id).collect();
    let result = if rag.is_some() {
        let done: Vec<Done<'_>> = steps
            .iter()
            .map(|s| Done {
                name: &s.name,
                output: s.output.as_deref().unwrap_or_default(),
                open_findings: &s.open_findings,
            })
            .collect();
        crate::rag::route::result(&done, unit.job(job_id).cost(), strong)
    } else {
        let outputs: serde_json::Map<String, serde_json::Value> = steps
            .iter()
            .map(|s| (s.name.clone(), s.output.clone().unwrap_or_default().into()))
            .collect();
        let open: Vec<serde_json::Value> = steps
            .iter()
            .flat_map(|s| s.open_findings.as_array().cloned().unwrap_or_default())
            .collect();
        let last = steps.last().and_then(|s| s.output.clone());
        serde_json::json!({ "answer": last, "outputs": outputs, "open_findings": open })
    };
    unit.job_mut(job_id).finish = Some(("succeeded", result, strong));
}

/// Fails the job and cancels its other unfinished steps.
pub(super) fn fail_job(unit: &mut Unit, cfg: &Config, job_id: Uuid, failed: Uuid, reasons: &[ReasonCode]) {
    let name = unit.step(failed).name.clone();
    let result = serde_json::json!({ "error": { "step": name, "reasons": reason_texts(reasons) } });
    let strong = unit.always_strong_cost(cfg, job_id);
    unit.job_mut(job_id).finish = Some(("failed", result, strong));
    let open: Vec<Uuid> = unit
        .steps_of(job_id)
        .filter(|s| s.state == "pending" || s.state == "running")
        .map(|s| s.id)
        .collect();
    for step in open {
        unit.step_mut(step).state = "cancelled".into();
        let why = [ReasonCode::DependencyFailed];
        unit.event(
            job_id,
            Some(step),
            None,
            "cancel",
            None,
            None,
            &why,
            serde_json::json!({}),
        );
    }
}
