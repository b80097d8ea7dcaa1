//! Fitting tier zero's score: the one fit every corpus uses, on a user's
//! own labelled questions as on the project's (`upshift eval rag --replay
//! --fit-zero`). A standardised ridge-logistic model of "the evidence's
//! first choice is right" over [`ZERO_FEATURES`], folded back into raw-scale
//! weights, and the threshold of its risk–coverage curve
//! ([`crate::risk`]) whose Clopper–Pearson bound meets the target.

use super::judge::{self, ZeroFeatures};
use crate::config::{ZERO_FEATURES, ZeroScore};
use crate::risk::{Point, best, curve};
use crate::stats::logistic;

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

/// Fits tier zero's score: a logistic model of "right" over the features
/// of every eligible calibration question (`eligible`: (features, right)
/// of the questions where only the score stands between the answer and
/// "defended"), then the lowest threshold at which the one-sided upper
/// bound of the false-defended rate is at most `target` at `confidence`
/// (the most right answers defended). None meeting it: a threshold above
/// 1, so nothing is defended. `(answerable, questions)` count every
/// calibration question (coverage is of the answerable ones); `source`
/// names the data in the fit's description.
pub fn fit_zero(
    eligible: &[(ZeroFeatures, bool)],
    (answerable, questions): (usize, usize),
    target: f64,
    confidence: f64,
    source: &str,
) -> ZeroFit {
    let rows: Vec<(Vec<f64>, bool)> = eligible
        .iter()
        .map(|(x, right)| (std::iter::once(1.0).chain(x.0).collect(), *right))
        .collect();
    // Standardised for the fit (the ridge then weighs every feature
    // alike, whatever its range), folded back into raw-scale weights.
    let d = ZERO_FEATURES.len();
    let n = rows.len().max(1) as f64;
    let mean: Vec<f64> = (1..=d)
        .map(|j| rows.iter().map(|(x, _)| x[j]).sum::<f64>() / n)
        .collect();
    let sd: Vec<f64> = (1..=d)
        .map(|j| {
            let v = rows.iter().map(|(x, _)| (x[j] - mean[j - 1]).powi(2)).sum::<f64>() / n;
            if v > 1e-12 { v.sqrt() } else { 1.0 }
        })
        .collect();
    let scaled: Vec<Vec<f64>> = rows
        .iter()
        .map(|(x, _)| {
            std::iter::once(1.0)
                .chain((1..=d).map(|j| (x[j] - mean[j - 1]) / sd[j - 1]))
                .collect()
        })
        .collect();
    let xs: Vec<&[f64]> = scaled.iter().map(Vec::as_slice).collect();
    let ys: Vec<bool> = rows.iter().map(|(_, y)| *y).collect();
    let w = logistic(&xs, &ys, RIDGE);
    let raw: Vec<f64> = (0..d).map(|j| w.get(j + 1).copied().unwrap_or(0.0) / sd[j]).collect();
    let bias = w.first().copied().unwrap_or(0.0) - raw.iter().zip(&mean).map(|(a, m)| a * m).sum::<f64>();
    let mut score = ZeroScore {
        bias,
        weights: ZERO_FEATURES
            .iter()
            .zip(&raw)
            .map(|(n, v)| (n.to_string(), (v * 1e4).round() / 1e4))
            .collect(),
        threshold: 2.0,
        fitted: String::new(),
    };
    score.bias = (score.bias * 1e4).round() / 1e4;
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
