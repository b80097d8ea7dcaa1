//! Fitting tier zero's score: the one fit every corpus uses, on a user's
//! own labelled questions as on the project's (`upshift eval rag --replay
//! --fit-zero`), in two parts over [`ZERO_FEATURES`], both on standardised
//! features folded back into raw-scale weights:
//!
//! - which candidate tier zero answers with ([`fit_rank`]): a conditional
//!   logit over each calibration question's candidates;
//! - whether that answer is defended: a ridge-logistic model of "the
//!   answer is right" ([`fit_weights`]) and the threshold of its
//!   risk–coverage curve ([`crate::risk`]) whose Clopper–Pearson bound
//!   meets the target ([`calibrate`]).

use super::judge::{self, ZeroFeatures};
use crate::config::{ZERO_FEATURES, ZeroRank, ZeroScore};
use crate::risk::{Point, best, curve};
use crate::stats::{conditional_logit, logistic};

/// Ridge penalty on the standardised weights (not the bias).
const RIDGE: f64 = 1.0;

/// A fitted score with its curve on the calibration questions.
pub struct ZeroFit {
    /// The model and threshold.
    pub score: ZeroScore,
    /// Its curve on the calibration questions.
    pub curve: Vec<Point>,
    /// The operating point chosen, if one meets the target.
    pub chosen: Option<Point>,
}

/// The mean and standard deviation (1 where constant) of each feature of `rows`.
fn moments(rows: &[&ZeroFeatures]) -> (Vec<f64>, Vec<f64>) {
    let n = rows.len().max(1) as f64;
    let mean: Vec<f64> = (0..ZERO_FEATURES.len())
        .map(|j| rows.iter().map(|x| x.0[j]).sum::<f64>() / n)
        .collect();
    let sd = (0..ZERO_FEATURES.len())
        .map(|j| {
            let v = rows.iter().map(|x| (x.0[j] - mean[j]).powi(2)).sum::<f64>() / n;
            if v > 1e-12 { v.sqrt() } else { 1.0 }
        })
        .collect();
    (mean, sd)
}

/// Weights by feature name, rounded.
fn named(raw: &[f64]) -> std::collections::BTreeMap<String, f64> {
    ZERO_FEATURES
        .iter()
        .zip(raw)
        // `+ 0.0`: a weight that rounds to zero is written `0`, not `-0`.
        .map(|(n, v)| (n.to_string(), (v * 1e4).round() / 1e4 + 0.0))
        .collect()
}

/// Fits which candidate tier zero answers with: a conditional logit over
/// `groups`, each calibration question's candidates that pass the hard
/// checks (features, whether it is an accepted answer). A question with no
/// right candidate says nothing about the ranking; `source` names the data.
pub fn fit_rank(groups: &[Vec<(ZeroFeatures, bool)>], source: &str) -> ZeroRank {
    let all: Vec<&ZeroFeatures> = groups.iter().flatten().map(|(x, _)| x).collect();
    let (mean, sd) = moments(&all);
    let scaled: Vec<Vec<(Vec<f64>, bool)>> = groups
        .iter()
        .map(|g| {
            g.iter()
                .map(|(x, y)| {
                    (
                        (0..ZERO_FEATURES.len()).map(|j| (x.0[j] - mean[j]) / sd[j]).collect(),
                        *y,
                    )
                })
                .collect()
        })
        .collect();
    let refs: Vec<Vec<(&[f64], bool)>> = scaled
        .iter()
        .map(|g| g.iter().map(|(x, y)| (x.as_slice(), *y)).collect())
        .collect();
    let w = conditional_logit(&refs, RIDGE);
    let raw: Vec<f64> = w.iter().zip(&sd).map(|(w, s)| w / s).collect();
    let ranked = groups.iter().filter(|g| g.iter().any(|(_, y)| *y)).count();
    ZeroRank {
        weights: named(&raw),
        fitted: format!("{source}: {ranked} calibration questions with a right candidate"),
    }
}

/// Fits the weights of tier zero's score: a logistic model of "right"
/// over `rows`, the features of tier zero's answer to each calibration
/// question where only the score stands between it and "defended", and
/// whether it is right. The threshold is left above 1 (nothing defended)
/// for [`calibrate`] to choose.
pub fn fit_weights(rows: &[(ZeroFeatures, bool)]) -> ZeroScore {
    let all: Vec<&ZeroFeatures> = rows.iter().map(|(x, _)| x).collect();
    let (mean, sd) = moments(&all);
    let d = ZERO_FEATURES.len();
    let scaled: Vec<Vec<f64>> = rows
        .iter()
        .map(|(x, _)| {
            std::iter::once(1.0)
                .chain((0..d).map(|j| (x.0[j] - mean[j]) / sd[j]))
                .collect()
        })
        .collect();
    let xs: Vec<&[f64]> = scaled.iter().map(Vec::as_slice).collect();
    let ys: Vec<bool> = rows.iter().map(|(_, y)| *y).collect();
    // Standardised for the fit (the ridge then weighs every feature
    // alike, whatever its range), folded back into raw-scale weights.
    let w = logistic(&xs, &ys, RIDGE);
    let raw: Vec<f64> = (0..d).map(|j| w.get(j + 1).copied().unwrap_or(0.0) / sd[j]).collect();
    let bias = w.first().copied().unwrap_or(0.0) - raw.iter().zip(&mean).map(|(a, m)| a * m).sum::<f64>();
    let mut score = ZeroScore {
        bias,
        weights: named(&raw),
        threshold: 2.0,
        fitted: String::new(),
    };
    score.bias = (score.bias * 1e4).round() / 1e4;
    score
}

/// Chooses the threshold of `score` on `eligible`: (features, right) of the
/// calibration questions where only the score stands between tier zero's
/// answer (the best-ranked candidate) and "defended". The lowest threshold
/// at which the one-sided upper bound of the false-defended rate is at most
/// `target` at `confidence` (the most right answers defended); none meeting
/// it: a threshold above 1, so nothing is defended. `(answerable,
/// questions)` count every calibration question (coverage is of the
/// answerable ones); `source` names the data in the fit's description.
pub fn calibrate(
    mut score: ZeroScore,
    eligible: &[(ZeroFeatures, bool)],
    (answerable, questions): (usize, usize),
    target: f64,
    confidence: f64,
    source: &str,
) -> ZeroFit {
    score.threshold = 2.0;
    let scored: Vec<(f64, bool)> = eligible
        .iter()
        .map(|(x, right)| (judge::score(&score, x), *right))
        .collect();
    let curve = curve(&scored, answerable, confidence);
    let chosen = best(&curve, target);
    let pct = |x: f64| format!("{:.1}%", 100.0 * x);
    match &chosen {
        Some(p) => {
            score.threshold = (p.threshold * 1e6).floor() / 1e6;
            score.fitted = format!(
                "{source}: {} of {} calibration questions defended, {} wrong, false-defended ≤ {} at {}",
                p.defended,
                questions,
                p.wrong,
                pct(p.bound),
                pct(confidence)
            );
        }
        None => {
            score.fitted = format!(
                "{source}: no threshold keeps false-defended ≤ {} at {} on {} calibration questions",
                pct(target),
                pct(confidence),
                questions
            );
        }
    }
    ZeroFit { score, curve, chosen }
}
