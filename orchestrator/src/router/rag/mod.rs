//! What the router does differently for the steps of a `rag` job: search
//! again when a model rewrote the question, hand the retrieval to the
//! verifiers, and re-run the answering step when the critique rejects it.

pub(crate) mod start;

use super::steps::{self, AfterAccept, Lead, Reopen};
use super::{Decided, StepFacts};
use crate::collections::Retriever;
use crate::error::{Error, Result};
use crate::rag::result::{Done, Outcome};
use crate::rag::{CRITIQUE, EXTRACT, RETRIEVE, SYNTHESISE};
use crate::request::JobRequest;
use crate::store::unit::Unit;
use crate::store::{Conn, PgStore};
use upshift_shared::TaskType;
use upshift_shared::config::{AnswerMode, Config};
use upshift_shared::policy::{StepRisk, first_useful_tier, start_tier};
use upshift_shared::verify::rag::{Retrieval, RetrievalFloor, SpanFloors, Verdict, check_retrieval};
use upshift_shared::verify::{Finding, RagExpect};
use upshift_shared::{ReasonCode, RouteEventKind, StepState, Tier};
use uuid::Uuid;

/// The question and collection of a `rag` job, from its stored request.
#[derive(Debug, Clone)]
pub struct RagJob {
    /// The question.
    pub query: String,
    /// The collection searched.
    pub collection: String,
}

impl RagJob {
    /// Reads them from a rag job's stored request (`jobs.input`).
    pub fn from_input(input: &serde_json::Value) -> RagJob {
        RagJob {
            query: input["query"].as_str().unwrap_or_default().trim().to_string(),
            collection: input["collection"].as_str().unwrap_or_default().to_string(),
        }
    }

    /// What the verifiers check a step against.
    pub fn expect<'a>(&'a self, retrieval: &'a Retrieval, cfg: &Config) -> RagExpect<'a> {
        RagExpect {
            query: &self.query,
            retrieval,
            floor: RetrievalFloor::from(&cfg.rag),
            span: SpanFloors::from(&cfg.rag),
        }
    }
}

/// At submission: the collection must exist (else the request names the
/// field), and the question itself is searched before any model runs
/// (tier zero).
pub(crate) async fn at_submit(
    store: &PgStore,
    retriever: &Retriever,
    tenant: &str,
    req: &JobRequest,
) -> Result<Retrieval> {
    let c = req.collection.as_deref().unwrap_or_default();
    if !store.collection_exists(tenant, c).await? {
        return Err(Error::invalid(
            "collection",
            format!("no collection `{c}`; ingest documents into it first"),
        ));
    }
    let mut conn = store.acquire().await?;
    let query = req.query.as_deref().unwrap_or_default().trim();
    retriever.retrieve(&mut conn, tenant, c, query, None).await
}

/// Admits the retrieve step `id` from the search done at submission: when
/// it clears its floor the step is accepted without a model; when it
/// misses, it escalates to a model that rewrites the question (or, with no
/// tier trusted for its class, ends unresolved).
pub(crate) fn admit_retrieve(unit: &mut Unit, cfg: &Config, id: Uuid, class: &str, risk: StepRisk<'_>, r: &Retrieval) {
    let detail = serde_json::json!({
        "by": "search", "mode": r.mode, "passages": r.results().count(),
        "definitions": r.definitions().count(), "best_similarity": r.best_similarity(),
    });
    let output = || serde_json::to_string(r).expect("retrievals serialise");
    match check_retrieval(r, RetrievalFloor::from(&cfg.rag)) {
        None => steps::accept_without_model(unit, id, output(), detail),
        Some(miss) => {
            let tier = start_tier(&cfg.routing, risk).tier;
            match first_useful_tier(&cfg.routing, tier, class) {
                Some(tier) => {
                    steps::escalate_from_zero(unit, cfg, id, tier, &[miss], detail);
                }
                None => steps::unresolved_without_model(unit, id, output(), &[miss], detail),
            }
        }
    }
}

/// Whether a step that decides the answer (the retrieval, the step
/// choosing the answer, or the synthesis) ended unresolved: without
/// defended evidence (or a defended choice) there is nothing for the later
/// steps to defend. Generated facts left undefended still go to the
/// synthesis, which reads the passages themselves.
pub(crate) fn undefended(unit: &Unit, cfg: &Config, job_id: Uuid) -> bool {
    let deciding = |name: &str| {
        name == RETRIEVE || name == SYNTHESISE || (name == EXTRACT && cfg.rag.answer == AnswerMode::Extractive)
    };
    unit.steps_of(job_id)
        .any(|s| s.state == StepState::Unresolved && deciding(&s.name))
}

/// What a decision's event carries for a rag step: the critic's verdict
/// beside how sure it was, or the span an extraction chose (what trusting
/// each is measured on).
pub(crate) fn annotate(detail: &mut serde_json::Value, step: &StepFacts, output: &str) {
    if step.task == TaskType::Critique {
        detail["verdict"] = serde_json::json!(Verdict::parse(output).map(|v| v.verdict));
    }
    if !step.labels.is_empty() && step.task == TaskType::Extract {
        // Labels are short: the span, kept with its confidence.
        detail["answer"] = output.chars().take(300).collect::<String>().into();
    }
}

/// What an accepted answer leads to: a critique's verdict may reopen the
/// answering step or leave the critique unresolved; anything else is
/// accepted. `accepted` is (job, attempt, output, budget left).
pub(crate) async fn after_accept(
    tx: &mut Conn,
    unit: &Unit,
    cfg: &Config,
    step: &StepFacts,
    (job_id, attempt, output, budget_left): (Uuid, Uuid, &str, Option<f64>),
) -> Result<AfterAccept> {
    if step.name != CRITIQUE {
        return Ok(AfterAccept::Accepted);
    }
    Ok(
        match after_critique(tx, unit, cfg, job_id, attempt, output, budget_left).await? {
            AfterCritique::Supported => AfterAccept::Accepted,
            AfterCritique::Reopen(r) => AfterAccept::Reopen(r),
            AfterCritique::Unresolved(f) => AfterAccept::Unresolved(f),
        },
    )
}

/// What a decided rag step keeps when it is not the answer itself: a
/// retrieve step its search, a critique its verdict with its confidence,
/// and an extraction no tier could defend against the evidence the
/// candidate tier zero ranks first (right more often than any local
/// model's on the dev questions).
pub(crate) fn stored_output(d: &Decided<'_>, state: StepState, open: &[Finding], tier: Tier) -> Option<String> {
    let disagrees = open.iter().any(|f| f.code == ReasonCode::EvidenceDisagrees);
    match (d.retrieval, d.step.task) {
        (Some(r), TaskType::RetrievePlan) => Some(serde_json::to_string(r).expect("retrievals serialise")),
        (_, TaskType::Critique) => Some(stored_verdict(d.output, d.confidence, tier)),
        (_, TaskType::Extract) if disagrees && state == StepState::Unresolved && !d.step.labels.is_empty() => {
            Some(d.step.labels[0].clone())
        }
        _ => None,
    }
}

/// The finished job's result document (`crate::rag::result`).
pub(crate) fn result(unit: &Unit, job: &RagJob, job_id: Uuid, defended: bool, always_strong: f64) -> serde_json::Value {
    let done: Vec<Done<'_>> = unit
        .steps_of(job_id)
        .map(|s| Done {
            name: &s.name,
            state: s.state,
            output: s.output.as_deref().unwrap_or_default(),
            open_findings: &s.open_findings,
        })
        .collect();
    crate::rag::result::result(&Outcome {
        query: &job.query,
        steps: &done,
        defended,
        cost_usd: unit.job(job_id).cost(),
        always_strong_cost_usd: always_strong,
    })
}

/// Searches again for a retrieve step whose model rewrote the question:
/// the question and the rewrite, fused (on the decision's connection).
pub async fn research(
    conn: &mut Conn,
    retriever: &Retriever,
    tenant: &str,
    job: &RagJob,
    rewrite: &str,
) -> Result<Retrieval> {
    retriever
        .retrieve(conn, tenant, &job.collection, &job.query, Some(rewrite))
        .await
}

/// The retrieval the job's retrieve step stored, once it is done.
pub(crate) fn stored_retrieval(unit: &Unit, job_id: Uuid) -> Option<Retrieval> {
    let step = unit.steps_of(job_id).find(|s| s.name == RETRIEVE)?;
    step.output.as_deref().and_then(Retrieval::parse)
}

/// The step whose model decides the answer: extraction in extractive
/// mode, synthesis in generative mode.
pub(crate) fn answerer(cfg: &Config) -> &'static str {
    match cfg.rag.answer {
        AnswerMode::Extractive => EXTRACT,
        AnswerMode::Generative => SYNTHESISE,
    }
}

/// The tier below `t` (the small tier stays small).
pub(crate) fn below(t: Tier) -> Tier {
    Tier::ALL.iter().copied().rev().find(|x| *x < t).unwrap_or(Tier::Small)
}

/// A critique's accepted output as stored: its verdict with the confidence
/// and tier it was given at, so the result can say how sure the critic was.
pub(crate) fn stored_verdict(output: &str, confidence: Option<f64>, tier: Tier) -> String {
    let v = Verdict::parse(output);
    serde_json::json!({
        "verdict": v.as_ref().map_or("unsupported", |v| v.verdict.as_str()),
        "reason": v.as_ref().map_or("", |v| v.reason.as_str()),
        "confidence": confidence,
        "tier": tier,
    })
    .to_string()
}

/// What an accepted critique's verdict leads to.
enum AfterCritique {
    /// It supports the answer.
    Supported,
    /// It rejects the answer: the answering step runs again one tier up.
    Reopen(Reopen),
    /// It rejects the answer and no tier is left (or no budget): the
    /// critique ends unresolved with these findings.
    Unresolved(Vec<Finding>),
}

/// What a critique's `output` (accepted on `attempt`) leads to: when it
/// rejects the answer, the answering step can run again one tier up if
/// there is one and the budget left (`budget_left`) pays for it.
async fn after_critique(
    tx: &mut Conn,
    unit: &Unit,
    cfg: &Config,
    job_id: Uuid,
    attempt: Uuid,
    output: &str,
    budget_left: Option<f64>,
) -> Result<AfterCritique> {
    let Some(v) = Verdict::parse(output).filter(Verdict::rejects) else {
        return Ok(AfterCritique::Supported);
    };
    let name = answerer(cfg);
    let reason = if v.reason.trim().is_empty() {
        "the critic rejected the answer".to_string()
    } else {
        v.reason.trim().to_string()
    };
    if cfg.rag.answer == AnswerMode::Extractive {
        // An extraction is defended only as tier zero's first-ranked candidate
        // (a model must agree with it): asking another tier cannot give a
        // different defended answer.
        return Ok(AfterCritique::Unresolved(vec![Finding::new(
            ReasonCode::CritiqueRejected,
            format!("{reason}; no other answer from this evidence can be defended"),
        )]));
    }
    let Some(answering) = unit.steps_of(job_id).find(|s| s.name == name) else {
        return Ok(AfterCritique::Unresolved(vec![Finding::new(
            ReasonCode::CritiqueRejected,
            reason,
        )]));
    };
    let (answering, tier) = (answering.id, answering.current_tier);
    let tokens = Unit::accepted_tokens(tx, answering).await?;
    let from: Tier = tier.unwrap_or(Tier::Strong);
    let (tin, tout) = tokens.unwrap_or((0, 0));
    let estimate = upshift_shared::policy::escalation_estimate(cfg, from, (tin as u32, tout as u32));
    let affordable = upshift_shared::policy::affordable(budget_left, estimate);
    match from.next().filter(|_| affordable) {
        Some(to) => Ok(AfterCritique::Reopen(Reopen {
            answering,
            from,
            to,
            reason,
            critique_attempt: attempt,
        })),
        None => {
            let why = if from.next().is_none() {
                format!("the {name} step is already on the top tier")
            } else {
                format!("the budget does not allow another {name} attempt")
            };
            let mut open = vec![Finding::new(ReasonCode::CritiqueRejected, format!("{reason}; {why}"))];
            if !affordable {
                open.push(Finding::new(ReasonCode::BudgetExhausted, why));
            }
            Ok(AfterCritique::Unresolved(open))
        }
    }
}

/// Re-dispatches the answering step one tier up (`critique_rejected`) and
/// puts the steps after it back to pending; they run again once it is
/// decided.
pub(crate) fn reopen(unit: &mut Unit, cfg: &Config, job_id: Uuid, r: Reopen) {
    let name = answerer(cfg);
    let later: Vec<Uuid> = unit
        .steps_of(job_id)
        .filter(|s| s.name == CRITIQUE || (name == EXTRACT && s.name == SYNTHESISE))
        .map(|s| s.id)
        .collect();
    for id in later {
        let s = unit.step_mut(id);
        s.state = StepState::Pending;
        s.output = None;
        s.open_findings = serde_json::json!([]);
    }
    let lead = Lead {
        event: RouteEventKind::Escalate,
        attempt: None,
        from: Some(r.from),
        reasons: &[ReasonCode::CritiqueRejected],
        detail: serde_json::json!({ "critique_attempt": r.critique_attempt, "reason": r.reason }),
    };
    steps::dispatch(unit, cfg, r.answering, r.to, lead);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_critic_sits_below_and_its_verdict_keeps_its_confidence() {
        assert_eq!(below(Tier::Strong), Tier::Medium);
        assert_eq!(below(Tier::Medium), Tier::Small);
        assert_eq!(below(Tier::Small), Tier::Small);
        let v: serde_json::Value = serde_json::from_str(&stored_verdict("supported", Some(0.93), Tier::Small)).unwrap();
        assert_eq!(v["verdict"], "supported");
        assert_eq!(v["confidence"], 0.93);
        assert_eq!(v["tier"], "small");
        assert!(!Verdict::parse(&v.to_string()).unwrap().rejects());
    }
}
