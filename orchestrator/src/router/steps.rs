//! The router's step decisions, written into a unit: start a step on the
//! tier its risk calls for, dispatch an attempt, or decide a step without a
//! model (tier zero: accept it, leave it unresolved, or escalate it to the
//! first model tier). The unit only records rows; what they say is decided
//! here.

use crate::store::unit::{Event, Unit};
use upshift_shared::config::Config;
use upshift_shared::policy::{StartDecision, StepRisk, start_tier};
use upshift_shared::verify::Finding;
use upshift_shared::{ReasonCode, RouteEventKind, StepState, Tier};
use uuid::Uuid;

/// The route event that leads to a dispatch (`start`, or `escalate` from an
/// attempt); it is written right before the `dispatch` event.
pub(crate) struct Lead<'a> {
    /// `start` or `escalate`.
    pub event: RouteEventKind,
    /// The attempt escalated from, if any.
    pub attempt: Option<Uuid>,
    /// The tier escalated from, if any.
    pub from: Option<Tier>,
    /// Why.
    pub reasons: &'a [ReasonCode],
    /// The event's detail.
    pub detail: serde_json::Value,
}

/// How a step starts.
pub(crate) enum StepStart {
    /// On a model: at the tier its start rule picks for `ambiguity`, or at
    /// `forced`; `parts` explains the ambiguity on the `start` event.
    Model {
        /// The step's ambiguity.
        ambiguity: f64,
        /// Its parts, for the `start` event.
        parts: serde_json::Value,
        /// A tier the kind decided (a rag critique's).
        forced: Option<upshift_shared::policy::StartDecision>,
    },
    /// Without a model ("tier zero"): accepted when `findings` is empty,
    /// else escalated to a model with them when `askable`, else unresolved.
    Zero {
        /// What was produced.
        output: String,
        /// What its verifiers found.
        findings: Vec<Finding>,
        /// What produced it (`rank`, `compose`, `policy`).
        by: &'static str,
        /// More for the route: what was chosen and how relevant it is.
        detail: serde_json::Value,
        /// The step's ambiguity.
        ambiguity: f64,
        /// Its parts, for the `start` event.
        parts: serde_json::Value,
        /// Whether a model could add evidence.
        askable: bool,
    },
}

/// What an accepted answer leads to, as its kind sees it.
pub(crate) enum AfterAccept {
    /// The step is accepted and the job moves on.
    Accepted,
    /// The step is accepted, and an earlier step runs again (a rag
    /// critique rejected the answer; a tier above can try).
    Reopen(Reopen),
    /// The step ends unresolved with these findings (a rejecting critique
    /// with no tier or budget left).
    Unresolved(Vec<Finding>),
}

/// Re-running an earlier step after a rejection (a rag critique's).
pub(crate) struct Reopen {
    /// The step that runs again.
    pub(crate) answering: Uuid,
    /// The tier it ran on.
    pub(crate) from: Tier,
    /// The tier it runs on now.
    pub(crate) to: Tier,
    /// Why (the critic's reason).
    pub(crate) reason: String,
    /// The attempt whose verdict reopened it.
    pub(crate) critique_attempt: Uuid,
}

/// Picks a step's start tier (or takes `forced`, e.g. a rag critique's
/// tier below its synthesiser), records `start` with the ambiguity and
/// its `parts` when known, and dispatches the first attempt.
pub(crate) fn start(
    unit: &mut Unit,
    cfg: &Config,
    step_id: Uuid,
    risk: StepRisk<'_>,
    forced: Option<StartDecision>,
    parts: serde_json::Value,
) -> Uuid {
    let (d, rule) = match forced {
        Some(d) => (d, serde_json::json!("below_answerer")),
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
        event: RouteEventKind::Start,
        attempt: None,
        from: None,
        reasons: &d.reasons,
        detail: serde_json::json!({
            "ambiguity": ambiguity, "ambiguity_parts": parts, "blast_radius": blast, "task_class": class,
            "rule": rule,
        }),
    };
    dispatch(unit, cfg, step_id, d.tier, lead)
}

/// Keeps `output` as what tier zero decided for the step (`state`,
/// with `findings` open) and records its `start` event without a tier;
/// returns the job.
fn decided_without_model(
    unit: &mut Unit,
    step_id: Uuid,
    state: StepState,
    output: String,
    findings: &[Finding],
    detail: &serde_json::Value,
) -> Uuid {
    let job = unit.step(step_id).job_id;
    let s = unit.step_mut(step_id);
    s.state = state;
    s.output = Some(output);
    s.open_findings = serde_json::to_value(findings).expect("findings serialise");
    s.current_tier = None;
    unit.event(Event {
        kind: RouteEventKind::Start,
        reasons: &[ReasonCode::RiskRule],
        detail: detail.clone(),
        ..start_like(job, step_id)
    });
    job
}

/// Records a step done without a model ("tier zero": a search, or an
/// answer composed from a chosen span): `start` and `accept` events
/// without tiers, and its output. `detail` says what did it.
pub(crate) fn accept_without_model(unit: &mut Unit, step_id: Uuid, output: String, detail: serde_json::Value) {
    let job = decided_without_model(unit, step_id, StepState::Accepted, output, &[], &detail);
    unit.event(Event {
        kind: RouteEventKind::Accept,
        detail,
        ..start_like(job, step_id)
    });
}

/// Records a step tier zero could not defend and no tier is trusted to:
/// `start` and `unresolved` without tiers, its output kept undefended
/// with the findings.
pub(crate) fn unresolved_without_model(
    unit: &mut Unit,
    step_id: Uuid,
    output: String,
    findings: &[Finding],
    detail: serde_json::Value,
) {
    let job = decided_without_model(unit, step_id, StepState::Unresolved, output, findings, &detail);
    let codes: Vec<ReasonCode> = findings.iter().map(|f| f.code).collect();
    let mut detail = detail;
    detail["findings"] = serde_json::to_value(findings).expect("findings serialise");
    unit.event(Event {
        kind: RouteEventKind::Unresolved,
        reasons: &codes,
        detail,
        ..start_like(job, step_id)
    });
}

/// Records a step tier zero could not defend: `start` without a tier,
/// then `escalate` from it to `tier` with the findings' reasons, and the
/// first model attempt. Returns the attempt's id.
pub(crate) fn escalate_from_zero(
    unit: &mut Unit,
    cfg: &Config,
    step_id: Uuid,
    tier: Tier,
    findings: &[Finding],
    detail: serde_json::Value,
) -> Uuid {
    let job = unit.step(step_id).job_id;
    unit.event(Event {
        kind: RouteEventKind::Start,
        reasons: &[ReasonCode::RiskRule],
        detail: detail.clone(),
        ..start_like(job, step_id)
    });
    let mut reasons: Vec<ReasonCode> = Vec::new();
    for f in findings {
        if !reasons.contains(&f.code) {
            reasons.push(f.code);
        }
    }
    let mut detail = detail;
    detail["findings"] = serde_json::to_value(findings).expect("findings serialise");
    let lead = Lead {
        event: RouteEventKind::Escalate,
        attempt: None,
        from: None,
        reasons: &reasons,
        detail,
    };
    dispatch(unit, cfg, step_id, tier, lead)
}

/// Creates a `dispatched` attempt of `step_id` on `tier`, marks the step
/// running, records the `lead` event and the `dispatch` event, and queues
/// the task message. Returns the attempt's id.
pub(crate) fn dispatch(unit: &mut Unit, cfg: &Config, step_id: Uuid, tier: Tier, lead: Lead<'_>) -> Uuid {
    let model = cfg.tier_model_name(tier);
    let id = unit.add_attempt(step_id, tier, model, cfg.orchestrator.attempt_deadline.as_secs_f64());
    let job_id = unit.step(step_id).job_id;
    let from = lead.from;
    unit.event(Event {
        job: job_id,
        step: Some(step_id),
        attempt: lead.attempt,
        kind: lead.event,
        from,
        to: Some(tier),
        reasons: lead.reasons,
        detail: lead.detail,
    });
    unit.event(Event {
        job: job_id,
        step: Some(step_id),
        attempt: Some(id),
        kind: RouteEventKind::Dispatch,
        from,
        to: Some(tier),
        reasons: &[],
        detail: serde_json::json!({ "model": model }),
    });
    unit.queue_task(id, step_id, tier);
    id
}

/// An event about `step` of `job` with no attempt and no tiers; callers set the rest.
fn start_like(job: Uuid, step: Uuid) -> Event<'static> {
    Event {
        job,
        step: Some(step),
        attempt: None,
        kind: RouteEventKind::Start,
        from: None,
        to: None,
        reasons: &[],
        detail: serde_json::Value::Null,
    }
}

/// The result of a job of explicit steps: the last step's output as the
/// answer, every step's output by name, and the findings left open.
pub(crate) fn result(unit: &Unit, job_id: Uuid, defended: bool) -> serde_json::Value {
    let steps: Vec<_> = unit.steps_of(job_id).collect();
    let outputs: serde_json::Map<String, serde_json::Value> = steps
        .iter()
        .map(|s| (s.name.clone(), s.output.clone().unwrap_or_default().into()))
        .collect();
    let open: Vec<serde_json::Value> = steps
        .iter()
        .flat_map(|s| s.open_findings.as_array().cloned().unwrap_or_default())
        .collect();
    let last = steps.last().and_then(|s| s.output.clone());
    serde_json::json!({ "answer": last, "defended": defended, "outputs": outputs, "open_findings": open })
}
