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
use crate::config::{RANKING_READS, ZERO_FEATURES, ZeroRank, ZeroScore};
use crate::risk::{Point, best, curve};
use crate::stats::{conditional_logit, logistic};

/// Ridge penalty on the standardised weights (not the bias).
const RIDGE: f64 = 1.0;

/// A fitted score with its curves on the calibration questions.
pub struct ZeroFit {
    /// The model and thresholds.
    pub score: ZeroScore,
    /// Its curve on the calibration answers that are names or values.
    pub curve: Vec<Point>,
    /// The operating point chosen on it, if one meets the target.
    pub chosen: Option<Point>,
    /// Its curve on the calibration answers that are sentences.
    pub sentence_curve: Vec<Point>,
    /// The operating point chosen on that, if one meets the target.
    pub sentence_chosen: Option<Point>,
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
    // What reads the ranking has no place in it: those features stay 0.
    let used: Vec<bool> = ZERO_FEATURES.iter().map(|f| !RANKING_READS.contains(f)).collect();
    let standardise = |x: &ZeroFeatures| -> Vec<f64> {
        (0..ZERO_FEATURES.len())
            .map(|j| if used[j] { (x.0[j] - mean[j]) / sd[j] } else { 0.0 })
            .collect()
    };
    let scaled: Vec<Vec<(Vec<f64>, bool)>> = groups
        .iter()
        .map(|g| g.iter().map(|(x, y)| (standardise(x), *y)).collect())
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
        sentence_threshold: 2.0,
        fitted: String::new(),
    };
    score.bias = (score.bias * 1e4).round() / 1e4;
    score
}

/// The score of each of `rows` under weights fitted without its fold
/// (`folds[i]`, row i's): what the threshold is chosen on, so the bound is
/// measured on answers the weights never saw. Chosen on the answers the
/// weights were fitted on, it would lean on how well they fit those: the
/// top of an in-sample curve is where a model fits its own data best.
pub fn held_out_scores(rows: &[(ZeroFeatures, bool)], folds: &[usize]) -> Vec<f64> {
    let mut out = vec![0.0; rows.len()];
    let mut ks: Vec<usize> = folds.to_vec();
    ks.sort_unstable();
    ks.dedup();
    for k in ks {
        let train: Vec<(ZeroFeatures, bool)> = rows
            .iter()
            .zip(folds)
            .filter(|(_, f)| **f != k)
            .map(|(r, _)| *r)
            .collect();
        // One fold alone: nothing to fit without it, so it is scored by nothing.
        let model = (!train.is_empty()).then(|| fit_weights(&train));
        for (i, (x, _)) in rows.iter().enumerate().filter(|(i, _)| folds[*i] == k) {
            out[i] = model.as_ref().map_or(0.0, |m| judge::score(m, x));
        }
    }
    out
}

/// Chooses the thresholds of `score` on `scored`: (held-out score, right,
/// whether the answer is a sentence) of the calibration questions where
/// only the score stands between tier zero's answer (the best-ranked
/// candidate) and "defended" ([`held_out_scores`]). Each kind of answer
/// (names and values; sentences) gets its own: the lowest threshold at
/// which the one-sided upper bound of the false-defended rate of that
/// kind's answers is at most `target` at `confidence` (the most right
/// answers defended); a kind none meets gets a threshold above 1, so it is
/// never defended, however well the other does. `(answerable, questions)`
/// count every calibration question (coverage is of the answerable ones);
/// `source` names the data in the fit's description.
pub fn calibrate(
    mut score: ZeroScore,
    scored: &[(f64, bool, bool)],
    (answerable, questions): (usize, usize),
    target: f64,
    confidence: f64,
    source: &str,
) -> ZeroFit {
    // One kind's answers, their curve and the point its bound allows.
    let of_kind = |sentence: bool| {
        let rows: Vec<(f64, bool)> = scored
            .iter()
            .filter(|(_, _, k)| *k == sentence)
            .map(|(s, right, _)| (*s, *right))
            .collect();
        let c = curve(&rows, answerable, confidence);
        let chosen = best(&c, target);
        (rows.len(), c, chosen)
    };
    let (names, curve, chosen) = of_kind(false);
    let (sentences, sentence_curve, sentence_chosen) = of_kind(true);
    let threshold = |p: &Option<Point>| p.as_ref().map_or(2.0, |p| (p.threshold * 1e6).floor() / 1e6);
    score.threshold = threshold(&chosen);
    score.sentence_threshold = threshold(&sentence_chosen);
    let pct = |x: f64| format!("{:.1}%", 100.0 * x);
    let said = |p: &Option<Point>, n: usize| match p {
        Some(p) => format!(
            "{} of {n} defended, {} wrong, false-defended ≤ {} at {}",
            p.defended,
            p.wrong,
            pct(p.bound),
            pct(confidence)
        ),
        None => format!(
            "no threshold keeps false-defended ≤ {} at {} on {n}",
            pct(target),
            pct(confidence)
        ),
    };
    score.fitted = format!(
        "{source}, {questions} calibration questions (held-out scores): names and values {}; sentences {}",
        said(&chosen, names),
        said(&sentence_chosen, sentences)
    );
    ZeroFit {
        score,
        curve,
        chosen,
        sentence_curve,
        sentence_chosen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(similarity: f64, right: bool) -> (ZeroFeatures, bool) {
        let mut x = ZeroFeatures([0.0; ZERO_FEATURES.len()]);
        x.0[0] = similarity;
        (x, right)
    }

    #[test]
    fn a_held_out_score_comes_from_weights_that_never_saw_its_row() {
        // Fold 0: high similarity and right; fold 1: high similarity and wrong.
        let rows: Vec<(ZeroFeatures, bool)> = (0..20)
            .map(|i| {
                if i < 10 {
                    row(0.9, true)
                } else {
                    row(0.9 - 0.01 * f64::from(i), false)
                }
            })
            .chain((0..10).map(|_| row(0.1, false)))
            .collect();
        let folds: Vec<usize> = (0..30).map(|i| usize::from(i >= 10)).collect();
        let held = held_out_scores(&rows, &folds);
        let without_0 = fit_weights(&rows[10..]);
        let without_1 = fit_weights(&rows[..10]);
        for (i, (x, _)) in rows.iter().enumerate() {
            let model = if i < 10 { &without_0 } else { &without_1 };
            assert!((held[i] - judge::score(model, x)).abs() < 1e-12, "row {i}");
        }
        // In sample the right rows score highest; held out, the weights that
        // never saw them call them wrong, and no threshold defends them.
        let in_sample = fit_weights(&rows);
        assert!(judge::score(&in_sample, &rows[0].0) > 0.5);
        assert!(held[0] < 0.5, "{}", held[0]);
        let scored: Vec<(f64, bool, bool)> = held.iter().zip(&rows).map(|(h, (_, y))| (*h, *y, false)).collect();
        let fit = calibrate(in_sample, &scored, (10, 30), 0.05, 0.9, "t");
        assert!(
            fit.chosen.is_none() && fit.score.threshold > 1.0,
            "{}",
            fit.score.fitted
        );
        assert!(fit.score.fitted.contains("held-out scores"));
    }

    #[test]
    fn each_kind_of_answer_is_held_to_the_bound_on_its_own() {
        // 60 names, all right; 4 sentences scoring above them, 2 wrong.
        let mut scored: Vec<(f64, bool, bool)> = (0..60).map(|i| (0.5 + f64::from(i) / 200.0, true, false)).collect();
        scored.extend([
            (0.99, true, true),
            (0.98, false, true),
            (0.97, true, true),
            (0.96, false, true),
        ]);
        let model = fit_weights(&[row(0.9, true), row(0.1, false)]);
        let fit = calibrate(model, &scored, (64, 64), 0.05, 0.9, "t");
        // The names meet the bound alone (0 wrong in 60): all defended.
        assert_eq!(fit.chosen.map(|p| p.defended), Some(60));
        assert!((fit.score.threshold - 0.5).abs() < 1e-6, "{}", fit.score.threshold);
        // The sentences cannot (2 wrong in 4), so none is, though they
        // score highest: one threshold for both would have to defend them.
        assert!(fit.sentence_chosen.is_none() && fit.score.sentence_threshold > 1.0);
        assert!(
            fit.score.fitted.contains("names and values 60 of 60 defended")
                && fit.score.fitted.contains("sentences no threshold"),
            "{}",
            fit.score.fitted
        );
    }
}
