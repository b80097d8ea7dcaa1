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
//! - `non_integer_answer`, `negative_answer`: the final number is fractional,
//!   or below zero (most counting questions have whole, positive answers);
//! - `answer_in_question`: the final number already appears in the input (an
//!   answer that copies a given quantity has usually skipped the work);
//! - `numbers_unused`: share of the distinct numbers in the input that the
//!   output never mentions (a solution normally uses every given quantity);
//! - `length_ratio`: ln(output length / input length), clamped to [-2, 2], / 2;
//! - `confidence`, `has_confidence`: the provider's confidence (0 when absent) and whether it exists;
//! - `question_numbers`: distinct numbers in the input, capped at 10, / 10;
//! - `question_percent`: the input speaks of percentages;
//! - `question_length`: ln(1 + input length) / 8.

use super::sigmoid;
use crate::config::routing::{AcceptModel, FEATURES};
use crate::reasons::ReasonCode;
use crate::verify::{Finding, count_computations, final_answer};
use std::collections::BTreeMap;

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

/// The distinct numbers written with digits in `text`.
fn numbers(text: &str) -> Vec<f64> {
    let mut out: Vec<f64> = NUMBER
        .find_iter(text)
        .filter_map(|m| m.as_str().replace(',', "").parse().ok())
        .collect();
    out.sort_by(f64::total_cmp);
    out.dedup();
    out
}

static NUMBER: std::sync::LazyLock<regex::Regex> =
    std::sync::LazyLock::new(|| regex::Regex::new(r"-?\d[\d,]*(?:\.\d+)?").expect("valid regex"));

/// Feature vector of one answer to `input`, in [`FEATURES`] order.
pub fn features(input: &str, output: &str, findings: &[Finding], confidence: Option<f64>, ambiguity: f64) -> Vec<f64> {
    let count = |code: ReasonCode| (findings.iter().filter(|f| f.code == code).count().min(3) as f64) / 3.0;
    let lower = output.to_lowercase();
    let hedges = HEDGES.iter().map(|h| lower.matches(h).count()).sum::<usize>().min(3) as f64 / 3.0;
    let mut x = vec![
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
    ];
    let given = numbers(input);
    let said = numbers(output);
    let fin = final_answer(output);
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    x.push(flag(fin.is_some_and(|v| v.fract().abs() > 1e-9)));
    x.push(flag(fin.is_some_and(|v| v < 0.0)));
    x.push(flag(fin.is_some_and(|v| given.iter().any(|g| (g - v).abs() < 1e-9))));
    let unused = given
        .iter()
        .filter(|g| !said.iter().any(|s| (*s - **g).abs() < 1e-9))
        .count();
    x.push(if given.is_empty() {
        0.0
    } else {
        unused as f64 / given.len() as f64
    });
    x.push(
        ((1.0 + output.len() as f64) / (1.0 + input.len() as f64))
            .ln()
            .clamp(-2.0, 2.0)
            / 2.0,
    );
    // Difficulty of the question itself, which moves both models' odds.
    x.push(given.len().min(10) as f64 / 10.0);
    x.push(flag(input.contains('%') || input.contains("percent")));
    x.push((1.0 + input.len() as f64).ln() / 8.0);
    x
}

impl AcceptModel {
    /// The defensibility score: P(this answer is right), minus P(the strong
    /// tier would be right) when the model has strong weights.
    pub fn score(&self, x: &[f64]) -> f64 {
        let p = |w: &BTreeMap<String, f64>| {
            sigmoid(
                FEATURES
                    .iter()
                    .zip(x)
                    .map(|(name, v)| w.get(*name).copied().unwrap_or(0.0) * v)
                    .sum(),
            )
        };
        p(&self.weights) - self.strong_weights.as_ref().map_or(0.0, p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_and_scores() {
        let f = features("Add 3 and 4.", "3 + 4 = 7\n#### 7", &[], None, 0.2);
        assert_eq!(f.len(), FEATURES.len());
        assert_eq!((f[0], f[4], f[6]), (1.0, 0.0, 0.1));
        let bad = [Finding::new(ReasonCode::ArithmeticMismatch, "x")];
        let g = features("Add 3 and 4.", "3 + 4 = 8", &bad, Some(0.5), 0.2);
        assert_eq!(&f[11..15], &[0.0, 0.0, 0.0, 0.0]);
        let copied = features("Add 3 and 4 and 9.", "#### 9.5", &[], None, 0.2);
        assert_eq!(&copied[11..15], &[1.0, 0.0, 0.0, 1.0]);
        assert!((g[2] - 1.0 / 3.0).abs() < 1e-12 && g[4] == 1.0 && g[10] == 1.0);
        let m = AcceptModel {
            tier: crate::Tier::Small,
            classes: None,
            threshold: 0.5,
            weights: [("bias".to_string(), 1.0), ("arithmetic_mismatch".to_string(), -6.0)].into(),
            strong_weights: None,
        };
        assert!(m.score(&f) > 0.7 && m.score(&g) < 0.5);
        assert!(m.reads_output() && m.covers("anything"));
        let mut wrong = m.clone();
        wrong.weights.insert("colour".into(), 1.0);
        assert_eq!(wrong.validate().unwrap_err().0, "weights.colour");
    }
}
