//! The defensibility score: a small logistic model that turns verifier
//! findings and response features into a calibrated probability that the
//! answer is right. Its weights and threshold live in the policy file
//! (`[[routing.accept_models]]`), written by `upshift policy fit`.
//!
//! Features, each roughly in [0, 1]:
//! - `bias`: always 1;
//! - `answer_format`, `arithmetic_mismatch`, `schema_invalid`: number of
//!   findings of that code, capped at 3, divided by 3;
//! - `no_marker`: 1 when the output has no explicit `####` final answer;
//! - `log_length`: ln(1 + characters) / 8;
//! - `computations`: stated computations (annotations and prose), capped at 10, / 10;
//! - `hedges`: hedging phrases ("approximately", "I think", "assume", …), capped at 3, / 3;
//! - `ambiguity`: the step's ambiguity;
//! - `confidence`, `has_confidence`: the provider's confidence (0 when absent) and whether it exists.

use crate::reasons::ReasonCode;
use crate::verify::{Finding, count_computations};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The feature names, in a fixed order.
pub const FEATURES: &[&str] = &[
    "bias",
    "answer_format",
    "arithmetic_mismatch",
    "schema_invalid",
    "no_marker",
    "log_length",
    "computations",
    "hedges",
    "ambiguity",
    "confidence",
    "has_confidence",
];

const HEDGES: &[&str] = &[
    "approximately",
    "i think",
    "assume",
    "not sure",
    "unclear",
    "roughly",
    "cannot",
    "probably",
];

/// Feature vector of one answer, in [`FEATURES`] order.
pub fn features(output: &str, findings: &[Finding], confidence: Option<f64>, ambiguity: f64) -> Vec<f64> {
    let count = |code: ReasonCode| (findings.iter().filter(|f| f.code == code).count().min(3) as f64) / 3.0;
    let lower = output.to_lowercase();
    let hedges = HEDGES.iter().map(|h| lower.matches(h).count()).sum::<usize>().min(3) as f64 / 3.0;
    vec![
        1.0,
        count(ReasonCode::AnswerFormat),
        count(ReasonCode::ArithmeticMismatch),
        count(ReasonCode::SchemaInvalid),
        if output.contains("####") { 0.0 } else { 1.0 },
        (1.0 + output.chars().count() as f64).ln() / 8.0,
        count_computations(output).min(10) as f64 / 10.0,
        hedges,
        ambiguity,
        confidence.unwrap_or(0.0),
        if confidence.is_some() { 1.0 } else { 0.0 },
    ]
}

/// A fitted acceptance model for one tier and a set of task classes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptModel {
    /// The tier whose answers it judges.
    pub tier: crate::Tier,
    /// Task classes it applies to; absent = every class.
    #[serde(default)]
    pub classes: Option<Vec<String>>,
    /// Accept when the score is at or above this.
    pub threshold: f64,
    /// Weight per feature name (see [`FEATURES`]); missing names weigh 0.
    pub weights: BTreeMap<String, f64>,
}

impl AcceptModel {
    /// Probability in (0, 1) that the answer is right.
    pub fn score(&self, x: &[f64]) -> f64 {
        let z: f64 = FEATURES
            .iter()
            .zip(x)
            .map(|(name, v)| self.weights.get(*name).copied().unwrap_or(0.0) * v)
            .sum();
        sigmoid(z)
    }

    /// Whether it applies to `class`.
    pub fn covers(&self, class: &str) -> bool {
        self.classes.as_ref().is_none_or(|c| c.iter().any(|k| k == class))
    }

    /// Whether the score can depend on the answer (not just the bias): a model
    /// that cannot is better applied before the call, as a start tier.
    pub fn reads_output(&self) -> bool {
        self.weights
            .iter()
            .any(|(k, w)| k != "bias" && k != "ambiguity" && *w != 0.0)
    }

    /// Checks names and ranges; the error is `(key, reason)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if !(0.0..=1.0).contains(&self.threshold) {
            return Err(("threshold".into(), "must be in [0, 1]".into()));
        }
        for (k, w) in &self.weights {
            if !FEATURES.contains(&k.as_str()) {
                return Err((
                    format!("weights.{k}"),
                    format!("unknown feature (known: {})", FEATURES.join(", ")),
                ));
            }
            if !w.is_finite() {
                return Err((format!("weights.{k}"), "must be a finite number".into()));
            }
        }
        Ok(())
    }
}

/// The logistic function.
pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_and_scores() {
        let f = features("3 + 4 = 7\n#### 7", &[], None, 0.2);
        assert_eq!(f.len(), FEATURES.len());
        assert_eq!((f[0], f[4], f[6]), (1.0, 0.0, 0.1));
        let bad = [Finding::new(ReasonCode::ArithmeticMismatch, "x")];
        let g = features("3 + 4 = 8", &bad, Some(0.5), 0.2);
        assert!((g[2] - 1.0 / 3.0).abs() < 1e-12 && g[4] == 1.0 && g[10] == 1.0);
        let m = AcceptModel {
            tier: crate::Tier::Small,
            classes: None,
            threshold: 0.5,
            weights: [("bias".to_string(), 1.0), ("arithmetic_mismatch".to_string(), -6.0)].into(),
        };
        assert!(m.score(&f) > 0.7 && m.score(&g) < 0.5);
        assert!(m.reads_output() && m.covers("anything"));
        let mut wrong = m.clone();
        wrong.weights.insert("colour".into(), 1.0);
        assert_eq!(wrong.validate().unwrap_err().0, "weights.colour");
    }
}
