//! Quality–cost metrics as RouteLLM defines them.
//!
//! PGR (performance gap recovered) = (acc − acc_weak) / (acc_strong − acc_weak).
//! The operating curve is PGR against the share of items that reach the strong
//! model, traced by sweeping a policy's knob from "never escalate" to "always";
//! APGR is its area by trapezoids over share ∈ [0, 1]; CPT(x) is the smallest
//! strong share whose PGR reaches x (linear between curve points).

use serde::Serialize;

/// One operating point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    /// Share of items that reached the strong model.
    pub strong_share: f64,
    /// Accuracy.
    pub accuracy: f64,
    /// Total cost.
    pub cost_usd: f64,
    /// PGR.
    pub pgr: f64,
    /// The knob value that gives this point (escalate items with priority above it).
    pub knob: f64,
}

/// An item as the curve sees it: its escalation priority and both outcomes.
#[derive(Debug, Clone, Copy)]
pub struct CurveItem {
    /// Higher = escalated first.
    pub priority: f64,
    /// Correct and cost when kept on the cheap tier.
    pub kept: (bool, f64),
    /// Correct and cost when sent to the strong tier.
    pub escalated: (bool, f64),
}

/// PGR of `acc` given the weak and strong accuracies (0 when they are equal).
pub fn pgr(acc: f64, weak: f64, strong: f64) -> f64 {
    if (strong - weak).abs() < 1e-12 {
        0.0
    } else {
        (acc - weak) / (strong - weak)
    }
}

/// The operating curve: items escalated in priority order, ties together.
pub fn curve(items: &[CurveItem], weak_acc: f64, strong_acc: f64) -> Vec<Point> {
    let n = items.len().max(1) as f64;
    let mut order: Vec<&CurveItem> = items.iter().collect();
    order.sort_by(|a, b| b.priority.total_cmp(&a.priority));
    let mut correct: f64 = items.iter().filter(|i| i.kept.0).count() as f64;
    let mut cost: f64 = items.iter().map(|i| i.kept.1).sum();
    let point = |escalated: usize, correct: f64, cost: f64, knob: f64| Point {
        strong_share: escalated as f64 / n,
        accuracy: correct / n,
        cost_usd: cost,
        pgr: pgr(correct / n, weak_acc, strong_acc),
        knob,
    };
    let mut out = vec![point(0, correct, cost, f64::INFINITY)];
    let mut i = 0;
    while i < order.len() {
        let p = order[i].priority;
        while i < order.len() && order[i].priority == p {
            let it = order[i];
            correct += f64::from(u8::from(it.escalated.0)) - f64::from(u8::from(it.kept.0));
            cost += it.escalated.1 - it.kept.1;
            i += 1;
        }
        out.push(point(i, correct, cost, p));
    }
    out
}

/// Area under PGR over strong share, by trapezoids.
pub fn apgr(curve: &[Point]) -> f64 {
    curve
        .windows(2)
        .map(|w| (w[1].strong_share - w[0].strong_share) * (w[0].pgr + w[1].pgr) / 2.0)
        .sum()
}

/// Smallest strong share reaching PGR `x`, interpolated; `None` if never reached.
pub fn cpt(curve: &[Point], x: f64) -> Option<f64> {
    cpt_point(curve, x).map(|p| p.strong_share)
}

/// The interpolated point where PGR first reaches `x`.
pub fn cpt_point(curve: &[Point], x: f64) -> Option<Point> {
    if let Some(first) = curve.first()
        && first.pgr >= x
    {
        return Some(*first);
    }
    curve.windows(2).find(|w| w[1].pgr >= x).map(|w| {
        let (a, b) = (w[0], w[1]);
        let t = if b.pgr > a.pgr {
            ((x - a.pgr) / (b.pgr - a.pgr)).clamp(0.0, 1.0)
        } else {
            1.0
        };
        let lerp = |u: f64, v: f64| u + t * (v - u);
        Point {
            strong_share: lerp(a.strong_share, b.strong_share),
            accuracy: lerp(a.accuracy, b.accuracy),
            cost_usd: lerp(a.cost_usd, b.cost_usd),
            pgr: x,
            knob: b.knob,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(priority: f64, weak: bool, strong: bool) -> CurveItem {
        CurveItem {
            priority,
            kept: (weak, 1.0),
            escalated: (strong, 10.0),
        }
    }

    #[test]
    fn a_perfect_router_and_a_useless_one() {
        // Weak is right on 2 of 4, strong on 4 of 4.
        let perfect = [
            item(0.9, false, true),
            item(0.8, false, true),
            item(0.1, true, true),
            item(0.0, true, true),
        ];
        let c = curve(&perfect, 0.5, 1.0);
        assert_eq!(c.len(), 5);
        assert_eq!(c[2].pgr, 1.0);
        assert!((apgr(&c) - 0.75).abs() < 1e-12, "{}", apgr(&c));
        assert_eq!(cpt(&c, 0.5), Some(0.25));
        assert_eq!(cpt(&c, 0.8), Some(0.4));
        let p = cpt_point(&c, 0.5).unwrap();
        assert_eq!(p.cost_usd, 13.0);
        // All tied: one straight line from (0, 0) to (1, 1), area 0.5.
        let tied = perfect.map(|i| CurveItem { priority: 0.5, ..i });
        assert!((apgr(&curve(&tied, 0.5, 1.0)) - 0.5).abs() < 1e-12);
    }
}
