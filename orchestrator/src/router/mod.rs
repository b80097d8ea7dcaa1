//! The router: turns an attempt's result (or its missed deadline) into exactly
//! one decision — accept, escalate or fail — and records it.
//!
//! Each call is one transaction that locks the job, then the step, then the
//! attempt. The attempt must still be `dispatched`; anything else means the
//! result was seen before (a redelivery or another replica), so the call
//! changes nothing. The returned ids are attempts to publish after commit.

mod advance;

use crate::error::Result;
use crate::rag::route::RagJob;
use crate::store::{Lead, PgStore, dispatch, parse_stored};
use advance::{advance_job, event, fail_job};
use sqlx::PgConnection;
use upshift_shared::config::Config;
use upshift_shared::cost::estimate_tokens;
use upshift_shared::messages::{AttemptOutcome, ResultMessage};
use upshift_shared::policy::{AttemptEvidence, Decision, decide_scored, escalation_estimate};
use upshift_shared::verify::{self, Finding, VerifierKind};
use upshift_shared::{ReasonCode, TaskType, Tier};
use uuid::Uuid;

/// The attempt's ids, its status, its job's kind and (for rag jobs) request,
/// the tenant and the step's task type.
type Head = (Uuid, Uuid, String, String, Option<serde_json::Value>, String, String);

/// The step's verifiers, output schema, state, task class, ambiguity, input
/// and labels; the attempt's status, tier, whether it has a result, and
/// whether its deadline has passed.
type StepFacts = (
    Vec<String>,
    Option<serde_json::Value>,
    String,
    String,
    f64,
    String,
    Vec<String>,
    String,
    String,
    bool,
    bool,
);

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

/// Decides on `attempt` given `evidence`. Idempotent: a second call for the
/// same attempt returns no attempts and writes nothing.
pub async fn settle(store: &PgStore, cfg: &Config, attempt: Uuid, evidence: Evidence<'_>) -> Result<Vec<Uuid>> {
    let mut tx = store.pool.begin().await?;
    let Some((job_id, step_id, status, kind, request, tenant, task_type)) = sqlx::query_as::<_, Head>(
        "SELECT a.job_id, a.step_id, a.status, j.kind, CASE WHEN j.kind = 'rag' THEN j.input END, j.tenant, s.task_type
         FROM attempts a JOIN jobs j ON j.id = a.job_id JOIN steps s ON s.id = a.step_id WHERE a.id = $1",
    )
    .bind(attempt)
    .fetch_optional(&mut *tx)
    .await?
    else {
        tracing::warn!(%attempt, "result for an unknown attempt; ignored");
        return Ok(Vec::new());
    };
    let rag = request.as_ref().and_then(|r| RagJob::from_input(&kind, r));
    let task: TaskType = parse_stored(&task_type);
    // A retrieve step's answer is search terms: run the search before taking
    // any lock, so the decision sees what the terms retrieve. The read-only
    // transaction is ended first, so a settle never holds one pooled
    // connection while waiting for another.
    let searched = match (&rag, &evidence) {
        (
            Some(job),
            Evidence::Result(ResultMessage {
                outcome: AttemptOutcome::Answered { output, .. },
                ..
            }),
        ) if task == TaskType::RetrievePlan && status == "dispatched" => {
            tx.rollback().await?;
            let found = crate::rag::route::search(store, &tenant, job, output).await?;
            tx = store.pool.begin().await?;
            Some(found)
        }
        _ => None,
    };
    let started = std::time::Instant::now();
    // Locks the job and adds the call's cost in one statement; when the
    // attempt turns out to be decided already, the transaction is dropped
    // (rolled back) and the cost with it.
    let cost = evidence_cost(&evidence);
    let (blast, budget, job_cost): (String, Option<f64>, f64) = sqlx::query_as(
        "UPDATE jobs SET cost_usd = cost_usd + $2 WHERE id = $1 RETURNING blast_radius, budget_usd, cost_usd - $2",
    )
    .bind(job_id)
    .bind(cost)
    .fetch_one(&mut *tx)
    .await?;
    // The step and the attempt, locked by one statement (after the job).
    let (verifiers, schema, step_state, class, ambiguity, input, labels, status, tier, has_result, overdue): StepFacts =
        sqlx::query_as(
            "SELECT s.verifiers, s.output_schema, s.state, s.task_class, s.ambiguity, s.input, s.labels,
                    a.status, a.tier, (a.output IS NOT NULL OR a.error IS NOT NULL), a.deadline < now()
             FROM steps s JOIN attempts a ON a.step_id = s.id
             WHERE s.id = $1 AND a.id = $2 FOR UPDATE",
        )
        .bind(step_id)
        .bind(attempt)
        .fetch_one(&mut *tx)
        .await?;
    let tier: Tier = parse_stored(&tier);

    let late = match (&evidence, status.as_str()) {
        (_, "dispatched") => false,
        (Evidence::Result(_), "timed_out") if !has_result => true,
        _ => return Ok(Vec::new()), // seen before: nothing to do
    };
    if matches!(evidence, Evidence::Timeout) && !overdue {
        return Ok(Vec::new());
    }

    if late || step_state != "running" {
        record_outcome(&mut tx, attempt, &evidence, late, None).await?;
        // The step moved on (timed out, or the job failed): keep the figures, decide nothing.
        event(
            &mut tx,
            cfg,
            job_id,
            step_id,
            attempt,
            "late_result",
            Some(tier),
            None,
            &[],
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        return Ok(Vec::new());
    }

    let verifiers: Vec<VerifierKind> = verifiers
        .iter()
        .filter_map(|v| serde_json::from_value(serde_json::Value::String(v.clone())).ok())
        .collect();
    // What a rag step is checked against: the retrieval it just ran, or the
    // one its job's retrieve step stored.
    let retrieval = match (&rag, searched) {
        (_, Some(r)) => Some(r),
        (Some(_), None) => crate::rag::route::load_retrieval(&mut tx, job_id).await?,
        (None, None) => None,
    };
    let rag_expect = rag.as_ref().zip(retrieval.as_ref()).map(|(j, r)| j.expect(r));
    let (findings, confidence, failure) = match &evidence {
        Evidence::Timeout => (Vec::new(), None, Some(ReasonCode::Timeout)),
        Evidence::DeadLettered { .. } => (Vec::new(), None, Some(ReasonCode::DeadLettered)),
        Evidence::Result(m) => match &m.outcome {
            AttemptOutcome::Answered { output, confidence, .. } => {
                let expect = verify::Expect {
                    schema: schema.as_ref(),
                    labels: &labels,
                    rag: rag_expect,
                };
                (verify::run(&verifiers, output, expect), *confidence, None)
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
    let output = match &evidence {
        Evidence::Result(ResultMessage {
            outcome: AttemptOutcome::Answered { output, .. },
            ..
        }) => output.as_str(),
        _ => "",
    };
    // Token counts of this call, or the input's estimate when there are none.
    let tokens = match &evidence {
        Evidence::Result(ResultMessage {
            outcome: AttemptOutcome::Answered {
                tokens_in, tokens_out, ..
            },
            ..
        }) => (*tokens_in, *tokens_out),
        _ => (estimate_tokens(&input), estimate_tokens(&input)),
    };
    let ev = AttemptEvidence {
        tier,
        class: &class,
        input: &input,
        output,
        ambiguity,
        findings: &findings,
        confidence,
        failure,
        budget_left_usd: budget.map(|b| b - job_cost - cost),
        next_call_usd: escalation_estimate(cfg, tier, tokens),
    };
    let (decision, score) = decide_scored(&cfg.routing, &cfg.tiers, &ev);
    record_on_span(&decision, cost);
    let observed = crate::metrics::Settled {
        tier,
        tenant: &tenant,
        task_type: &task_type,
        evidence: &evidence,
        decision: &decision,
        cost_usd: cost,
    };
    let observed = observed.labels();
    let detail = serde_json::json!({ "findings": findings, "confidence": confidence, "defensibility": score });
    let mut publish = Vec::new();
    match decision {
        Decision::Accept { open_findings } => {
            let codes: Vec<ReasonCode> = open_findings.iter().map(|f| f.code).collect();
            record_outcome(&mut tx, attempt, &evidence, false, Some(("accepted", &findings))).await?;
            // A retrieve step's output, for the steps after it, is what its terms found.
            let stored = match (&retrieval, task) {
                (Some(r), TaskType::RetrievePlan) => serde_json::to_string(r).expect("retrievals serialise"),
                _ => output.to_string(),
            };
            sqlx::query("UPDATE steps SET state = 'accepted', output = $2, open_findings = $3 WHERE id = $1")
                .bind(step_id)
                .bind(&stored)
                .bind(serde_json::to_value(&open_findings).expect("findings serialise"))
                .execute(&mut *tx)
                .await?;
            event(
                &mut tx,
                cfg,
                job_id,
                step_id,
                attempt,
                "accept",
                Some(tier),
                None,
                &codes,
                detail,
            )
            .await?;
            let reopened = match (&rag, task) {
                (Some(_), TaskType::Critique) => {
                    let left = budget.map(|b| b - job_cost - cost);
                    crate::rag::route::after_critique(&mut tx, cfg, job_id, step_id, attempt, output, left).await?
                }
                _ => None,
            };
            publish = match reopened {
                Some(a) => vec![a],
                None => {
                    advance_job(
                        &mut tx,
                        cfg,
                        job_id,
                        parse_stored(&blast),
                        rag.as_ref(),
                        retrieval.as_ref(),
                    )
                    .await?
                }
            };
        }
        Decision::Escalate { to, reasons, skipped } => {
            let mut detail = detail;
            detail["skipped_tiers"] = serde_json::to_value(&skipped).expect("tiers serialise");
            record_outcome(&mut tx, attempt, &evidence, false, Some(("escalated", &findings))).await?;
            let lead = Lead {
                event: "escalate",
                attempt: Some(attempt),
                from: Some(tier),
                reasons: &reasons,
                detail,
            };
            publish.push(dispatch(&mut tx, cfg, job_id, step_id, to, lead).await?);
        }
        Decision::Fail { reasons } => {
            record_outcome(&mut tx, attempt, &evidence, false, Some(("rejected", &findings))).await?;
            sqlx::query("UPDATE steps SET state = 'failed' WHERE id = $1")
                .bind(step_id)
                .execute(&mut *tx)
                .await?;
            event(
                &mut tx,
                cfg,
                job_id,
                step_id,
                attempt,
                "fail",
                Some(tier),
                None,
                &reasons,
                detail,
            )
            .await?;
            fail_job(&mut tx, cfg, job_id, step_id, &reasons).await?;
        }
    }
    tx.commit().await?;
    crate::metrics::record(&observed, started.elapsed());
    Ok(publish)
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

/// Writes the worker's figures onto the attempt and, when there is one, the
/// decision's outcome with the verifier findings it rests on: one statement.
async fn record_outcome(
    tx: &mut PgConnection,
    attempt: Uuid,
    evidence: &Evidence<'_>,
    late: bool,
    decided: Option<(&str, &[Finding])>,
) -> Result<()> {
    let (outcome, findings) = match decided {
        Some((o, f)) => (Some(o), serde_json::to_value(f).expect("findings serialise")),
        None => (None, serde_json::json!([])),
    };
    let m = match evidence {
        Evidence::Result(m) => m,
        Evidence::Timeout | Evidence::DeadLettered { .. } => {
            let (status, error) = match evidence {
                Evidence::DeadLettered { deliveries } => (
                    "failed",
                    Some(format!("dead_lettered: no result after {deliveries} deliveries")),
                ),
                _ => ("timed_out", None),
            };
            sqlx::query(
                "UPDATE attempts SET status = $2, completed_at = now(), error = coalesce($3, error),
                        outcome = $4, findings = $5
                 WHERE id = $1",
            )
            .bind(attempt)
            .bind(status)
            .bind(error)
            .bind(outcome)
            .bind(findings)
            .execute(&mut *tx)
            .await?;
            return Ok(());
        }
    };
    let (status, output, error, tin, tout, cost, conf, label) = match &m.outcome {
        AttemptOutcome::Answered {
            output,
            tokens_in,
            tokens_out,
            cost_usd,
            confidence,
            label_correct,
        } => (
            "answered",
            Some(output.as_str()),
            None,
            Some(*tokens_in as i32),
            Some(*tokens_out as i32),
            *cost_usd,
            *confidence,
            *label_correct,
        ),
        AttemptOutcome::Failed { class, message } => (
            "failed",
            None,
            Some(format!("{class}: {message}")),
            None,
            None,
            0.0,
            None,
            None,
        ),
    };
    let status = if late { "timed_out" } else { status };
    sqlx::query(
        "UPDATE attempts SET status = $2, completed_at = now(), worker_id = $3, provider = $4, output = $5,
                error = $6, tokens_in = $7, tokens_out = $8, cost_usd = $9, latency_ms = $10,
                received_at = $13, result_sent_at = $14,
                confidence = $11, label_correct = $12, outcome = $15, findings = $16
         WHERE id = $1",
    )
    .bind(attempt)
    .bind(status)
    .bind(&m.worker_id)
    .bind(&m.provider)
    .bind(output)
    .bind(error)
    .bind(tin)
    .bind(tout)
    .bind(cost)
    .bind(m.latency_ms as i64)
    .bind(conf)
    .bind(label)
    .bind(m.received_at)
    .bind(m.sent_at)
    .bind(outcome)
    .bind(findings)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Puts the decision on the current span (`attempt.decide` for results).
fn record_on_span(decision: &Decision, cost: f64) {
    let span = tracing::Span::current();
    let (name, reasons): (&str, Vec<&str>) = match decision {
        Decision::Accept { open_findings } => ("accept", open_findings.iter().map(|f| f.code.as_str()).collect()),
        Decision::Escalate { reasons, .. } => ("escalate", reasons.iter().map(|r| r.as_str()).collect()),
        Decision::Fail { reasons } => ("fail", reasons.iter().map(|r| r.as_str()).collect()),
    };
    span.record("decision", name);
    span.record("reasons", reasons.join(","));
    span.record("cost_usd", cost);
}
