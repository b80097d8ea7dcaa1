//! Applying a decision to the unit: the attempt's figures and outcome, the
//! step's state and output, the route event, and what follows (the job
//! moves on, the step escalates, or the job fails).

use super::advance::{advance_job, fail_job};
use super::steps::{self, AfterAccept, Lead};
use super::{Decided, Evidence, Open};
use crate::error::Result;
use crate::store::Conn;
use crate::store::unit::{AttemptUpdate, Event, Unit};
use upshift_shared::config::Config;
use upshift_shared::cost::Priced;
use upshift_shared::messages::AttemptOutcome;
use upshift_shared::policy::Decision;
use upshift_shared::verify::Finding;
use upshift_shared::{AttemptStatus, AttemptVerdict, ReasonCode, RouteEventKind, StepState};
use uuid::Uuid;

/// Applies `decision` to the unit.
pub(crate) async fn apply(
    tx: &mut Conn,
    unit: &mut Unit,
    cfg: &Config,
    d: Decided<'_>,
    decision: Decision,
) -> Result<()> {
    let open = d.open;
    let mut detail =
        serde_json::json!({ "findings": d.findings, "confidence": d.confidence, "defensibility": d.score });
    open.kind.annotate(&mut detail, d.step, d.output);
    match decision {
        Decision::Accept { open_findings } => {
            // The kind may see more in an accepted answer: a rag critique
            // that rejects it reruns the answering step a tier up, or (none
            // left) is unresolved.
            let accepted = (open.job_id, open.attempt, d.output, open.budget_left);
            match open.kind.after_accept(tx, unit, cfg, d.step, accepted).await? {
                AfterAccept::Accepted => {
                    keep(unit, &d, StepState::Accepted, &open_findings, detail);
                    advance_job(unit, cfg, open.job_id, &open.kind);
                }
                AfterAccept::Reopen(r) => {
                    keep(unit, &d, StepState::Accepted, &open_findings, detail);
                    super::kind::reopen(unit, cfg, open.job_id, r);
                }
                AfterAccept::Unresolved(findings) => {
                    keep(unit, &d, StepState::Unresolved, &findings, detail);
                    advance_job(unit, cfg, open.job_id, &open.kind);
                }
            }
        }
        Decision::Unresolved { findings } => {
            keep(unit, &d, StepState::Unresolved, &findings, detail);
            advance_job(unit, cfg, open.job_id, &open.kind);
        }
        Decision::Escalate { to, reasons, skipped } => {
            let mut detail = detail;
            detail["skipped_tiers"] = serde_json::to_value(&skipped).expect("tiers serialise");
            unit.update_attempt(
                open.step_id,
                outcome_update(
                    open.attempt,
                    open.evidence,
                    open.priced,
                    false,
                    Some((AttemptVerdict::Escalated, d.findings)),
                ),
            );
            let lead = Lead {
                event: RouteEventKind::Escalate,
                attempt: Some(open.attempt),
                from: Some(open.tier),
                reasons: &reasons,
                detail,
            };
            steps::dispatch(unit, cfg, open.step_id, to, lead);
        }
        Decision::Fail { reasons } => {
            unit.update_attempt(
                open.step_id,
                outcome_update(
                    open.attempt,
                    open.evidence,
                    open.priced,
                    false,
                    Some((AttemptVerdict::Rejected, d.findings)),
                ),
            );
            unit.step_mut(open.step_id).state = StepState::Failed;
            unit.event(Event {
                job: open.job_id,
                step: Some(open.step_id),
                attempt: Some(open.attempt),
                kind: RouteEventKind::Fail,
                from: Some(open.tier),
                to: None,
                reasons: &reasons,
                detail,
            });
            fail_job(unit, cfg, open.job_id, open.step_id, &reasons);
        }
    }
    Ok(())
}

/// Keeps the attempt's answer as the step's output: `accepted` (defended)
/// or `unresolved` (the best answer, undefended), with the findings that
/// stay open, and records the decision event of that name.
fn keep(unit: &mut Unit, d: &Decided<'_>, state: StepState, open_findings: &[Finding], detail: serde_json::Value) {
    let open = d.open;
    let codes: Vec<ReasonCode> = open_findings.iter().map(|f| f.code).collect();
    unit.update_attempt(
        open.step_id,
        outcome_update(
            open.attempt,
            open.evidence,
            open.priced,
            false,
            Some((verdict_of(state), d.findings)),
        ),
    );
    // What the steps after it see: the answer itself, or what its kind
    // keeps instead (a rag retrieval, a critic's verdict).
    let stored = open
        .kind
        .stored_output(d, (state, open_findings), open.tier)
        .unwrap_or_else(|| d.output.to_string());
    let s = unit.step_mut(open.step_id);
    s.state = state;
    s.output = Some(stored);
    s.open_findings = serde_json::to_value(open_findings).expect("findings serialise");
    let kind = if state == StepState::Accepted {
        RouteEventKind::Accept
    } else {
        RouteEventKind::Unresolved
    };
    unit.event(Event {
        job: open.job_id,
        step: Some(open.step_id),
        attempt: Some(open.attempt),
        kind,
        from: Some(open.tier),
        to: None,
        reasons: &codes,
        detail,
    });
}

/// What an attempt's decision is called when its step ends in `state`.
fn verdict_of(state: StepState) -> AttemptVerdict {
    if state == StepState::Accepted {
        AttemptVerdict::Accepted
    } else {
        AttemptVerdict::Unresolved
    }
}

/// Records a result that came too late to decide anything.
pub(crate) fn late_result(unit: &mut Unit, open: &Open<'_>, late: bool) {
    unit.update_attempt(
        open.step_id,
        outcome_update(open.attempt, open.evidence, open.priced, late, None),
    );
    unit.event(Event {
        job: open.job_id,
        step: Some(open.step_id),
        attempt: Some(open.attempt),
        kind: RouteEventKind::LateResult,
        from: Some(open.tier),
        to: None,
        reasons: &[],
        detail: serde_json::json!({}),
    });
}

/// The worker's figures for the attempt (its tokens and cost as
/// `priced` by this orchestrator) and, when there is one, the decision's
/// outcome with the verifier findings it rests on.
fn outcome_update(
    attempt: Uuid,
    evidence: &Evidence<'_>,
    priced: Option<Priced>,
    late: bool,
    decided: Option<(AttemptVerdict, &[Finding])>,
) -> AttemptUpdate {
    let (outcome, findings) = match decided {
        Some((o, f)) => (Some(o), serde_json::to_value(f).expect("findings serialise")),
        None => (None, serde_json::json!([])),
    };
    // The status is set below from the evidence.
    let base = AttemptUpdate {
        outcome,
        findings,
        ..AttemptUpdate::new(attempt, AttemptStatus::Dispatched)
    };
    let m = match evidence {
        Evidence::Result(m) => m,
        Evidence::DeadLettered { deliveries } => {
            return AttemptUpdate {
                status: AttemptStatus::Failed,
                error: Some(format!("dead_lettered: no result after {deliveries} deliveries")),
                ..base
            };
        }
        Evidence::Timeout => {
            return AttemptUpdate {
                status: AttemptStatus::TimedOut,
                ..base
            };
        }
    };
    let base = AttemptUpdate {
        worker_id: Some(m.worker_id.clone()),
        provider: Some(m.provider.clone()),
        latency_ms: Some(m.latency_ms as i64),
        received_at: m.received_at,
        result_sent_at: m.sent_at,
        ..base
    };
    let update = match &m.outcome {
        AttemptOutcome::Answered {
            output,
            confidence,
            label_correct,
            ..
        } => AttemptUpdate {
            status: AttemptStatus::Answered,
            output: Some(output.clone()),
            tokens_in: priced.map(|p| p.tokens_in as i32),
            tokens_out: priced.map(|p| p.tokens_out as i32),
            cost_usd: Some(priced.map_or(0.0, |p| p.cost_usd)),
            confidence: *confidence,
            label_correct: *label_correct,
            ..base
        },
        AttemptOutcome::Failed { class, message } => AttemptUpdate {
            status: AttemptStatus::Failed,
            error: Some(format!("{class}: {message}")),
            cost_usd: Some(0.0),
            ..base
        },
    };
    if late {
        AttemptUpdate {
            status: AttemptStatus::TimedOut,
            ..update
        }
    } else {
        update
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use upshift_shared::messages::ResultMessage;

    #[test]
    fn failed_calls_cost_nothing_and_late_answers_are_marked_timed_out() {
        let failed = ResultMessage {
            version: upshift_shared::messages::MESSAGE_VERSION,
            attempt_id: Uuid::nil(),
            attempt_token: Uuid::nil(),
            job_id: Uuid::nil(),
            step_id: Uuid::nil(),
            tier: upshift_shared::Tier::Small,
            worker_id: "w".into(),
            provider: "replay".into(),
            model: "m".into(),
            latency_ms: 5,
            received_at: None,
            sent_at: None,
            outcome: AttemptOutcome::Failed {
                class: "fatal".into(),
                message: "no".into(),
            },
        };
        let u = outcome_update(
            Uuid::nil(),
            &Evidence::Result(&failed),
            None,
            false,
            Some((AttemptVerdict::Escalated, &[])),
        );
        assert_eq!(
            (u.status, u.cost_usd, u.outcome),
            (AttemptStatus::Failed, Some(0.0), Some(AttemptVerdict::Escalated))
        );
        let u = outcome_update(Uuid::nil(), &Evidence::Result(&failed), None, true, None);
        assert_eq!(u.status, AttemptStatus::TimedOut);
    }
}
