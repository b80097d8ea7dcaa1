//! Offline routing: one item through the same start rule, verifiers and
//! decision code the orchestrator runs live, with recorded answers standing
//! in for the workers. Costs are computed exactly as a worker computes them
//! (estimated tokens × catalog prices), so an offline route and a live one
//! over the same data agree item for item.

use crate::config::{Config, ModelConfig};
use crate::cost::{call_cost, estimate_tokens};
use crate::policy::{AttemptEvidence, Decision, StepRisk, decide_scored, start_tier};
use crate::reasons::ReasonCode;
use crate::types::{BlastRadius, TaskType, Tier};
use crate::verify::{self, Finding};
use serde::Serialize;

/// What a step looks like to the router.
#[derive(Debug, Clone, Copy)]
pub struct SimItem<'a> {
    /// The input text (also the replay lookup key).
    pub input: &'a str,
    /// Task type.
    pub task: TaskType,
    /// Task class.
    pub class: &'a str,
    /// Ambiguity.
    pub ambiguity: f64,
    /// Blast radius.
    pub blast: BlastRadius,
}

/// A recorded answer: the text (empty when the dataset has none) and whether it was right.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Output text.
    pub output: String,
    /// Correctness label.
    pub correct: Option<bool>,
}

/// One simulated attempt.
#[derive(Debug, Clone, Serialize)]
pub struct SimAttempt {
    /// Tier.
    pub tier: Tier,
    /// Catalog model.
    pub model: String,
    /// Recorded correctness.
    pub correct: Option<bool>,
    /// Cost of the call.
    pub cost_usd: f64,
    /// `accept`, `unresolved`, `escalate` or `fail`.
    pub decision: &'static str,
    /// Reason codes of the decision.
    pub reasons: Vec<ReasonCode>,
    /// Defensibility score, when a fitted model judged it.
    pub score: Option<f64>,
    /// Verifier findings.
    pub findings: Vec<Finding>,
}

/// The whole route of one item.
#[derive(Debug, Clone, Serialize)]
pub struct SimRoute {
    /// Start tier.
    pub start: Tier,
    /// Why it started there.
    pub start_reasons: Vec<ReasonCode>,
    /// Attempts in order.
    pub attempts: Vec<SimAttempt>,
    /// Whether the route ended with an answer (accepted, or kept as the best
    /// undefended one); else the step failed.
    pub accepted: bool,
    /// Whether that answer was defended (accepted, not unresolved).
    pub defended: bool,
    /// Whether the accepted answer was right.
    pub correct: bool,
    /// Cost of every call made.
    pub cost_usd: f64,
}

/// Price of answering `input` with `output` on `model`, as a worker prices it.
pub fn call_price(model: &ModelConfig, input: &str, output: &str) -> f64 {
    call_cost(
        estimate_tokens(input),
        estimate_tokens(output),
        model.usd_per_m_in,
        model.usd_per_m_out,
    )
}

/// Routes `item` with `answer(model)` giving each model's recorded answer
/// (`None` = the provider has no answer, a fatal provider error).
pub fn simulate(cfg: &Config, item: SimItem<'_>, answer: impl Fn(&ModelConfig) -> Option<Recorded>) -> SimRoute {
    let risk = StepRisk {
        task: item.task,
        class: item.class,
        ambiguity: item.ambiguity,
        blast: item.blast,
    };
    let start = start_tier(&cfg.routing, risk);
    let verifiers = verify::default_verifiers(item.task, false, false);
    let mut tier = start.tier;
    let mut attempts = Vec::new();
    let mut cost = 0.0;
    loop {
        let model = cfg.tier_model(tier);
        let rec = answer(model);
        let (output, correct, failure) = match &rec {
            Some(r) => (r.output.as_str(), r.correct, None),
            None => ("", None, Some(ReasonCode::ProviderError)),
        };
        let call = if rec.is_some() {
            call_price(model, item.input, output)
        } else {
            0.0
        };
        cost += call;
        let findings = if rec.is_some() {
            verify::run(&verifiers, output, verify::Expect::default())
        } else {
            Vec::new()
        };
        let ev = AttemptEvidence {
            tier,
            class: item.class,
            input: item.input,
            output,
            ambiguity: item.ambiguity,
            findings: &findings,
            confidence: None,
            failure,
            budget_left_usd: None,
            next_call_usd: None,
        };
        let (decision, score) = decide_scored(&cfg.routing, &cfg.tiers, &ev);
        let mut a = SimAttempt {
            tier,
            model: model.name.clone(),
            correct,
            cost_usd: call,
            decision: decision.event().as_str(),
            reasons: Vec::new(),
            score,
            findings: findings.clone(),
        };
        // How the route ends, if it does: (decision, reasons, an answer kept?, defended?).
        let end = match decision {
            Decision::Escalate { to, reasons, .. } => {
                a.reasons = reasons;
                attempts.push(a);
                tier = to;
                continue;
            }
            Decision::Accept { open_findings } => (codes(&open_findings), true, true),
            Decision::Unresolved { findings } => (codes(&findings), true, false),
            Decision::Fail { reasons } => (reasons, false, false),
        };
        let (reasons, accepted, defended) = end;
        a.reasons = reasons;
        attempts.push(a);
        return SimRoute {
            start: start.tier,
            start_reasons: start.reasons,
            attempts,
            accepted,
            defended,
            correct: accepted && correct == Some(true),
            cost_usd: cost,
        };
    }
}

/// The reason codes of `findings`.
fn codes(findings: &[Finding]) -> Vec<ReasonCode> {
    findings.iter().map(|f| f.code).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_small_answer_is_escalated_and_priced_like_a_worker() {
        let cfg = Config::from_toml_over_defaults(crate::config::REPLAY_TOML).unwrap();
        let item = SimItem {
            input: "What is 2+2?",
            task: TaskType::Answer,
            class: "answer",
            ambiguity: 0.1,
            blast: BlastRadius::Low,
        };
        let route = simulate(&cfg, item, |m| {
            Some(Recorded {
                output: if m.name == "gpt-4-1106" {
                    "2 + 2 = 4\n#### 4".into()
                } else {
                    "2 + 2 = 5\n#### 5".into()
                },
                correct: Some(m.name == "gpt-4-1106"),
            })
        });
        let tiers: Vec<Tier> = route.attempts.iter().map(|a| a.tier).collect();
        assert_eq!(tiers, [Tier::Small, Tier::Strong]);
        assert_eq!(route.attempts[0].reasons, [ReasonCode::ArithmeticMismatch]);
        assert!(route.accepted && route.correct);
        let strong = cfg.tier_model(Tier::Strong);
        assert!((route.attempts[1].cost_usd - call_price(strong, item.input, "2 + 2 = 4\n#### 4")).abs() < 1e-15);
    }
}
