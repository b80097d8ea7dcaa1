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

/// Logistic regression by Newton's method with a ridge penalty `ridge` on
/// every weight but the first (the bias); each row of `xs` starts with 1.
pub fn logistic(xs: &[&[f64]], ys: &[bool], ridge: f64) -> Vec<f64> {
    let d = xs.first().map_or(0, |x| x.len());
    newton(d, |w| {
        let mut grad = vec![0.0; d];
        let mut hess = vec![vec![0.0; d]; d];
        for (x, &y) in xs.iter().zip(ys) {
            let p = sigmoid(x.iter().zip(w).map(|(a, b)| a * b).sum());
            let r = p - f64::from(u8::from(y));
            for i in 0..d {
                grad[i] += r * x[i];
                for j in 0..d {
                    hess[i][j] += p * (1.0 - p) * x[i] * x[j];
                }
            }
        }
        for i in 1..d {
            grad[i] += ridge * w[i];
            hess[i][i] += ridge;
        }
        hess[0][0] += 1e-6;
        (grad, hess)
    })
}

/// Newton's method over `d` weights from zero: `at(w)` gives the gradient
/// and Hessian of the loss at `w`; at most 25 steps, until no weight moves
/// more than 1e-9.
fn newton(d: usize, mut at: impl FnMut(&[f64]) -> (Vec<f64>, Vec<Vec<f64>>)) -> Vec<f64> {
    let mut w = vec![0.0; d];
    for _ in 0..25 {
        let (grad, hess) = at(&w);
        let step = solve(hess, grad);
        let mut moved = 0.0f64;
        for i in 0..d {
            w[i] -= step[i];
            moved = moved.max(step[i].abs());
        }
        if moved < 1e-9 {
            break;
        }
    }
    w
}

/// Fits a conditional logit by Newton's method: the weights `w` (no
/// intercept: it cancels within a group) that maximise, over `groups`, the
/// log-likelihood of the right items under a softmax of `w · x` within
/// their group (several right items share the group's weight), minus
/// `ridge / 2 · |w|²`. A group with no right item says nothing and is
/// skipped. What ranks the candidates of one question, where a logistic
/// model would mix what differs between questions into the ranking.
pub fn conditional_logit(groups: &[Vec<(&[f64], bool)>], ridge: f64) -> Vec<f64> {
    let d = groups.iter().flatten().next().map_or(0, |(x, _)| x.len());
    newton(d, |w| {
        let mut grad: Vec<f64> = w.iter().map(|v| ridge * v).collect();
        let mut hess = vec![vec![0.0; d]; d];
        for (i, row) in hess.iter_mut().enumerate() {
            row[i] = ridge + 1e-9;
        }
        for g in groups {
            let k = g.iter().filter(|(_, y)| *y).count();
            if k == 0 {
                continue;
            }
            let z: Vec<f64> = g
                .iter()
                .map(|(x, _)| x.iter().zip(w).map(|(a, b)| a * b).sum())
                .collect();
            let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
            let total: f64 = e.iter().sum();
            let p: Vec<f64> = e.iter().map(|v| v / total).collect();
            let mean: Vec<f64> = (0..d)
                .map(|j| g.iter().zip(&p).map(|((x, _), p)| p * x[j]).sum())
                .collect();
            for ((x, y), p) in g.iter().zip(&p) {
                let t = if *y { 1.0 / k as f64 } else { 0.0 };
                for i in 0..d {
                    grad[i] += (p - t) * x[i];
                    for j in 0..d {
                        hess[i][j] += p * (x[i] - mean[i]) * (x[j] - mean[j]);
                    }
                }
            }
        }
        (grad, hess)
    })
}

/// Solves `a · x = b` by Gauss–Jordan elimination with partial pivoting.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .unwrap_or(col);
        a.swap(col, pivot);
        b.swap(col, pivot);
        let p = a[col][col];
        if p.abs() < 1e-12 {
            continue;
        }
        a[col].iter_mut().for_each(|v| *v /= p);
        b[col] /= p;
        let pivot_row = a[col].clone();
        for i in 0..n {
            if i != col && a[i][col] != 0.0 {
                let f = a[i][col];
                a[i].iter_mut().zip(&pivot_row).for_each(|(v, pv)| *v -= f * pv);
                b[i] -= f * b[col];
            }
        }
    }
    b
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

    #[test]
    fn logistic_recovers_a_clear_signal() {
        // y = 1 exactly when the feature is 0.
        let data: Vec<[f64; 2]> = (0..200).map(|i| [1.0, f64::from(i % 2)]).collect();
        let xs: Vec<&[f64]> = data.iter().map(|x| x.as_slice()).collect();
        let ys: Vec<bool> = data.iter().map(|x| x[1] == 0.0).collect();
        let w = logistic(&xs, &ys, 1.0);
        assert!(sigmoid(w[0]) > 0.9 && sigmoid(w[0] + w[1]) < 0.1, "{w:?}");
    }

    #[test]
    fn a_conditional_logit_ranks_within_groups_whatever_differs_between_them() {
        // The right item of each group has the larger first feature; the
        // second feature is large in one whole group and says nothing.
        let groups: Vec<Vec<(Vec<f64>, bool)>> = vec![
            vec![(vec![0.9, 5.0], true), (vec![0.2, 5.0], false)],
            vec![(vec![0.7, 0.0], true), (vec![0.1, 0.0], false), (vec![0.3, 0.0], false)],
            vec![(vec![0.5, 1.0], false)],
        ];
        let refs: Vec<Vec<(&[f64], bool)>> = groups
            .iter()
            .map(|g| g.iter().map(|(x, y)| (x.as_slice(), *y)).collect())
            .collect();
        let w = conditional_logit(&refs, 0.1);
        assert!(w[0] > 1.0, "{w:?}");
        assert!(w[1].abs() < 1e-6, "constant within each group: no weight {w:?}");
    }

    #[test]
    fn solves_linear_systems() {
        let x = solve(vec![vec![2.0, 1.0], vec![1.0, 3.0]], vec![3.0, 5.0]);
        assert!((x[0] - 0.8).abs() < 1e-12 && (x[1] - 1.4).abs() < 1e-12);
    }
}
