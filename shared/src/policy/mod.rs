//! The routing policy: where a step starts, and what happens after an attempt.
//!
//! Both functions are pure. The orchestrator calls them inside the transaction
//! that records the decision; offline tools call them over recorded outputs.

mod ambiguity;
mod defensibility;

pub use ambiguity::estimate_ambiguity;
pub use defensibility::features;
// The `[routing]` section's types live with the rest of the configuration
// (`config::routing`); they are the policy's input, re-exported here.
pub use crate::config::routing::{
    AcceptModel, AcceptRule, ClassCalibration, FEATURES, RoutingConfig, StartRule, TopTierAction,
};
pub use crate::stats::sigmoid;

use crate::config::TierModels;
use crate::reasons::ReasonCode;
use crate::types::{BlastRadius, TaskType, Tier};
use crate::verify::Finding;

/// A confidence threshold of this value is never met: the answer is not
/// trusted whatever its confidence.
pub const NEVER_TRUSTED: f64 = 1.0;

/// The confidence an answer of `class` on `tier` needs (0 without a rule).
pub fn min_confidence(cfg: &RoutingConfig, tier: Tier, class: &str) -> f64 {
    cfg.accept
        .get(&tier)
        .map_or(0.0, |r| r.by_class.get(class).copied().unwrap_or(r.min_confidence))
}

/// Whether `confidence` meets `threshold` ([`NEVER_TRUSTED`] is never met).
pub fn confident_enough(confidence: f64, threshold: f64) -> bool {
    threshold < NEVER_TRUSTED && confidence >= threshold
}

/// Where a step starts and why.
#[derive(Debug, Clone, PartialEq)]
pub struct StartDecision {
    /// The start tier.
    pub tier: Tier,
    /// `high_blast_radius` or `risk_rule`.
    pub reasons: Vec<ReasonCode>,
    /// Index of the matching rule; `None` means the default tier.
    pub rule: Option<usize>,
}

/// What the start rules look at.
#[derive(Debug, Clone, Copy)]
pub struct StepRisk<'a> {
    /// Task type.
    pub task: TaskType,
    /// Task class (defaults to the task type's name).
    pub class: &'a str,
    /// Ambiguity in [0, 1].
    pub ambiguity: f64,
    /// The job's blast radius.
    pub blast: BlastRadius,
}

/// Picks the start tier: the first rule whose conditions all hold.
pub fn start_tier(cfg: &RoutingConfig, risk: StepRisk<'_>) -> StartDecision {
    let StepRisk {
        task,
        class,
        ambiguity,
        blast,
    } = risk;
    for (i, rule) in cfg.start_rules.iter().enumerate() {
        let blast_ok = rule.blast_radius.as_ref().is_none_or(|b| b.contains(&blast));
        let task_ok = rule.tasks.as_ref().is_none_or(|t| t.contains(&task));
        let class_ok = rule.classes.as_ref().is_none_or(|c| c.iter().any(|k| k == class));
        let amb_ok = rule.max_ambiguity.is_none_or(|m| ambiguity < m);
        if blast_ok && task_ok && class_ok && amb_ok {
            let reason = if rule.blast_radius.is_some() && blast == BlastRadius::High {
                ReasonCode::HighBlastRadius
            } else {
                ReasonCode::RiskRule
            };
            return StartDecision {
                tier: rule.tier,
                reasons: vec![reason],
                rule: Some(i),
            };
        }
    }
    StartDecision {
        tier: cfg.default_tier,
        reasons: vec![ReasonCode::RiskRule],
        rule: None,
    }
}

/// What the router knows after an attempt.
#[derive(Debug, Clone)]
pub struct AttemptEvidence<'a> {
    /// Tier of the attempt.
    pub tier: Tier,
    /// Task class of the step.
    pub class: &'a str,
    /// The step's input.
    pub input: &'a str,
    /// The answer (empty when there is none).
    pub output: &'a str,
    /// The step's ambiguity.
    pub ambiguity: f64,
    /// Verifier findings (empty = all passed). Ignored when `failure` is set.
    pub findings: &'a [Finding],
    /// Provider confidence, if any.
    pub confidence: Option<f64>,
    /// Set when there is no answer: provider error, timeout or dead letter.
    pub failure: Option<ReasonCode>,
    /// Budget left for the job after this attempt; `None` = no budget.
    pub budget_left_usd: Option<f64>,
    /// Estimated price of the escalation's call (see [`escalation_estimate`]).
    pub next_call_usd: Option<f64>,
}

/// Estimated price of escalating from `from`: the next distinct tier's prices
/// applied to this attempt's token counts, as `(tokens_in, tokens_out)`.
pub fn escalation_estimate(cfg: &crate::config::Config, from: Tier, tokens: (u32, u32)) -> Option<f64> {
    let (to, _) = next_distinct_tier(&cfg.tiers, from)?;
    let m = cfg.tier_model(to);
    Some(crate::cost::call_cost(
        tokens.0,
        tokens.1,
        m.usd_per_m_in,
        m.usd_per_m_out,
    ))
}

/// The router's verdict on an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The answer is defended: accept it. `open_findings` is non-empty only
    /// when a fitted defensibility model defended it despite them.
    Accept {
        /// Findings the fitted model weighed and accepted.
        open_findings: Vec<Finding>,
    },
    /// No tier can defend the answer (the top tier still has findings, or
    /// the budget does not allow the next one): the step ends `unresolved`,
    /// keeping this answer as its best, undefended one.
    Unresolved {
        /// Why the answer is not defended.
        findings: Vec<Finding>,
    },
    /// Publish a new attempt on `to`.
    Escalate {
        /// The next tier.
        to: Tier,
        /// Why the attempt was not accepted.
        reasons: Vec<ReasonCode>,
        /// Tiers passed over because they serve the same model as the one
        /// that just failed (they would repeat its answer).
        skipped: Vec<Tier>,
    },
    /// Fail the step.
    Fail {
        /// Why.
        reasons: Vec<ReasonCode>,
    },
}

impl Decision {
    /// The route event that records it: the one mapping from a decision to
    /// its name, used by the router, its spans and metrics, and the
    /// simulator.
    pub fn event(&self) -> crate::RouteEventKind {
        use crate::RouteEventKind as K;
        match self {
            Decision::Accept { .. } => K::Accept,
            Decision::Unresolved { .. } => K::Unresolved,
            Decision::Escalate { .. } => K::Escalate,
            Decision::Fail { .. } => K::Fail,
        }
    }

    /// Its reason codes: the open findings of an accept or an unresolved
    /// answer, the reasons of an escalation or a failure.
    pub fn reason_codes(&self) -> Vec<&'static str> {
        match self {
            Decision::Accept { open_findings: f } | Decision::Unresolved { findings: f } => {
                f.iter().map(|f| f.code.as_str()).collect()
            }
            Decision::Escalate { reasons, .. } | Decision::Fail { reasons } => {
                reasons.iter().map(|r| r.as_str()).collect()
            }
        }
    }
}

/// The fitted model judging answers of `tier` for `class`, if any.
pub fn accept_model<'c>(cfg: &'c RoutingConfig, tier: Tier, class: &str) -> Option<&'c AcceptModel> {
    cfg.accept_models.iter().find(|m| m.tier == tier && m.covers(class))
}

/// The defensibility score of an answer, when a fitted model covers it.
pub fn defensibility(cfg: &RoutingConfig, ev: &AttemptEvidence<'_>) -> Option<f64> {
    let m = accept_model(cfg, ev.tier, ev.class)?;
    Some(m.score(&features(ev.input, ev.output, ev.findings, ev.confidence, ev.ambiguity)))
}

/// Decides accept / escalate / fail for one attempt.
///
/// With a fitted model for the tier and class, the answer is accepted when
/// its defensibility score reaches the model's threshold (findings below it
/// stay attached as open findings); otherwise every finding and a confidence
/// under the tier's `min_confidence` reject it.
pub fn decide(cfg: &RoutingConfig, models: &TierModels, ev: &AttemptEvidence<'_>) -> Decision {
    decide_scored(cfg, models, ev).0
}

/// [`decide`], also returning the defensibility score it used (computed once).
pub fn decide_scored(cfg: &RoutingConfig, models: &TierModels, ev: &AttemptEvidence<'_>) -> (Decision, Option<f64>) {
    let score = defensibility(cfg, ev);
    (decide_with(cfg, models, ev, score), score)
}

fn decide_with(cfg: &RoutingConfig, models: &TierModels, ev: &AttemptEvidence<'_>, score: Option<f64>) -> Decision {
    let mut reasons: Vec<ReasonCode> = Vec::new();
    if let Some(f) = ev.failure {
        reasons.push(f);
    } else {
        let model = accept_model(cfg, ev.tier, ev.class);
        let defended = match (model, score) {
            (Some(m), Some(s)) => s >= m.threshold,
            _ => ev.findings.is_empty(),
        };
        if defended && model.is_some() {
            return Decision::Accept {
                open_findings: ev.findings.to_vec(),
            };
        }
        for f in ev.findings {
            if !reasons.contains(&f.code) {
                reasons.push(f.code);
            }
        }
        if model.is_some() {
            reasons.push(ReasonCode::LowDefensibility);
        } else {
            let threshold = min_confidence(cfg, ev.tier, ev.class);
            let trusted = match ev.confidence {
                Some(c) => confident_enough(c, threshold),
                // No signal: only an untrusted class is held back.
                None => threshold < NEVER_TRUSTED,
            };
            if !trusted {
                reasons.push(ReasonCode::LowConfidence);
            }
        }
    }
    if reasons.is_empty() {
        return Decision::Accept {
            open_findings: Vec::new(),
        };
    }
    let next = next_useful_tier(cfg, models, ev.tier, ev.class);
    let budget_gone = !affordable(ev.budget_left_usd, ev.next_call_usd);
    match next {
        Some((to, skipped)) if !budget_gone => Decision::Escalate { to, reasons, skipped },
        _ => {
            if budget_gone && next.is_some() {
                reasons.push(ReasonCode::BudgetExhausted);
            }
            match (cfg.at_top_tier, ev.failure) {
                // With no answer at all there is nothing to accept.
                (TopTierAction::Unresolved, None) => {
                    let mut findings = ev.findings.to_vec();
                    // Reasons without a verifier finding behind them (low
                    // confidence, a fitted model's low score) are findings too.
                    for r in &reasons {
                        if !findings.iter().any(|f| f.code == *r) && *r != ReasonCode::BudgetExhausted {
                            findings.push(Finding::new(*r, reason_detail(*r, ev, cfg)));
                        }
                    }
                    if budget_gone && next.is_some() {
                        let detail = format!(
                            "budget left ${:.6} does not cover the next call (about ${:.6})",
                            ev.budget_left_usd.unwrap_or(0.0),
                            ev.next_call_usd.unwrap_or(0.0)
                        );
                        findings.push(Finding::new(ReasonCode::BudgetExhausted, detail));
                    }
                    Decision::Unresolved { findings }
                }
                _ => Decision::Fail { reasons },
            }
        }
    }
}

/// What a reason without a verifier finding means for this attempt.
fn reason_detail(r: ReasonCode, ev: &AttemptEvidence<'_>, cfg: &RoutingConfig) -> String {
    match r {
        ReasonCode::LowConfidence => format!(
            "confidence {:.3} is under the {} tier's threshold {:.3}",
            ev.confidence.unwrap_or(0.0),
            ev.tier,
            min_confidence(cfg, ev.tier, ev.class)
        ),
        ReasonCode::LowDefensibility => "the fitted defensibility model scored the answer under its threshold".into(),
        other => other.as_str().to_string(),
    }
}

/// The next tier up that could accept an answer of `class`: its model
/// differs from `from`'s (the same model would repeat the answer) and the
/// class is trusted there at all (a threshold of [`NEVER_TRUSTED`] never
/// accepts, so calling it would only cost). Also the tiers passed over.
pub fn next_useful_tier(
    cfg: &RoutingConfig,
    models: &TierModels,
    from: Tier,
    class: &str,
) -> Option<(Tier, Vec<Tier>)> {
    let mut skipped = Vec::new();
    let mut from_model = from;
    loop {
        let (to, mut passed) = next_distinct_tier(models, from_model)?;
        skipped.append(&mut passed);
        if min_confidence(cfg, to, class) < NEVER_TRUSTED {
            return Some((to, skipped));
        }
        skipped.push(to);
        from_model = to;
    }
}

/// The lowest tier from `from` up where `class` is trusted at all.
pub fn first_useful_tier(cfg: &RoutingConfig, from: Tier, class: &str) -> Option<Tier> {
    Tier::ALL
        .iter()
        .copied()
        .filter(|t| *t >= from)
        .find(|t| min_confidence(cfg, *t, class) < NEVER_TRUSTED)
}

/// The next tier up whose model differs from `from`'s, and the tiers passed
/// over because they serve the same model (they would repeat the answer).
pub fn next_distinct_tier(models: &TierModels, from: Tier) -> Option<(Tier, Vec<Tier>)> {
    let mut skipped = Vec::new();
    let mut t = from.next();
    while let Some(tier) = t {
        if models.get(tier) != models.get(from) {
            return Some((tier, skipped));
        }
        skipped.push(tier);
        t = tier.next();
    }
    None
}

impl TierModels {
    /// The model name serving `tier` (resolved when the config was loaded).
    pub fn get(&self, tier: Tier) -> &str {
        let choice = match tier {
            Tier::Small => &self.small,
            Tier::Medium => &self.medium,
            Tier::Strong => &self.strong,
        };
        choice.names().first().map_or("", String::as_str)
    }
}

/// The one budget rule: another call is affordable unless the job has a
/// budget and what is left of it is gone (≤ 0) or below the call's
/// estimated cost (`next_call_usd`; unknown counts as free). Every
/// escalation, and a critique's reopening of an answer, asks this.
pub fn affordable(budget_left_usd: Option<f64>, next_call_usd: Option<f64>) -> bool {
    !budget_left_usd.is_some_and(|b| b <= 0.0 || b < next_call_usd.unwrap_or(0.0))
}

#[cfg(test)]
mod tests;
