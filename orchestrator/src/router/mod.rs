//! The router: turns attempts' results (or missed deadlines) into exactly
//! one decision each — accept, escalate or fail — and records them.
//!
//! A batch of attempts is decided in one transaction ([`settle_batch`]): the
//! jobs they belong to are locked in id order, everything the decisions
//! read is loaded once, and what they write goes out with one statement per
//! table (see [`unit`]). An attempt must still be `dispatched` to be
//! decided; anything else means its result was seen before (a redelivery, a
//! duplicate in the same batch, or another replica), so nothing changes for
//! it. The returned task messages are published after commit.

mod advance;
pub(crate) mod unit;

use crate::error::Result;
use crate::metrics::Observed;
use crate::rag::route::{Critique, RagJob, after_critique, search, stored_retrieval};
use crate::store::{Outgoing, PgStore, parse_stored};
use advance::{advance_job, fail_job};
use sqlx::PgConnection;
use unit::{AttemptUpdate, Lead, Unit};
use upshift_shared::config::Config;
use upshift_shared::cost::estimate_tokens;
use upshift_shared::messages::{AttemptOutcome, ResultMessage};
use upshift_shared::policy::{AttemptEvidence, Decision, decide_scored, escalation_estimate};
use upshift_shared::verify::{self, Finding, VerifierKind};
use upshift_shared::{ReasonCode, TaskType, Tier};
use uuid::Uuid;

/// What arrived for an attempt.
pub enum Evidence<'a> {
    /// A worker's result.
    Result(&'a ResultMessage),
    /// The attempt's deadline passed with no result.
    Timeout,
    /// Its task message exhausted `max_deliver` without a result.
    DeadLettered {
        /// Deliveries made.
        deliveries: u64,
    },
}

/// One attempt to decide.
pub struct Item<'a> {
    /// The attempt.
    pub attempt: Uuid,
    /// What arrived for it.
    pub evidence: Evidence<'a>,
    /// The span the decision is recorded on (`attempt.decide` for results).
    pub span: tracing::Span,
}

/// Decides on `attempt` given `evidence`: a batch of one.
pub async fn settle(store: &PgStore, cfg: &Config, attempt: Uuid, evidence: Evidence<'_>) -> Result<Vec<Outgoing>> {
    let item = Item {
        attempt,
        evidence,
        span: tracing::Span::current(),
    };
    settle_batch(store, cfg, std::slice::from_ref(&item)).await
}

/// Decides on every attempt of `items` in one transaction and returns the
/// task messages to publish once it committed. Idempotent: an attempt
/// decided before (or earlier in the same batch) is left as it is.
pub async fn settle_batch(store: &PgStore, cfg: &Config, items: &[Item<'_>]) -> Result<Vec<Outgoing>> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = items.iter().map(|i| i.attempt).collect();
    let started = std::time::Instant::now();
    let mut tx = store.pool.begin().await?;
    let mut unit = Unit::load(&mut tx, &ids).await?;
    let mut observed = Vec::with_capacity(items.len());
    for item in items {
        if let Some(o) = decide(&mut tx, &mut unit, cfg, item).await? {
            observed.push(o);
        }
    }
    unit.flush(&mut tx, cfg).await?;
    tx.commit().await?;
    let took = started.elapsed();
    for o in &observed {
        crate::metrics::record(o, took);
    }
    Ok(std::mem::take(&mut unit.outgoing))
}

/// What a step is checked against, copied out of the unit.
struct StepFacts {
    task: TaskType,
    task_type: String,
    verifiers: Vec<VerifierKind>,
    schema: Option<serde_json::Value>,
    labels: Vec<String>,
    class: String,
    ambiguity: f64,
    input: String,
    running: bool,
}

impl StepFacts {
    fn of(unit: &Unit, step_id: Uuid) -> StepFacts {
        let s = unit.step(step_id);
        StepFacts {
            task: parse_stored(&s.task_type),
            task_type: s.task_type.clone(),
            verifiers: s
                .verifiers
                .iter()
                .filter_map(|v| serde_json::from_value(serde_json::Value::String(v.clone())).ok())
                .collect(),
            schema: s.output_schema.clone(),
            labels: s.labels.clone(),
            class: s.task_class.clone(),
            ambiguity: s.ambiguity,
            input: s.input.clone(),
            running: s.state == "running",
        }
    }
}

/// Decides one attempt inside the unit. Returns what the metrics record, or
/// `None` when nothing was decided.
async fn decide(tx: &mut PgConnection, unit: &mut Unit, cfg: &Config, item: &Item<'_>) -> Result<Option<Observed>> {
    let (attempt, evidence) = (item.attempt, &item.evidence);
    let Some(a) = unit.attempt(attempt) else {
        tracing::warn!(%attempt, "result for an unknown attempt; ignored");
        return Ok(None);
    };
    let (job_id, step_id, tier): (Uuid, Uuid, Tier) = (a.job_id, a.step_id, parse_stored(&a.tier));
    let late = match (evidence, a.status.as_str()) {
        (_, "dispatched") => false,
        (Evidence::Result(_), "timed_out") if !a.has_result => true,
        _ => return Ok(None), // seen before: nothing to do
    };
    if matches!(evidence, Evidence::Timeout) && !a.overdue {
        return Ok(None);
    }
    let cost = evidence_cost(evidence);
    let job = unit.job(job_id);
    let budget_left = job.budget_usd.map(|b| b - job.cost() - cost);
    let blast = parse_stored(&job.blast_radius);
    let tenant = job.tenant.clone();
    let rag = job.input.as_ref().and_then(|r| RagJob::from_input(&job.kind, r));
    unit.job_mut(job_id).added_cost += cost;
    let step = StepFacts::of(unit, step_id);

    if late || !step.running {
        // The step moved on (timed out, or the job failed): keep the figures, decide nothing.
        unit.update_attempt(step_id, outcome_update(attempt, evidence, late, None));
        let detail = serde_json::json!({});
        unit.event(
            job_id,
            Some(step_id),
            Some(attempt),
            "late_result",
            Some(tier),
            None,
            &[],
            detail,
        );
        return Ok(None);
    }

    let output = match evidence {
        Evidence::Result(ResultMessage {
            outcome: AttemptOutcome::Answered { output, .. },
            ..
        }) => output.as_str(),
        _ => "",
    };
    // What a rag step is checked against: the retrieval a retrieve step's
    // terms find now (searched on this transaction's connection), or the
    // one its job's retrieve step stored.
    let retrieval = match &rag {
        Some(job) if step.task == TaskType::RetrievePlan && matches!(evidence, Evidence::Result(_)) => {
            Some(search(tx, &tenant, job, output).await?)
        }
        Some(_) => stored_retrieval(unit, job_id),
        None => None,
    };
    let rag_expect = rag.as_ref().zip(retrieval.as_ref()).map(|(j, r)| j.expect(r));
    let (findings, confidence, failure) = match evidence {
        Evidence::Timeout => (Vec::new(), None, Some(ReasonCode::Timeout)),
        Evidence::DeadLettered { .. } => (Vec::new(), None, Some(ReasonCode::DeadLettered)),
        Evidence::Result(m) => match &m.outcome {
            AttemptOutcome::Answered { output, confidence, .. } => {
                let expect = verify::Expect {
                    schema: step.schema.as_ref(),
                    labels: &step.labels,
                    rag: rag_expect,
                };
                (verify::run(&step.verifiers, output, expect), *confidence, None)
            }
            AttemptOutcome::Failed { class, .. } => {
                let code = if class == "timeout" {
                    ReasonCode::Timeout
                } else {
                    ReasonCode::ProviderError
                };
                (Vec::new(), None, Some(code))
            }
        },
    };
    // Token counts of this call, or the input's estimate when there are none.
    let tokens = match evidence {
        Evidence::Result(ResultMessage {
            outcome: AttemptOutcome::Answered {
                tokens_in, tokens_out, ..
            },
            ..
        }) => (*tokens_in, *tokens_out),
        _ => (estimate_tokens(&step.input), estimate_tokens(&step.input)),
    };
    let ev = AttemptEvidence {
        tier,
        class: &step.class,
        input: &step.input,
        output,
        ambiguity: step.ambiguity,
        findings: &findings,
        confidence,
        failure,
        budget_left_usd: budget_left,
        next_call_usd: escalation_estimate(cfg, tier, tokens),
    };
    let (decision, score) = decide_scored(&cfg.routing, &cfg.tiers, &ev);
    record_on_span(&item.span, &decision, cost);
    let observed = crate::metrics::Settled {
        tier,
        tenant: &tenant,
        task_type: &step.task_type,
        evidence,
        decision: &decision,
        cost_usd: cost,
    }
    .labels();
    let detail = serde_json::json!({ "findings": findings, "confidence": confidence, "defensibility": score });
    match decision {
        Decision::Accept { open_findings } => {
            let codes: Vec<ReasonCode> = open_findings.iter().map(|f| f.code).collect();
            unit.update_attempt(
                step_id,
                outcome_update(attempt, evidence, false, Some(("accepted", &findings))),
            );
            // A retrieve step's output, for the steps after it, is what its terms found.
            let stored = match (&retrieval, step.task) {
                (Some(r), TaskType::RetrievePlan) => serde_json::to_string(r).expect("retrievals serialise"),
                _ => output.to_string(),
            };
            let s = unit.step_mut(step_id);
            s.state = "accepted".into();
            s.output = Some(stored);
            s.open_findings = serde_json::to_value(&open_findings).expect("findings serialise");
            unit.event(
                job_id,
                Some(step_id),
                Some(attempt),
                "accept",
                Some(tier),
                None,
                &codes,
                detail,
            );
            let reopened = match (&rag, step.task) {
                (Some(_), TaskType::Critique) => {
                    let critique = Critique {
                        step: step_id,
                        attempt,
                        output,
                        budget_left,
                    };
                    after_critique(tx, unit, cfg, job_id, critique).await?
                }
                _ => None,
            };
            if reopened.is_none() {
                advance_job(unit, cfg, job_id, blast, rag.as_ref(), retrieval.as_ref());
            }
        }
        Decision::Escalate { to, reasons, skipped } => {
            let mut detail = detail;
            detail["skipped_tiers"] = serde_json::to_value(&skipped).expect("tiers serialise");
            unit.update_attempt(
                step_id,
                outcome_update(attempt, evidence, false, Some(("escalated", &findings))),
            );
            let lead = Lead {
                event: "escalate",
                attempt: Some(attempt),
                from: Some(tier),
                reasons: &reasons,
                detail,
            };
            unit.dispatch(cfg, step_id, to, lead);
        }
        Decision::Fail { reasons } => {
            unit.update_attempt(
                step_id,
                outcome_update(attempt, evidence, false, Some(("rejected", &findings))),
            );
            unit.step_mut(step_id).state = "failed".into();
            unit.event(
                job_id,
                Some(step_id),
                Some(attempt),
                "fail",
                Some(tier),
                None,
                &reasons,
                detail,
            );
            fail_job(unit, cfg, job_id, step_id, &reasons);
        }
    }
    Ok(Some(observed))
}

/// The price of the call behind `evidence` (0 without an answer).
fn evidence_cost(evidence: &Evidence<'_>) -> f64 {
    match evidence {
        Evidence::Result(ResultMessage {
            outcome: AttemptOutcome::Answered { cost_usd, .. },
            ..
        }) => *cost_usd,
        _ => 0.0,
    }
}

/// The worker's figures for the attempt and, when there is one, the
/// decision's outcome with the verifier findings it rests on.
fn outcome_update(
    attempt: Uuid,
    evidence: &Evidence<'_>,
    late: bool,
    decided: Option<(&'static str, &[Finding])>,
) -> AttemptUpdate {
    let (outcome, findings) = match decided {
        Some((o, f)) => (Some(o), serde_json::to_value(f).expect("findings serialise")),
        None => (None, serde_json::json!([])),
    };
    let base = AttemptUpdate {
        id: attempt,
        outcome,
        findings,
        ..AttemptUpdate::default()
    };
    let m = match evidence {
        Evidence::Result(m) => m,
        Evidence::DeadLettered { deliveries } => {
            return AttemptUpdate {
                status: "failed",
                error: Some(format!("dead_lettered: no result after {deliveries} deliveries")),
                ..base
            };
        }
        Evidence::Timeout => {
            return AttemptUpdate {
                status: "timed_out",
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
            tokens_in,
            tokens_out,
            cost_usd,
            confidence,
            label_correct,
        } => AttemptUpdate {
            status: "answered",
            output: Some(output.clone()),
            tokens_in: Some(*tokens_in as i32),
            tokens_out: Some(*tokens_out as i32),
            cost_usd: Some(*cost_usd),
            confidence: *confidence,
            label_correct: *label_correct,
            ..base
        },
        AttemptOutcome::Failed { class, message } => AttemptUpdate {
            status: "failed",
            error: Some(format!("{class}: {message}")),
            cost_usd: Some(0.0),
            ..base
        },
    };
    if late {
        AttemptUpdate {
            status: "timed_out",
            ..update
        }
    } else {
        update
    }
}

/// Puts the decision on `span` (`attempt.decide` for results).
fn record_on_span(span: &tracing::Span, decision: &Decision, cost: f64) {
    let (name, reasons): (&str, Vec<&str>) = match decision {
        Decision::Accept { open_findings } => ("accept", open_findings.iter().map(|f| f.code.as_str()).collect()),
        Decision::Escalate { reasons, .. } => ("escalate", reasons.iter().map(|r| r.as_str()).collect()),
        Decision::Fail { reasons } => ("fail", reasons.iter().map(|r| r.as_str()).collect()),
    };
    span.record("decision", name);
    span.record("reasons", reasons.join(","));
    span.record("cost_usd", cost);
}
