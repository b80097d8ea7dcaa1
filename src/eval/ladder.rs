//! `upshift policy fit-ladder`: the local tiers' acceptance thresholds,
//! fitted from labelled tasks with the same bound as every other accept.
//!
//! Every labelled item (eval/tasks-labelled.jsonl: classify and extract
//! tasks written for this, not the demo's own eight) runs on every tier's
//! model in this process. For each (tier, task class) the answers that
//! pass their verifiers are sorted by the model's confidence; the threshold
//! is the lowest confidence at which the one-sided Clopper–Pearson upper
//! bound of the false-accept rate on the `dev` items meets the target (5%
//! at 90%). A tier with no such threshold is never trusted for that class
//! ([`NEVER_TRUSTED`]): its answers escalate, and at the top the step ends
//! unresolved. The `test` items are only reported.

use crate::tasks;
use anyhow::{Context, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::PathBuf;
use upshift_shared::config::Config;
use upshift_shared::policy::NEVER_TRUSTED;
use upshift_shared::risk::{Point, best, curve};
use upshift_shared::stats::clopper_pearson_upper;
use upshift_shared::verify;
use upshift_shared::{TaskType, Tier};
use upshift_worker::providers::{ModelProvider, Provider};

/// Options of `upshift policy fit-ladder`.
#[derive(clap::Args)]
pub struct LadderArgs {
    /// The labelled tasks (JSON Lines of {id, split, task, input, labels | output_schema, expected}).
    #[arg(long, default_value = "eval/tasks-labelled.jsonl")]
    labelled: PathBuf,
    /// Write the thresholds (a policy file for --config) here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The false-accept rate the bound must meet …
    #[arg(long, default_value_t = 0.05)]
    target: f64,
    /// … at this one-sided confidence.
    #[arg(long, default_value_t = 0.9)]
    confidence: f64,
    /// Only the first N items (of each split), for a quick look.
    #[arg(long)]
    limit: Option<usize>,
}

/// One labelled task.
#[derive(Debug, Clone, Deserialize)]
struct Item {
    id: String,
    split: String,
    task: TaskType,
    input: String,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    output_schema: Option<serde_json::Value>,
    expected: serde_json::Value,
}

/// What one tier made of one item.
struct Outcome {
    split: String,
    class: String,
    confidence: f64,
    passed: bool,
    correct: bool,
}

fn load(path: &std::path::Path) -> anyhow::Result<Vec<Item>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let item: Item = serde_json::from_str(line).with_context(|| format!("{} line {}", path.display(), i + 1))?;
        if !["dev", "test"].contains(&item.split.as_str()) {
            bail!("{} line {}: split must be dev or test", path.display(), i + 1);
        }
        out.push(item);
    }
    Ok(out)
}

/// The task message of `item` on `tier`.
fn message(item: &Item, tier: Tier) -> anyhow::Result<upshift_shared::messages::TaskMessage> {
    crate::tasks::direct_task(
        tier,
        &serde_json::json!(item.task),
        &serde_json::json!(item.input),
        &serde_json::json!(item.labels),
        &serde_json::json!(item.output_schema),
    )
}

/// Runs every item on every tier, fits, prints, writes.
pub async fn run(cfg: &Config, args: LadderArgs) -> anyhow::Result<()> {
    let mut items = load(&args.labelled)?;
    if let Some(n) = args.limit {
        let (mut dev, mut test) = (0, 0);
        items.retain(|i| {
            let c = if i.split == "dev" { &mut dev } else { &mut test };
            *c += 1;
            *c <= n
        });
    }
    let mut outcomes: BTreeMap<(Tier, String), Vec<Outcome>> = BTreeMap::new();
    for &tier in Tier::ALL {
        let model = cfg.tier_model(tier);
        let provider = Provider::from_config(model, &cfg.worker.model_dir())?;
        let started = std::time::Instant::now();
        for item in &items {
            let msg = message(item, tier)?;
            let c = provider
                .complete(&msg)
                .await
                .map_err(|e| anyhow::anyhow!("{} on {tier}: {e}", item.id))?;
            let kinds = verify::default_verifiers(msg.task, msg.output_schema.is_some(), !msg.labels.is_empty());
            let expect = verify::Expect {
                rag: None,
                schema: msg.output_schema.as_ref(),
                labels: &msg.labels,
                input: Some(&msg.input),
            };
            let class = item.task.as_str().to_string();
            outcomes.entry((tier, class.clone())).or_default().push(Outcome {
                split: item.split.clone(),
                class,
                // A provider without a confidence signal is judged by its verifiers alone.
                confidence: c.confidence.unwrap_or(1.0),
                passed: verify::run(&kinds, &c.output, expect).is_empty(),
                correct: tasks::is_correct(&item.expected, &c.output),
            });
        }
        eprintln!(
            "{tier} ({}): {} items in {:.0}s",
            model.name,
            items.len(),
            started.elapsed().as_secs_f64()
        );
    }
    let fits = fit(&outcomes, args.target, args.confidence);
    print!("{}", table(&fits, args.confidence));
    if let Some(path) = &args.out {
        let source = format!("{} ({} items)", args.labelled.display(), items.len());
        std::fs::write(path, to_toml(&fits, args.target, args.confidence, &source))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("thresholds written to {} (use it with --config)", path.display());
    }
    Ok(())
}

/// One (tier, class) fitted.
struct LadderFit {
    tier: Tier,
    class: String,
    dev_n: usize,
    dev_right: usize,
    /// The chosen point on the dev items, if one meets the target.
    chosen: Option<Point>,
    threshold: f64,
    /// (accepted, wrong) of the test items at that threshold.
    test: (usize, usize),
}

fn fit(outcomes: &BTreeMap<(Tier, String), Vec<Outcome>>, target: f64, confidence: f64) -> Vec<LadderFit> {
    outcomes
        .iter()
        .map(|((tier, class), os)| {
            let dev: Vec<&Outcome> = os.iter().filter(|o| o.split == "dev").collect();
            let scored: Vec<(f64, bool)> = dev
                .iter()
                .filter(|o| o.passed)
                .map(|o| (o.confidence, o.correct))
                .collect();
            let chosen = best(&curve(&scored, dev.len(), confidence), target);
            let threshold = chosen.as_ref().map_or(NEVER_TRUSTED, |p| p.threshold);
            let accepted: Vec<&Outcome> = os
                .iter()
                .filter(|o| o.split == "test" && o.passed && threshold < NEVER_TRUSTED && o.confidence >= threshold)
                .collect();
            debug_assert!(os.iter().all(|o| &o.class == class));
            LadderFit {
                tier: *tier,
                class: class.clone(),
                dev_n: dev.len(),
                dev_right: dev.iter().filter(|o| o.correct).count(),
                chosen,
                threshold,
                test: (accepted.len(), accepted.iter().filter(|o| !o.correct).count()),
            }
        })
        .collect()
}

fn table(fits: &[LadderFit], confidence: f64) -> String {
    let mut rows = vec![
        [
            "tier",
            "class",
            "dev right",
            "threshold",
            "dev accepted (wrong, bound)",
            "test accepted (wrong, bound)",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for f in fits {
        let dev = f.chosen.as_ref().map_or("none meets the target".to_string(), |p| {
            format!("{} ({}, ≤ {:.1}%)", p.defended, p.wrong, 100.0 * p.bound)
        });
        let (n, k) = f.test;
        rows.push(vec![
            f.tier.to_string(),
            f.class.clone(),
            format!("{}/{}", f.dev_right, f.dev_n),
            if f.threshold >= NEVER_TRUSTED {
                "never".into()
            } else {
                format!("{:.4}", f.threshold)
            },
            dev,
            format!("{n} ({k}, ≤ {:.1}%)", 100.0 * clopper_pearson_upper(k, n, confidence)),
        ]);
    }
    crate::table::render(&rows, None)
}

fn to_toml(fits: &[LadderFit], target: f64, confidence: f64, source: &str) -> String {
    let mut out = format!(
        "# The local tiers' acceptance thresholds, written by `upshift policy fit-ladder` on {source}:\n\
         # the lowest confidence whose one-sided {:.0}% Clopper-Pearson bound of the false-accept rate on the\n\
         # dev items is at most {:.0}%; 1.0 = never trusted for the class.\n",
        100.0 * confidence,
        100.0 * target
    );
    let mut by_tier: BTreeMap<String, Vec<&LadderFit>> = BTreeMap::new();
    for f in fits {
        by_tier.entry(f.tier.to_string()).or_default().push(f);
    }
    for (tier, fs) in by_tier {
        let _ = writeln!(out, "[routing.accept.{tier}.by_class]");
        for f in fs {
            let _ = match &f.chosen {
                Some(p) => writeln!(
                    out,
                    "# {}: dev {}/{} right; {} accepted, {} wrong, bound {:.3}",
                    f.class, f.dev_right, f.dev_n, p.defended, p.wrong, p.bound
                ),
                None => writeln!(
                    out,
                    "# {}: dev {}/{} right; no threshold meets the target",
                    f.class, f.dev_right, f.dev_n
                ),
            };
            let _ = writeln!(out, "{} = {:.4}", f.class, f.threshold);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(split: &str, confidence: f64, correct: bool) -> Outcome {
        Outcome {
            split: split.into(),
            class: "classify".into(),
            confidence,
            passed: true,
            correct,
        }
    }

    #[test]
    fn a_class_is_trusted_from_where_its_bound_meets_the_target() {
        // 50 confident right answers, then a wrong one and a tail of mixed.
        let mut os: Vec<Outcome> = (0..50).map(|i| o("dev", 0.99 - i as f64 * 0.001, true)).collect();
        os.push(o("dev", 0.6, false));
        os.extend((0..10).map(|i| o("dev", 0.5 - i as f64 * 0.01, i % 2 == 0)));
        os.push(o("test", 0.99, true));
        os.push(o("test", 0.3, false));
        let fits = fit(
            &BTreeMap::from([((Tier::Small, "classify".to_string()), os)]),
            0.05,
            0.9,
        );
        let f = &fits[0];
        assert!((f.threshold - (0.99 - 49.0 * 0.001)).abs() < 1e-9, "{}", f.threshold);
        assert_eq!(f.test, (1, 0), "the wrong test answer is under the threshold");
        // Too few right answers: never trusted.
        let few: Vec<Outcome> = (0..20).map(|_| o("dev", 0.9, true)).collect();
        let fits = fit(
            &BTreeMap::from([((Tier::Small, "classify".to_string()), few)]),
            0.05,
            0.9,
        );
        assert_eq!(fits[0].threshold, NEVER_TRUSTED);
        let toml = to_toml(&fits, 0.05, 0.9, "t");
        assert!(
            toml.contains("[routing.accept.small.by_class]\n") && toml.contains("classify = 1.0000"),
            "{toml}"
        );
    }
}
