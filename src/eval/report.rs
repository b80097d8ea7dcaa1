//! The per-task-class table and the text rendering of an evaluation.

use super::Evaluation;
use super::dataset::Dataset;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use upshift_shared::Tier;
use upshift_shared::simulate::SimRoute;

/// One task class, in the essay's table shape.
#[derive(Debug, Clone, Serialize)]
pub struct ClassRow {
    /// Task class.
    pub task_class: String,
    /// Items.
    pub n: usize,
    /// Per tier: answers accepted there, the share of those that were right, and the cost spent there.
    pub tiers: BTreeMap<Tier, TierCell>,
    /// Share of items escalated at least once.
    pub escalation_rate: f64,
    /// Escalations whose answer was already right.
    pub needless_escalations: usize,
    /// Reason code → escalations it drove.
    pub reasons: BTreeMap<String, usize>,
    /// Accuracy of the class.
    pub accuracy: f64,
}

/// One tier within a class.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TierCell {
    /// Answers accepted on this tier.
    pub accepted: usize,
    /// Share of those that were right.
    pub success_rate: f64,
    /// Cost of every call made on this tier.
    pub cost_usd: f64,
    #[serde(skip)]
    right: usize,
}

/// Builds the per-class rows from the routes.
pub fn class_rows(ds: &Dataset, routes: &[SimRoute]) -> Vec<ClassRow> {
    let mut rows: BTreeMap<&str, ClassRow> = BTreeMap::new();
    for (item, route) in ds.items.iter().zip(routes) {
        let row = rows.entry(&item.class).or_insert_with(|| ClassRow {
            task_class: item.class.clone(),
            n: 0,
            tiers: BTreeMap::new(),
            escalation_rate: 0.0,
            needless_escalations: 0,
            reasons: BTreeMap::new(),
            accuracy: 0.0,
        });
        row.n += 1;
        row.accuracy += f64::from(u8::from(route.correct));
        let mut escalated = false;
        for a in &route.attempts {
            let cell = row.tiers.entry(a.tier).or_default();
            cell.cost_usd += a.cost_usd;
            match a.decision {
                // The answer the route ended with, defended or not.
                "accept" | "unresolved" => {
                    cell.accepted += 1;
                    cell.right += usize::from(a.correct == Some(true));
                }
                "escalate" => {
                    escalated = true;
                    row.needless_escalations += usize::from(a.correct == Some(true));
                    for r in &a.reasons {
                        *row.reasons.entry(r.as_str().to_string()).or_default() += 1;
                    }
                }
                _ => {}
            }
        }
        row.escalation_rate += f64::from(u8::from(escalated));
    }
    rows.into_values()
        .map(|mut r| {
            r.escalation_rate /= r.n as f64;
            r.accuracy /= r.n as f64;
            for c in r.tiers.values_mut() {
                c.success_rate = if c.accepted == 0 {
                    0.0
                } else {
                    c.right as f64 / c.accepted as f64
                };
            }
            r
        })
        .collect()
}

fn pct(x: Option<f64>) -> String {
    x.map_or("n/a".into(), |v| format!("{:.1}%", 100.0 * v))
}

/// The evaluation as text.
pub fn render(ev: &Evaluation) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "items {}  accuracy {:.3}  PGR {:.3}", ev.n, ev.accuracy, ev.pgr);
    let _ = writeln!(
        out,
        "defended {:.1}% of items, {} of them right; the rest ended unresolved or failed",
        100.0 * ev.defended_share,
        ev.defended_accuracy
            .map_or("n/a".into(), |a| format!("{:.1}%", 100.0 * a))
    );
    let _ = writeln!(
        out,
        "cost ${:.4}  always-strong ${:.4}  cost ratio {:.3}  strong share {:.1}%",
        ev.cost_usd,
        ev.always_strong_cost_usd,
        ev.cost_ratio,
        100.0 * ev.strong_share
    );
    let _ = writeln!(
        out,
        "APGR {:.3}  CPT(50%) {}  CPT(80%) {}  cost at PGR 0.8: {} of always-strong\n",
        ev.apgr,
        pct(ev.cpt50),
        pct(ev.cpt80),
        pct(ev.cost_ratio_at_pgr80)
    );
    let mut rows = vec![
        ["router", "accuracy", "cost $", "strong share"]
            .map(String::from)
            .to_vec(),
    ];
    rows.push(vec![
        "policy".into(),
        format!("{:.3}", ev.accuracy),
        format!("{:.4}", ev.cost_usd),
        pct(Some(ev.strong_share)),
    ]);
    for (name, b) in &ev.baselines {
        rows.push(vec![
            name.to_string(),
            format!("{:.3}", b.accuracy),
            format!("{:.4}", b.cost_usd),
            pct(Some(b.strong_share)),
        ]);
    }
    out.push_str(&crate::table::render(&rows, None));
    out.push('\n');
    let mut rows = vec![
        [
            "task_class",
            "n",
            "acc",
            "small ok/acc/$",
            "medium ok/acc/$",
            "strong ok/acc/$",
            "esc",
            "needless",
            "reasons",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for c in &ev.classes {
        let cell = |t: Tier| {
            c.tiers.get(&t).map_or("-".into(), |x| {
                format!("{}/{:.2}/{:.4}", x.accepted, x.success_rate, x.cost_usd)
            })
        };
        let mut reasons: Vec<(&String, &usize)> = c.reasons.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1));
        rows.push(vec![
            c.task_class.clone(),
            c.n.to_string(),
            format!("{:.3}", c.accuracy),
            cell(Tier::Small),
            cell(Tier::Medium),
            cell(Tier::Strong),
            pct(Some(c.escalation_rate)),
            c.needless_escalations.to_string(),
            reasons
                .iter()
                .take(3)
                .map(|(r, n)| format!("{r}={n}"))
                .collect::<Vec<_>>()
                .join(","),
        ]);
    }
    out.push_str(&crate::table::render(&rows, None));
    out
}
