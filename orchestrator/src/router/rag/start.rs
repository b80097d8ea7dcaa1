//! How the steps of a rag job after retrieval start: their ambiguity comes
//! from what was retrieved. In extractive mode the extraction first takes the
//! best-ranked candidate without a model (tier zero), defended when its
//! evidence score reaches the fitted threshold, else a model chooses among
//! the candidate spans (its labels, best-ranked first); the synthesis is
//! composed without a model when the composed answer passes its verifiers;
//! the critique
//! starts one tier below the model that decided the answer, on the lowest
//! tier whose critic is trusted (and does not run when none is).

use super::super::steps::StepStart;
use super::{RagJob, answerer, below};
use crate::rag::{CRITIQUE, EXTRACT, SYNTHESISE};
use crate::store::unit::Unit;
use upshift_shared::config::{AnswerMode, Config, CritiqueMode};
use upshift_shared::policy::{StartDecision, first_useful_tier};
use upshift_shared::verify::rag::extractive::judge::contributions;
use upshift_shared::verify::rag::extractive::{compose, tier_zero};
use upshift_shared::verify::rag::{Retrieval, ambiguity};
use upshift_shared::verify::{self, Finding, VerifierKind};
use upshift_shared::{ReasonCode, Tier};
use uuid::Uuid;

/// Prepares the start of rag step `step_id` of `job`, given its retrieval.
pub(crate) fn prepare(
    unit: &mut Unit,
    cfg: &Config,
    job: &RagJob,
    retrieval: Option<&Retrieval>,
    step_id: Uuid,
) -> StepStart {
    let step = unit.step(step_id);
    let (name, base, job_id) = (step.name.clone(), step.ambiguity, step.job_id);
    let verifiers: Vec<VerifierKind> = step.verifiers.clone();
    let Some(r) = retrieval else {
        return StepStart::Model {
            ambiguity: base,
            parts: serde_json::Value::Null,
            forced: None,
        };
    };
    let (a, parts) = ambiguity(&job.query, r, base);
    unit.step_mut(step_id).ambiguity = a;
    let extractive = cfg.rag.answer == AnswerMode::Extractive;
    match name.as_str() {
        EXTRACT if extractive => {
            let zero = tier_zero(&job.query, r, &cfg.rag.zero_rank, &cfg.rag.zero_score);
            let askable = zero.askable();
            // The verifiers' findings apart from tier zero's own gate: what
            // its threshold is measured on.
            let detail = serde_json::json!({
                "answer": zero.answer, "similarity": zero.similarity, "span_findings": zero.span_findings,
                "margin": zero.margin, "candidates": zero.candidates.len(),
                "features": zero.features.map(|x| x.named()), "score": zero.score,
                "contributions": zero.features.map(|x| contributions(&cfg.rag.zero_score, &x)),
                "threshold": zero.threshold, "fitted": cfg.rag.zero_score.fitted,
                "scores": zero.ranked.iter().map(|c| c.score).collect::<Vec<_>>(),
            });
            unit.step_mut(step_id).labels = zero.candidates;
            return StepStart::Zero {
                output: zero.answer,
                findings: zero.findings,
                by: "rank",
                detail,
                ambiguity: a,
                parts,
                askable,
            };
        }
        SYNTHESISE if extractive => {
            let span = output_of(unit, job_id, EXTRACT).unwrap_or_default();
            let (output, findings) = match compose(&job.query, &span, r) {
                Some(answer) => {
                    let expect = verify::Expect {
                        schema: None,
                        labels: &[],
                        rag: Some(job.expect(r, cfg)),
                        input: None,
                    };
                    let findings = verify::run(&verifiers, &answer, expect);
                    (answer, findings)
                }
                None => (
                    String::new(),
                    vec![Finding::new(
                        ReasonCode::CitationMissing,
                        format!("the chosen `{span}` is in no retrieved sentence"),
                    )],
                ),
            };
            return StepStart::Zero {
                output,
                findings,
                by: "compose",
                detail: serde_json::Value::Null,
                ambiguity: a,
                parts,
                askable: true,
            };
        }
        CRITIQUE => {
            let answering = unit
                .steps_of(job_id)
                .find(|s| s.name == answerer(cfg))
                .and_then(|s| s.current_tier);
            let lowest = below(answering.unwrap_or(Tier::Small));
            let class = unit.step(step_id).task_class.clone();
            let tier = match cfg.rag.critique {
                CritiqueMode::Always => Some(Tier::Small),
                CritiqueMode::Trusted => first_useful_tier(&cfg.routing, lowest, &class),
            };
            let Some(tier) = tier else {
                // No tier's critic is measured to be worth trusting: its
                // verdict would count for nothing, so it does not run.
                let output = serde_json::json!({
                    "verdict": "not_run",
                    "reason": "no tier's critic is trusted (routing.accept.<tier>.by_class.rag_critique)",
                })
                .to_string();
                return StepStart::Zero {
                    output,
                    findings: Vec::new(),
                    by: "policy",
                    detail: serde_json::Value::Null,
                    ambiguity: a,
                    parts,
                    askable: true,
                };
            };
            return StepStart::Model {
                ambiguity: a,
                parts,
                forced: Some(StartDecision {
                    tier,
                    reasons: vec![ReasonCode::RiskRule],
                    rule: None,
                }),
            };
        }
        _ => {}
    }
    StepStart::Model {
        ambiguity: a,
        parts,
        forced: None,
    }
}

/// The stored output of job `job_id`'s step `name`.
fn output_of(unit: &Unit, job_id: Uuid, name: &str) -> Option<String> {
    unit.steps_of(job_id).find(|s| s.name == name)?.output.clone()
}
