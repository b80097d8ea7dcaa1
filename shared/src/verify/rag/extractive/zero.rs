//! Tier zero of an extraction: the evidence's own first choice, and
//! whether it can be defended without a model. The router decides with it
//! online; `upshift eval rag --replay` runs the same code over recorded
//! retrievals, so a change is measured before a job sees it.
//!
//! One decision: the answer must pass what holds on every corpus
//! ([`check_span_hard`]), and its evidence score ([`judge`]) must reach the
//! fitted threshold.

use super::candidates;
use super::judge::{self, ZeroFeatures};
use crate::config::ZeroScore;
use crate::reasons::ReasonCode;
use crate::verify::Finding;
use crate::verify::rag::{Retrieval, check_span_hard};

/// What tier zero makes of a retrieval.
#[derive(Debug, Clone)]
pub struct ZeroChoice {
    /// The evidence's first choice (empty without candidates).
    pub answer: String,
    /// Every candidate, in the evidence's order (a model's labels).
    pub candidates: Vec<String>,
    /// Its sentence's similarity to the question.
    pub similarity: Option<f32>,
    /// Its lead over the best rival candidate's sentence.
    pub margin: Option<f32>,
    /// What holds on every corpus ([`check_span_hard`]): the calibration
    /// is measured on the answers that pass these.
    pub span_findings: Vec<Finding>,
    /// The evidence's features, when a retrieved sentence holds the answer.
    pub features: Option<ZeroFeatures>,
    /// Their score under the fitted model.
    pub score: Option<f64>,
    /// Everything that stops tier zero defending it; empty: defended.
    pub findings: Vec<Finding>,
}

impl ZeroChoice {
    /// Whether a model could add evidence: choosing among one label always
    /// scores 1, so with a single candidate there is nothing to ask.
    pub fn askable(&self) -> bool {
        self.candidates.len() >= 2
    }
}

/// Tier zero for `query` over `r`: the first candidate is defended when it
/// passes [`check_span_hard`] and its evidence scores at least the fitted
/// threshold.
pub fn tier_zero(query: &str, r: &Retrieval, model: &ZeroScore) -> ZeroChoice {
    let labels = candidates(query, r);
    let first = labels.first().cloned().unwrap_or_default();
    let span_findings = check_span_hard(&first, r, query);
    let judged = judge::zero_features(query, r, &first, &labels);
    let (similarity, margin) = judged.as_ref().map_or((None, None), |j| (j.similarity, j.margin));
    let features = judged.map(|j| j.features);
    let score = features.as_ref().map(|x| judge::score(model, x));
    let mut findings = span_findings.clone();
    let threshold = model.threshold;
    if findings.is_empty() && score.is_none_or(|s| s < threshold) {
        let needs = if threshold > 1.0 {
            "tier zero defends nothing alone".to_string()
        } else {
            format!("tier zero defends from {threshold:.3}")
        };
        findings.push(Finding::new(
            ReasonCode::LowConfidence,
            format!(
                "the evidence for `{}` scores {:.3}; {needs} ({})",
                crate::verify::clip(&first, 40),
                score.unwrap_or(0.0),
                model.fitted
            ),
        ));
    }
    ZeroChoice {
        answer: first,
        candidates: labels,
        similarity,
        margin,
        span_findings,
        features,
        score,
        findings,
    }
}
