//! Risk–coverage curves of an acceptance threshold, measured on labelled
//! decisions: for each threshold, how many answers it accepts, how many of
//! those are wrong, and the one-sided Clopper–Pearson upper bound of that
//! rate. A threshold is trusted only where the bound meets the target
//! (DESIGN: 5% at 90%); tier zero's score (`eval rag --fit-zero`) and the
//! local tiers' confidences (`bench models --labelled`) are fitted by it.

use crate::stats::clopper_pearson_upper;

/// One point of a risk–coverage curve: defended from `threshold` up.
#[derive(Debug, Clone)]
pub struct Point {
    /// The score threshold.
    pub threshold: f64,
    /// Questions defended.
    pub defended: usize,
    /// Of those, wrong (or unanswerable).
    pub wrong: usize,
    /// Defended and right ÷ answerable questions.
    pub coverage: f64,
    /// One-sided upper bound of wrong ÷ defended.
    pub bound: f64,
}

/// The curve of `scored` ((score, right) of eligible questions) over
/// `answerable` questions, best score first.
pub fn curve(scored: &[(f64, bool)], answerable: usize, confidence: f64) -> Vec<Point> {
    let mut sorted = scored.to_vec();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut out: Vec<Point> = Vec::new();
    let (mut n, mut wrong) = (0, 0);
    for (i, (s, right)) in sorted.iter().enumerate() {
        n += 1;
        wrong += usize::from(!right);
        // Ties defend together: a point only where the next score is lower.
        if sorted.get(i + 1).is_some_and(|next| next.0 == *s) {
            continue;
        }
        out.push(Point {
            threshold: *s,
            defended: n,
            wrong,
            coverage: (n - wrong) as f64 / answerable.max(1) as f64,
            bound: clopper_pearson_upper(wrong, n, confidence),
        });
    }
    out
}

/// The point of `curve` that accepts the most right answers with its bound
/// at most `target`, if any.
pub fn best(curve: &[Point], target: f64) -> Option<Point> {
    curve
        .iter()
        .filter(|p| p.bound <= target)
        .max_by(|a, b| a.coverage.total_cmp(&b.coverage))
        .cloned()
}

/// At most `n` points of `curve`, evenly spread, the last always kept.
pub fn thin(curve: &[Point], n: usize) -> Vec<&Point> {
    let step = curve.len().div_ceil(n.max(1)).max(1);
    let mut out: Vec<&Point> = curve.iter().step_by(step).collect();
    if let Some(last) = curve.last()
        && out.last().is_none_or(|p| p.defended != last.defended)
    {
        out.push(last);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_is_the_lowest_whose_bound_meets_the_target() {
        // 80 right answers scoring 0.99 … 0.20, one wrong among them at
        // 0.595, ten wrong below.
        let mut scored: Vec<(f64, bool)> = (0..80).map(|i| (0.99 - i as f64 * 0.01, true)).collect();
        scored.push((0.595, false));
        scored.extend((0..10).map(|i| (0.15 - i as f64 * 0.01, false)));
        let c = curve(&scored, 90, 0.9);
        let best = best(&c, 0.05).unwrap();
        // The top 40 alone (none wrong) bound only 5.6%; one wrong needs 77
        // defended: all 81 above the wrong tail.
        assert_eq!((best.defended, best.wrong), (81, 1), "{best:?}");
        assert!((best.threshold - 0.20).abs() < 1e-9);
        assert!(c.iter().find(|p| p.defended == 40).unwrap().bound > 0.05);
        // Ties defend together.
        let tied = curve(&[(0.5, true), (0.5, false), (0.4, true)], 3, 0.9);
        assert_eq!(tied.len(), 2);
        assert_eq!((tied[0].defended, tied[0].wrong), (2, 1));
    }
}
