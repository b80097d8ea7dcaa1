//! Moving a job on after a decision, in the unit: starting the steps whose
//! dependencies are done (a step done without a model lets the next ones
//! start at once), and finishing the job — `succeeded` when every step was
//! defended, `unresolved` when one was not — or failing it.
//!
//! A job's kind may stop it early (a rag job whose evidence or answer is
//! undefended: there is nothing for the later steps to defend), and then
//! the steps still to come are cancelled and the job ends `unresolved`
//! with the best answer it has. How a step starts and how the result is
//! composed are the kind's too ([`Kind`]).

use super::kind::Kind;
use super::steps::{self, StepStart};
use crate::store::reason_texts;
use crate::store::unit::{Event, Unit};
use upshift_shared::config::Config;
use upshift_shared::policy::{StepRisk, first_useful_tier, start_tier};
use upshift_shared::{BlastRadius, JobStatus, ReasonCode, RouteEventKind, StepState, Tier};
use uuid::Uuid;

/// Starts the steps whose dependencies are all done, again while a step
/// finishes without a model; finishes the job when every step is done.
pub(super) fn advance_job(unit: &mut Unit, cfg: &Config, job_id: Uuid, kind: &Kind) {
    let blast: BlastRadius = unit.job(job_id).blast_radius;
    loop {
        if kind.stops_early(unit, cfg, job_id) {
            cancel_open(unit, job_id, ReasonCode::DependencyUnresolved);
            break;
        }
        let finished: Vec<i32> = unit
            .steps_of(job_id)
            .filter(|s| s.state.is_done())
            .map(|s| s.idx)
            .collect();
        let ready: Vec<Uuid> = unit
            .steps_of(job_id)
            .filter(|s| s.state == StepState::Pending && s.depends_on.iter().all(|i| finished.contains(i)))
            .map(|s| s.id)
            .collect();
        let mut without_model = false;
        for id in &ready {
            without_model |= start_step(unit, cfg, *id, blast, kind);
        }
        if !without_model {
            break;
        }
    }
    if unit
        .steps_of(job_id)
        .all(|s| s.state.is_done() || s.state == StepState::Cancelled)
    {
        finish(unit, cfg, job_id, kind);
    }
}

/// Starts step `id`; returns whether it was done without a model.
fn start_step(unit: &mut Unit, cfg: &Config, id: Uuid, blast: BlastRadius, kind: &Kind) -> bool {
    let s = unit.step(id);
    let (base, first, task, class) = (s.ambiguity, s.idx == 0, s.task_type, s.task_class.clone());
    let risk = |ambiguity| StepRisk {
        task,
        class: &class,
        ambiguity,
        blast,
    };
    let Some(start) = kind.start(unit, cfg, id, first) else {
        steps::start(unit, cfg, id, risk(base), None, serde_json::Value::Null);
        return false;
    };
    match start {
        StepStart::Model {
            ambiguity,
            parts,
            forced,
        } => {
            steps::start(unit, cfg, id, risk(ambiguity), forced, parts);
            false
        }
        StepStart::Zero {
            output,
            findings,
            by,
            detail: extra,
            ambiguity,
            parts,
            askable,
        } => {
            let mut detail = serde_json::json!({ "by": by, "ambiguity": ambiguity, "ambiguity_parts": parts });
            if let (Some(d), Some(extra)) = (detail.as_object_mut(), extra.as_object()) {
                d.extend(extra.clone());
            }
            if findings.is_empty() {
                steps::accept_without_model(unit, id, output, detail);
                return true;
            }
            // On to the first tier at or above the start rule's that could
            // accept this class at all; with none, or when a model's choice
            // would carry no evidence, there is nobody to ask.
            let tier = start_tier(&cfg.routing, risk(ambiguity)).tier;
            match first_useful_tier(&cfg.routing, tier, &class).filter(|_| askable) {
                Some(tier) => {
                    steps::escalate_from_zero(unit, cfg, id, tier, &findings, detail);
                }
                None => {
                    steps::unresolved_without_model(unit, id, output, &findings, detail);
                    return true;
                }
            }
            false
        }
    }
}

/// Cancels every pending or running step of the job, with `why`.
fn cancel_open(unit: &mut Unit, job_id: Uuid, why: ReasonCode) {
    let open: Vec<Uuid> = unit
        .steps_of(job_id)
        .filter(|s| matches!(s.state, StepState::Pending | StepState::Running))
        .map(|s| s.id)
        .collect();
    for step in open {
        unit.step_mut(step).state = StepState::Cancelled;
        unit.event(Event {
            job: job_id,
            step: Some(step),
            attempt: None,
            kind: RouteEventKind::Cancel,
            from: None,
            to: None,
            reasons: &[why],
            detail: serde_json::json!({}),
        });
    }
}

/// Finishes the job: `succeeded` when every step was defended, else
/// `unresolved`, with the result and the always-strong cost.
fn finish(unit: &mut Unit, cfg: &Config, job_id: Uuid, kind: &Kind) {
    let strong = always_strong_cost(unit, cfg, job_id);
    let defended = unit.steps_of(job_id).all(|s| s.state == StepState::Accepted);
    let result = kind.result(unit, job_id, defended, strong);
    let status = if defended {
        JobStatus::Succeeded
    } else {
        JobStatus::Unresolved
    };
    unit.job_mut(job_id).finish = Some((status, result, strong));
}

/// Fails the job and cancels its other unfinished steps.
pub(super) fn fail_job(unit: &mut Unit, cfg: &Config, job_id: Uuid, failed: Uuid, reasons: &[ReasonCode]) {
    let name = unit.step(failed).name.clone();
    let result = serde_json::json!({ "error": { "step": name, "reasons": reason_texts(reasons) } });
    let strong = always_strong_cost(unit, cfg, job_id);
    unit.job_mut(job_id).finish = Some((JobStatus::Failed, result, strong));
    cancel_open(unit, job_id, ReasonCode::DependencyFailed);
}

/// What job `id` would have cost with every step done once on the strong
/// tier: each step's first answered attempt's tokens at the strong
/// model's prices, per run of each model (a strong model sampled three
/// times pays three runs; a rag step reopened by its critique counts once).
fn always_strong_cost(unit: &Unit, cfg: &Config, job: Uuid) -> f64 {
    let strong = cfg.tier_model(Tier::Strong);
    let usd: f64 = unit
        .steps_of(job)
        .filter_map(|s| {
            let runs = s.first_tier.map_or(1, |t| cfg.tier_model(t).samples());
            let scale = f64::from(strong.samples()) / f64::from(runs);
            Some((s.first_in? as f64 * scale, s.first_out? as f64 * scale))
        })
        .map(|(tin, tout)| tin * strong.usd_per_m_in + tout * strong.usd_per_m_out)
        .sum();
    usd / 1e6
}
