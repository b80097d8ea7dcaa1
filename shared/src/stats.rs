//! Confidence bounds for rates measured on labelled data: how large a
//! false-accept (or false-defended) rate can be, given what was counted.

/// P(X ≤ k) for X ~ Binomial(n, p).
pub fn binomial_cdf(k: usize, n: usize, p: f64) -> f64 {
    if k >= n {
        return 1.0;
    }
    if p <= 0.0 {
        return 1.0;
    }
    if p >= 1.0 {
        return 0.0;
    }
    // Terms in log space: n is a few thousand at most, k small.
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    let mut log_choose = 0.0f64; // ln C(n, 0)
    let mut total = 0.0;
    for i in 0..=k {
        if i > 0 {
            log_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        total += (log_choose + i as f64 * lp + (n - i) as f64 * lq).exp();
    }
    total.min(1.0)
}

/// The one-sided Clopper–Pearson upper bound at `confidence` (e.g. 0.90)
/// of a rate observed as `k` events in `n` trials: the largest p under
/// which seeing at most `k` still has probability 1 − `confidence`. 1.0
/// with no trials.
pub fn clopper_pearson_upper(k: usize, n: usize, confidence: f64) -> f64 {
    if n == 0 || k >= n {
        return 1.0;
    }
    let alpha = 1.0 - confidence;
    let (mut lo, mut hi) = (k as f64 / n as f64, 1.0);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if binomial_cdf(k, n, mid) > alpha {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

/// The `p` quantile (0–1, nearest rank) of `xs`, which it sorts; 0 when empty.
pub fn quantile(xs: &mut [f64], p: f64) -> f64 {
    xs.sort_by(f64::total_cmp);
    if xs.is_empty() {
        return 0.0;
    }
    xs[((xs.len() as f64 - 1.0) * p).round() as usize]
}

/// The logistic function.
pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_match_the_closed_forms() {
        // k = 0: the bound is 1 − (1 − c)^(1/n).
        for n in [1usize, 10, 45, 200] {
            let closed = 1.0 - 0.1f64.powf(1.0 / n as f64);
            assert!((clopper_pearson_upper(0, n, 0.9) - closed).abs() < 1e-9, "n={n}");
        }
        // 45 defended with none wrong is the least that bounds 5% at 90%.
        assert!(clopper_pearson_upper(0, 45, 0.9) <= 0.05);
        assert!(clopper_pearson_upper(0, 44, 0.9) > 0.05);
        // One wrong needs 77 (tables of the exact binomial bound).
        assert!(clopper_pearson_upper(1, 77, 0.9) <= 0.05 && clopper_pearson_upper(1, 76, 0.9) > 0.05);
        assert_eq!(clopper_pearson_upper(0, 0, 0.9), 1.0);
        assert!((binomial_cdf(1, 2, 0.5) - 0.75).abs() < 1e-12);
    }
}
