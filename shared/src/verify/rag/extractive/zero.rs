//! Tier zero of an extraction: the candidate the evidence ranks first, and
//! whether it can be defended without a model. The router decides with it
//! online; `upshift eval rag --replay` runs the same code over recorded
//! retrievals, so a change is measured before a job sees it.
//!
//! Every candidate's evidence is judged ([`judge`]); the answer is the
//! best-ranked candidate (the fitted `rag.zero_rank`) that passes what holds
//! on every corpus ([`check_span_hard`]), and one decision defends it: its
//! evidence score (`rag.zero_score`) reaches the fitted threshold.

use super::candidates;
use super::judge::{self, ZeroFeatures};
use crate::config::{ZeroRank, ZeroScore};
use crate::reasons::ReasonCode;
use crate::verify::Finding;
use crate::verify::rag::question::{QuestionType, classify};
use crate::verify::rag::{Retrieval, check_span_hard};

/// What tier zero makes of a retrieval.
#[derive(Debug, Clone)]
pub struct ZeroChoice {
    /// The first-ranked candidate that passes the hard checks, else the
    /// first-ranked one (empty without candidates).
    pub answer: String,
    /// Every candidate, best-ranked first (a model's labels): those that
    /// pass [`check_span_hard`] before those that do not, then by the
    /// fitted ranking, then in the evidence order.
    pub candidates: Vec<String>,
    /// Each candidate's evidence, in the order of `candidates`: what the
    /// ranking is fitted on.
    pub ranked: Vec<Ranked>,
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
    /// The threshold it is held to: the fit's for a name or a value, or
    /// for a sentence (each kind meets the bound on its own).
    pub threshold: f64,
    /// Everything that stops tier zero defending it; empty: defended.
    pub findings: Vec<Finding>,
}

/// One candidate as tier zero judged it.
#[derive(Debug, Clone)]
pub struct Ranked {
    /// The candidate.
    pub label: String,
    /// Whether it passes [`check_span_hard`].
    pub passes: bool,
    /// Its evidence's features, when a retrieved sentence holds it.
    pub features: Option<ZeroFeatures>,
    /// Where they rank under the fitted ranking.
    pub rank: Option<f64>,
    /// Their score under the fitted model.
    pub score: Option<f64>,
}

impl ZeroChoice {
    /// Whether a model could add evidence: choosing among one label always
    /// scores 1, so with a single candidate there is nothing to ask.
    pub fn askable(&self) -> bool {
        self.candidates.len() >= 2
    }
}

/// Tier zero for `query` over `r`: every candidate's evidence is judged;
/// the best-ranked one under `rank` that passes [`check_span_hard`] is the
/// answer, defended when its score under `model` reaches the threshold.
pub fn tier_zero(query: &str, r: &Retrieval, rank: &ZeroRank, model: &ZeroScore) -> ZeroChoice {
    let labels = candidates(query, r);
    let judged = judge::judge_all(query, r, &labels);
    // Each candidate with its evidence and its hard checks' findings.
    let mut ranked: Vec<(Ranked, Option<judge::Judged>, Vec<Finding>)> = labels
        .iter()
        .zip(judged)
        .map(|(label, j)| {
            let hard = check_span_hard(label, r, query);
            let features = j.map(|j| j.features);
            let ranked = Ranked {
                label: label.clone(),
                passes: hard.is_empty(),
                rank: features.as_ref().map(|x| judge::rank_value(rank, x)),
                score: None,
                features,
            };
            (ranked, j, hard)
        })
        .collect();
    // Stable: equal ranks keep the evidence order.
    ranked.sort_by(|(a, ..), (b, ..)| {
        let value = |c: &Ranked| c.rank.unwrap_or(f64::NEG_INFINITY);
        b.passes.cmp(&a.passes).then(value(b).total_cmp(&value(a)))
    });
    // How clearly each candidate stands among those that pass, then its score.
    let mut standing: Vec<(Option<&mut ZeroFeatures>, f64)> = ranked
        .iter_mut()
        .map(|(c, ..)| {
            let v = c.rank.unwrap_or(0.0);
            (c.features.as_mut().filter(|_| c.passes), v)
        })
        .collect();
    judge::set_standing(&mut standing);
    for (c, ..) in &mut ranked {
        c.score = c.features.as_ref().map(|x| judge::score(model, x));
    }
    let first = ranked.first().map(|(c, ..)| c.label.clone()).unwrap_or_default();
    let span_findings = match ranked.first() {
        Some((_, _, hard)) => hard.clone(),
        None => check_span_hard(&first, r, query),
    };
    let chosen = ranked.first().and_then(|(_, j, _)| *j);
    let (similarity, margin) = chosen.as_ref().map_or((None, None), |j| (j.similarity, j.margin));
    let features = ranked.first().and_then(|(c, ..)| c.features);
    let score = ranked.first().and_then(|(c, ..)| c.score);
    let ranked: Vec<Ranked> = ranked.into_iter().map(|(c, ..)| c).collect();
    let mut findings = span_findings.clone();
    let sentence = classify(query) == QuestionType::Free;
    let threshold = if sentence {
        model.sentence_threshold
    } else {
        model.threshold
    };
    if findings.is_empty() && score.is_none_or(|s| s < threshold) {
        let what = if sentence { "no sentence" } else { "nothing" };
        let needs = if threshold > 1.0 {
            format!("tier zero defends {what} alone")
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
        candidates: ranked.iter().map(|c| c.label.clone()).collect(),
        ranked,
        similarity,
        margin,
        span_findings,
        features,
        score,
        threshold,
        findings,
    }
}
