//! What the router does differently for the steps of a `rag` job: search
//! again when a model rewrote the question, hand the retrieval to the
//! verifiers, and re-run the answering step when the critique rejects it.

pub(crate) mod start;

use super::steps::{self, Lead};
use crate::collections::Retriever;
use crate::error::Result;
use crate::rag::{CRITIQUE, EXTRACT, RETRIEVE, SYNTHESISE};
use crate::store::Conn as PgConnection;
use crate::store::unit::Unit;
use upshift_shared::JobKind;
use upshift_shared::config::{AnswerMode, Config};
use upshift_shared::verify::rag::{Retrieval, RetrievalFloor, SpanFloors, Verdict};
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
    /// Reads them from `jobs.input`; `None` for other kinds of job.
    pub fn from_input(kind: JobKind, input: &serde_json::Value) -> Option<RagJob> {
        (kind == JobKind::Rag).then(|| RagJob {
            query: input["query"].as_str().unwrap_or_default().trim().to_string(),
            collection: input["collection"].as_str().unwrap_or_default().to_string(),
        })
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

/// Searches again for a retrieve step whose model rewrote the question:
/// the question and the rewrite, fused (on the decision's connection).
pub async fn research(
    conn: &mut PgConnection,
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
pub(crate) enum AfterCritique {
    /// It supports the answer.
    Supported,
    /// It rejects the answer: the answering step runs again one tier up.
    Reopen(Reopen),
    /// It rejects the answer and no tier is left (or no budget): the
    /// critique ends unresolved with these findings.
    Unresolved(Vec<Finding>),
}

/// Re-running the answering step after a rejection.
pub(crate) struct Reopen {
    answering: Uuid,
    from: Tier,
    to: Tier,
    reason: String,
    critique_attempt: Uuid,
}

/// What a critique's `output` (accepted on `attempt`) leads to: when it
/// rejects the answer, the answering step can run again one tier up if
/// there is one and the budget left (`budget_left`) pays for it.
pub(crate) async fn after_critique(
    tx: &mut PgConnection,
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
        // An extraction is defended only as the evidence's own first choice
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
