//! The router: turns attempts' results (or missed deadlines) into exactly
//! one decision each — accept, unresolved, escalate or fail — and records
//! them.
//!
//! A batch of attempts is decided in one transaction ([`settle_batch`]): the
//! jobs they belong to are locked in id order, everything the decisions
//! read is loaded once, and what they write goes out with one statement per
//! table (see [`unit`]). An attempt must still be `dispatched` to be
//! decided; anything else means its result was seen before (a redelivery, a
//! duplicate in the same batch, or another replica), so nothing changes for
//! it. The returned task messages are published after commit.
//!
//! One decision ([`decide`]) runs in stages: find the attempt and whether
//! it is still open; gather what the step is checked against (the rag
//! retrieval, searched again when a model rewrote the question); run the
//! verifiers; ask the policy; apply the verdict.

mod admit;
mod advance;
mod apply;
mod kind;
mod observe;
mod rag;
mod steps;

pub(crate) use admit::{Submission, submit};
pub(crate) use kind::Kind;

use crate::collections::Retriever;
use crate::error::Result;
use crate::store::Conn;
use crate::store::unit::Unit;
use crate::store::{Outgoing, PgStore};
use apply::late_result;
use observe::Observed;
use upshift_shared::config::Config;
use upshift_shared::cost::{Priced, estimate_tokens, price};
use upshift_shared::messages::{AttemptOutcome, ResultMessage};
use upshift_shared::policy::{AttemptEvidence, decide_scored, escalation_estimate};
use upshift_shared::verify::rag::Retrieval;
use upshift_shared::verify::{self, Finding, VerifierKind};
use upshift_shared::{AttemptStatus, ErrorClass, ReasonCode, StepState, TaskType, Tier};
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

/// Decides on `attempt` given `evidence` without a result (a missed
/// deadline, a dead letter): a batch of one. No search runs for such
/// evidence, so no retriever is needed.
pub async fn settle(store: &PgStore, cfg: &Config, attempt: Uuid, evidence: Evidence<'_>) -> Result<Vec<Outgoing>> {
    debug_assert!(
        !matches!(evidence, Evidence::Result(_)),
        "results go through settle_batch"
    );
    let item = Item {
        attempt,
        evidence,
        span: tracing::Span::current(),
    };
    let retriever = Retriever::with(None, cfg.rag.clone());
    settle_batch(store, cfg, &retriever, std::slice::from_ref(&item)).await
}

/// Decides on every attempt of `items` in one transaction and returns the
/// task messages to publish once it committed. Idempotent: an attempt
/// decided before (or earlier in the same batch) is left as it is.
pub async fn settle_batch(
    store: &PgStore,
    cfg: &Config,
    retriever: &Retriever,
    items: &[Item<'_>],
) -> Result<Vec<Outgoing>> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = items.iter().map(|i| i.attempt).collect();
    let started = std::time::Instant::now();
    let mut tx = store.begin().await?;
    let mut unit = Unit::load(&mut tx, &ids).await?;
    let mut observed = Vec::with_capacity(items.len());
    for item in items {
        if let Some(o) = decide(&mut tx, &mut unit, cfg, retriever, item).await? {
            observed.push(o);
        }
    }
    let finished = unit.finished();
    unit.flush(&mut tx, cfg).await?;
    tx.commit().await?;
    let took = started.elapsed();
    for o in &observed {
        observe::record(o, took);
    }
    observe::jobs_finished(&finished);
    Ok(std::mem::take(&mut unit.outgoing))
}

/// What a step is checked against, copied out of the unit.
pub(crate) struct StepFacts {
    pub(crate) task: TaskType,
    pub(crate) name: String,
    pub(crate) verifiers: Vec<VerifierKind>,
    pub(crate) schema: Option<serde_json::Value>,
    pub(crate) labels: Vec<String>,
    pub(crate) class: String,
    pub(crate) ambiguity: f64,
    pub(crate) input: String,
}

impl StepFacts {
    fn of(unit: &Unit, step_id: Uuid) -> StepFacts {
        let s = unit.step(step_id);
        StepFacts {
            task: s.task_type,
            name: s.name.clone(),
            verifiers: s.verifiers.clone(),
            schema: s.output_schema.clone(),
            labels: s.labels.clone(),
            class: s.task_class.clone(),
            ambiguity: s.ambiguity,
            input: s.input.clone(),
        }
    }
}

/// Everything a decision was taken on.
pub(crate) struct Decided<'a> {
    pub(crate) open: &'a Open<'a>,
    pub(crate) step: &'a StepFacts,
    pub(crate) output: &'a str,
    pub(crate) findings: &'a [Finding],
    pub(crate) confidence: Option<f64>,
    pub(crate) score: Option<f64>,
    pub(crate) retrieval: Option<&'a Retrieval>,
}

/// The open attempt an item is about, as the decision needs it.
pub(crate) struct Open<'a> {
    pub(crate) attempt: Uuid,
    pub(crate) job_id: Uuid,
    pub(crate) step_id: Uuid,
    pub(crate) tier: Tier,
    pub(crate) evidence: &'a Evidence<'a>,
    /// The call's price as booked, with the tokens it was priced on
    /// (`None` without an answer).
    pub(crate) priced: Option<Priced>,
    /// `priced`'s dollars (0 without an answer).
    pub(crate) cost: f64,
    /// The job's budget left after this call, when it has one.
    pub(crate) budget_left: Option<f64>,
    pub(crate) tenant: String,
    /// The job's kind, with what it read from the stored request.
    pub(crate) kind: Kind,
}

/// Stage 1: the attempt `item` is about, if it is still open, with the
/// price this orchestrator books for it. A result for an attempt decided
/// before changes nothing; one that arrives after its deadline (or after
/// its step moved on) is recorded as `late_result`. A result that does not
/// carry its attempt's token, or names another job, step or tier, is set
/// aside undecided: it is not this attempt's answer.
fn open_attempt<'a>(unit: &mut Unit, cfg: &Config, item: &'a Item<'a>) -> Option<Open<'a>> {
    let (attempt, evidence) = (item.attempt, &item.evidence);
    let Some(a) = unit.attempt(attempt) else {
        if let Evidence::Result(m) = evidence {
            set_aside(unit, m, "a result for an attempt that does not exist");
        }
        return None;
    };
    let (job_id, step_id, tier) = (a.job_id, a.step_id, a.tier);
    if let Evidence::Result(m) = evidence {
        if a.token != Some(m.attempt_token) {
            set_aside(unit, m, "a result without its attempt's token");
            return None;
        }
        if (m.job_id, m.step_id, m.tier) != (job_id, step_id, tier) {
            set_aside(unit, m, "a result whose job, step or tier is not its attempt's");
            return None;
        }
    }
    let late = match (evidence, a.status) {
        (_, AttemptStatus::Dispatched) => false,
        (Evidence::Result(_), AttemptStatus::TimedOut) if !a.has_result => true,
        _ => return None, // seen before: nothing to do
    };
    if matches!(evidence, Evidence::Timeout) && !a.overdue {
        return None;
    }
    let job = unit.job(job_id);
    let left = job.budget_usd.map(|b| b - job.cost());
    let priced = evidence_price(unit, cfg, &a.model, step_id, tier, evidence, left);
    let cost = priced.map_or(0.0, |p| p.cost_usd);
    let job = unit.job(job_id);
    let open = Open {
        attempt,
        job_id,
        step_id,
        tier,
        evidence,
        priced,
        cost,
        budget_left: left.map(|l| l - cost),
        tenant: job.tenant.clone(),
        kind: Kind::of(job.kind, job.input.as_ref()),
    };
    unit.job_mut(job_id).added_cost += cost;
    if late || unit.step(step_id).state != StepState::Running {
        // The step moved on (timed out, or the job ended): keep the figures, decide nothing.
        late_result(unit, &open, late);
        return None;
    }
    Some(open)
}

/// The price booked for the call behind `evidence` (`None` without an
/// answer): the tokens the worker reports, clipped to what the call could
/// have used, times this orchestrator's prices for the model, at most what
/// the job has `left`. The worker's own cost figure is not read.
fn evidence_price(
    unit: &Unit,
    cfg: &Config,
    dispatched: &str,
    step_id: Uuid,
    tier: Tier,
    evidence: &Evidence<'_>,
    left: Option<f64>,
) -> Option<Priced> {
    let Evidence::Result(m) = evidence else { return None };
    let AttemptOutcome::Answered {
        output,
        tokens_in,
        tokens_out,
        ..
    } = &m.outcome
    else {
        return None;
    };
    let model = if cfg.model(&m.model).is_some() {
        cfg.pricing_model(tier, &m.model)
    } else {
        cfg.model(dispatched).unwrap_or_else(|| cfg.tier_model(tier))
    };
    let caps = model.token_caps(unit.prompt_bytes(step_id), output.len());
    let priced = price(
        (*tokens_in, *tokens_out),
        caps,
        model.usd_per_m_in,
        model.usd_per_m_out,
        left,
    );
    if priced.capped {
        tracing::warn!(attempt = %m.attempt_id, model = %model.name, reported_in = tokens_in, reported_out = tokens_out,
            booked_usd = priced.cost_usd, "a result's usage is more than the call could use or the job has left; booked capped");
    }
    Some(priced)
}

/// Keeps result `m` in `dead_letters` with `why` instead of deciding it.
fn set_aside(unit: &mut Unit, m: &ResultMessage, why: &str) {
    tracing::warn!(attempt = %m.attempt_id, job = %m.job_id, "{why}; set aside");
    let payload = serde_json::to_string(m).unwrap_or_default();
    unit.set_aside(m.attempt_id, why.to_string(), payload);
}

/// The answer text of `evidence` ("" without one).
fn output_of<'a>(evidence: &'a Evidence<'a>) -> &'a str {
    match evidence {
        Evidence::Result(ResultMessage {
            outcome: AttemptOutcome::Answered { output, .. },
            ..
        }) => output.as_str(),
        _ => "",
    }
}

/// Stage 2: what the step is checked against besides its answer, as its
/// job's kind says (a rag job's retrieval: the one a retrieve step's
/// rewrite finds now, on this transaction's connection, or the stored one).
async fn retrieval_for(
    tx: &mut Conn,
    unit: &Unit,
    retriever: &Retriever,
    open: &Open<'_>,
    step: &StepFacts,
) -> Result<Option<Retrieval>> {
    let rewrite = (open.kind.searches_again(step.task) && matches!(open.evidence, Evidence::Result(_)))
        .then(|| output_of(open.evidence));
    open.kind
        .evidence(tx, retriever, unit, (&open.tenant, open.job_id), rewrite)
        .await
}

/// Stage 3: the verifiers' findings, the provider's confidence, and the
/// failure when there is no answer.
fn examine(
    cfg: &Config,
    open: &Open<'_>,
    step: &StepFacts,
    retrieval: Option<&Retrieval>,
) -> (Vec<Finding>, Option<f64>, Option<ReasonCode>) {
    match open.evidence {
        Evidence::Timeout => (Vec::new(), None, Some(ReasonCode::Timeout)),
        Evidence::DeadLettered { .. } => (Vec::new(), None, Some(ReasonCode::DeadLettered)),
        Evidence::Result(m) => match &m.outcome {
            AttemptOutcome::Answered { output, confidence, .. } => {
                let expect = verify::Expect {
                    schema: step.schema.as_ref(),
                    labels: &step.labels,
                    rag: open.kind.expect(retrieval, cfg),
                    input: Some(&step.input),
                };
                (verify::run(&step.verifiers, output, expect), *confidence, None)
            }
            AttemptOutcome::Failed { class, .. } => {
                let code = if class.parse() == Ok(ErrorClass::Timeout) {
                    ReasonCode::Timeout
                } else {
                    ReasonCode::ProviderError
                };
                (Vec::new(), None, Some(code))
            }
        },
    }
}

/// Decides one attempt inside the unit. Returns what the metrics record, or
/// `None` when nothing was decided.
async fn decide(
    tx: &mut Conn,
    unit: &mut Unit,
    cfg: &Config,
    retriever: &Retriever,
    item: &Item<'_>,
) -> Result<Option<Observed>> {
    let Some(open) = open_attempt(unit, cfg, item) else {
        return Ok(None);
    };
    let step = StepFacts::of(unit, open.step_id);
    let retrieval = retrieval_for(tx, unit, retriever, &open, &step).await?;
    let (findings, confidence, failure) = examine(cfg, &open, &step, retrieval.as_ref());
    let output = output_of(open.evidence);
    // Token counts of this call as booked, or the input's estimate when there are none.
    let tokens = match open.priced {
        Some(p) => (p.tokens_in, p.tokens_out),
        None => (estimate_tokens(&step.input), estimate_tokens(&step.input)),
    };
    let ev = AttemptEvidence {
        tier: open.tier,
        class: &step.class,
        input: &step.input,
        output,
        ambiguity: step.ambiguity,
        findings: &findings,
        confidence,
        failure,
        budget_left_usd: open.budget_left,
        next_call_usd: escalation_estimate(cfg, open.tier, tokens),
    };
    let (decision, score) = decide_scored(&cfg.routing, &cfg.tiers, &ev);
    record_on_span(&item.span, &decision, open.cost);
    let observed = observe::Settled {
        tier: open.tier,
        tenant: &open.tenant,
        task_type: step.task.as_str(),
        evidence: open.evidence,
        decision: &decision,
        cost_usd: open.cost,
    }
    .labels();
    let decided = Decided {
        open: &open,
        step: &step,
        output,
        findings: &findings,
        confidence,
        score,
        retrieval: retrieval.as_ref(),
    };
    apply::apply(tx, unit, cfg, decided, decision).await?;
    Ok(Some(observed))
}

/// Puts the decision on `span` (`attempt.decide` for results).
fn record_on_span(span: &tracing::Span, decision: &upshift_shared::policy::Decision, cost: f64) {
    span.record("decision", decision.event().as_str());
    span.record("reasons", decision.reason_codes().join(","));
    span.record("cost_usd", cost);
}
