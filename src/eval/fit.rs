//! `upshift policy fit`: learns a routing policy from labelled data and writes
//! it as policy config the orchestrator loads unchanged.
//!
//! What is learned:
//! - for classes whose items carry answer text, two logistic models over
//!   verifier findings and response features of the cheap answer (see
//!   `upshift_shared::policy::FEATURES`): one predicts that the cheap answer
//!   is right, the other that the strong tier would be right. Their difference
//!   is the accuracy an escalation is expected to buy; the *defensibility*
//!   score is its negation, and the cheap answer is accepted when the score
//!   reaches the threshold, else escalated (`low_defensibility`);
//! - for every class, smoothed accuracies of the cheap and strong models;
//!   classes without answer text get a start tier from them (strong when the
//!   expected gain is worth it), because nothing can be checked after the call.
//!
//! One knob — the expected accuracy gain that justifies the strong model —
//! trades quality for cost. It is chosen on k-fold out-of-fold predictions to
//! meet `--target-pgr` or `--max-cost-ratio`, then applied to models fitted on
//! all the data.

use super::dataset::{self, Dataset, Item};
use super::metrics::{self, CurveItem, Point};
use super::{check_columns, recorded};
use anyhow::{Context, bail};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use upshift_shared::config::Config;
use upshift_shared::policy::{
    AcceptModel, ClassCalibration, FEATURES, RoutingConfig, StartRule, estimate_ambiguity, features, sigmoid,
};
use upshift_shared::simulate::call_price;
use upshift_shared::stats::logistic;
use upshift_shared::{BlastRadius, TaskType, Tier, verify};

/// Options of `upshift policy fit`.
#[derive(clap::Args)]
pub struct FitArgs {
    /// RouteLLM-format CSV with correctness labels.
    #[arg(long)]
    pub dataset: PathBuf,
    /// Reach at least this PGR at the lowest cost.
    #[arg(long, conflicts_with = "max_cost_ratio", required_unless_present = "max_cost_ratio")]
    pub target_pgr: Option<f64>,
    /// Spend at most this fraction of the always-strong cost, at the highest PGR.
    #[arg(long)]
    pub max_cost_ratio: Option<f64>,
    /// Where to write the policy (TOML, a `[routing]` section).
    #[arg(long)]
    pub out: PathBuf,
    /// Task class for every item (default: `domain` column, else the file name stem).
    #[arg(long)]
    pub class: Option<String>,
    /// Folds for cross-validation.
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
}

/// Smoothing strength: a class's accuracy is pulled toward the overall one as
/// if `PRIOR_WEIGHT` extra items had the overall accuracy.
const PRIOR_WEIGHT: f64 = 10.0;
/// Ridge penalty on the logistic weights (not the bias).
const RIDGE: f64 = 1.0;

/// Per-item facts fitting needs.
struct Row {
    class: String,
    text: bool,
    x: Vec<f64>,
    weak_ok: bool,
    strong_ok: bool,
    weak_cost: f64,
    strong_cost: f64,
    fold: usize,
}

/// What was fitted on a set of rows.
struct Fitted {
    models: BTreeMap<String, Vec<f64>>,
    strong_models: BTreeMap<String, Vec<f64>>,
    calibration: BTreeMap<String, ClassCalibration>,
}

fn rows(cfg: &Config, ds: &Dataset, folds: usize) -> anyhow::Result<Vec<Row>> {
    let (small, strong) = (cfg.tier_model(Tier::Small), cfg.tier_model(Tier::Strong));
    ds.items
        .iter()
        .map(|it: &Item| {
            let w = recorded(it, small).context("cheap-tier answer")?;
            let s = recorded(it, strong).context("strong-tier answer")?;
            let text = it.task != TaskType::Classify;
            let findings = if text {
                verify::run(
                    &verify::default_verifiers(it.task, false, false),
                    &w.output,
                    verify::Expect::default(),
                )
            } else {
                vec![]
            };
            Ok(Row {
                class: it.class.clone(),
                text,
                x: features(&it.prompt, &w.output, &findings, None, estimate_ambiguity(&it.prompt)),
                weak_ok: w.correct == Some(true),
                strong_ok: s.correct == Some(true),
                weak_cost: call_price(small, &it.prompt, &w.output),
                strong_cost: call_price(strong, &it.prompt, &s.output),
                fold: dataset::fold_of(&it.prompt, folds),
            })
        })
        .collect()
}

fn fit(rows: &[&Row]) -> Fitted {
    let n = rows.len().max(1) as f64;
    let weak_all = rows.iter().filter(|r| r.weak_ok).count() as f64 / n;
    let strong_all = rows.iter().filter(|r| r.strong_ok).count() as f64 / n;
    let mut by_class: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        by_class.entry(&r.class).or_default().push(r);
    }
    let mut calibration = BTreeMap::new();
    let mut models = BTreeMap::new();
    let mut strong_models = BTreeMap::new();
    for (class, rs) in &by_class {
        let k = rs.len() as f64;
        let smooth = |hits: usize, prior: f64| (hits as f64 + PRIOR_WEIGHT * prior) / (k + PRIOR_WEIGHT);
        calibration.insert(
            class.to_string(),
            ClassCalibration {
                n: rs.len() as u32,
                small_accuracy: smooth(rs.iter().filter(|r| r.weak_ok).count(), weak_all),
                strong_accuracy: smooth(rs.iter().filter(|r| r.strong_ok).count(), strong_all),
            },
        );
        if rs.iter().all(|r| r.text) {
            let xs: Vec<&[f64]> = rs.iter().map(|r| r.x.as_slice()).collect();
            let ys: Vec<bool> = rs.iter().map(|r| r.weak_ok).collect();
            models.insert(class.to_string(), logistic(&xs, &ys, RIDGE));
            let ys: Vec<bool> = rs.iter().map(|r| r.strong_ok).collect();
            strong_models.insert(class.to_string(), logistic(&xs, &ys, RIDGE));
        }
    }
    Fitted {
        models,
        strong_models,
        calibration,
    }
}

/// Expected accuracy gain of sending `row` to the strong model.
fn priority(f: &Fitted, row: &Row) -> f64 {
    let cal = &f.calibration[&row.class];
    match f.models.get(&row.class) {
        Some(w) => {
            let p = |w: &[f64]| sigmoid(row.x.iter().zip(w).map(|(a, b)| a * b).sum());
            p(&f.strong_models[&row.class]) - p(w)
        }
        None => cal.strong_accuracy - cal.small_accuracy,
    }
}

fn curve_item(row: &Row, priority: f64) -> CurveItem {
    CurveItem {
        priority,
        kept: (row.weak_ok, row.weak_cost),
        escalated: (
            row.strong_ok,
            if row.text {
                row.weak_cost + row.strong_cost
            } else {
                row.strong_cost
            },
        ),
    }
}

/// Cross-validated and in-sample figures of a fit.
#[derive(Debug, Serialize)]
pub struct FitReport {
    /// Items.
    pub n: usize,
    /// Folds.
    pub folds: usize,
    /// APGR of out-of-fold predictions.
    pub cv_apgr: f64,
    /// CPT(50%) of out-of-fold predictions.
    pub cv_cpt50: Option<f64>,
    /// CPT(80%) of out-of-fold predictions.
    pub cv_cpt80: Option<f64>,
    /// The chosen out-of-fold operating point.
    pub cv_point: Point,
    /// Its cost over always-strong cost.
    pub cv_cost_ratio: f64,
    /// The knob: expected gain above which an item goes to the strong model.
    pub knob: f64,
}

/// Runs `upshift policy fit`.
pub fn run(config: Option<&std::path::Path>, args: FitArgs) -> anyhow::Result<()> {
    if args.folds < 2 {
        bail!("--folds must be at least 2");
    }
    if let Some(t) = args.target_pgr.filter(|t| !(0.0..=1.5).contains(t)) {
        bail!("--target-pgr {t} is out of range [0, 1.5]");
    }
    let cfg = Config::load_profile(Some(upshift_shared::config::REPLAY_TOML), config.as_slice())
        .context("loading configuration")?;
    let ds = dataset::load(&args.dataset, args.class.as_deref())?;
    check_columns(&cfg, &ds)?;
    let rows = rows(&cfg, &ds, args.folds)?;
    let n = rows.len() as f64;
    let (acc_w, acc_s) = (
        rows.iter().filter(|r| r.weak_ok).count() as f64 / n,
        rows.iter().filter(|r| r.strong_ok).count() as f64 / n,
    );
    let strong_cost: f64 = rows.iter().map(|r| r.strong_cost).sum();

    // Out-of-fold priorities: each fold scored by a fit on the others.
    let mut oof = vec![0.0; rows.len()];
    for f in 0..args.folds {
        let train: Vec<&Row> = rows.iter().filter(|r| r.fold != f).collect();
        let fitted = fit(&train);
        for (i, r) in rows.iter().enumerate().filter(|(_, r)| r.fold == f) {
            oof[i] = if fitted.calibration.contains_key(&r.class) {
                priority(&fitted, r)
            } else {
                0.0
            };
        }
    }
    let items: Vec<CurveItem> = rows.iter().zip(&oof).map(|(r, p)| curve_item(r, *p)).collect();
    let curve = metrics::curve(&items, acc_w, acc_s);
    let point = choose(&curve, args.target_pgr, args.max_cost_ratio, strong_cost)?;
    let report = FitReport {
        n: rows.len(),
        folds: args.folds,
        cv_apgr: metrics::apgr(&curve),
        cv_cpt50: metrics::cpt(&curve, 0.5),
        cv_cpt80: metrics::cpt(&curve, 0.8),
        cv_cost_ratio: point.cost_usd / strong_cost,
        knob: point.knob,
        cv_point: point,
    };

    let all: Vec<&Row> = rows.iter().collect();
    let fitted = fit(&all);
    let routing = policy(&cfg.routing, &fitted, &rows, report.knob, &args)?;
    let body = toml::to_string(&PolicyFile { routing }).context("serialising the policy")?;
    let header = format!(
        "# Routing policy fitted by `upshift policy fit` on {} ({} items, {}-fold CV).\n\
         # Cross-validated: APGR {:.3}, CPT(80%) {}, at the chosen point PGR {:.3} for {:.1}% of always-strong cost.\n\
         # Load it with `--config` (or layer it after your config); it only sets [routing].\n\n",
        args.dataset.display(),
        report.n,
        report.folds,
        report.cv_apgr,
        report.cv_cpt80.map_or("n/a".into(), |c| format!("{:.1}%", 100.0 * c)),
        report.cv_point.pgr,
        100.0 * report.cv_cost_ratio
    );
    std::fs::write(&args.out, header + &body).with_context(|| format!("writing {}", args.out.display()))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    println!("policy written to {}", args.out.display());
    Ok(())
}

/// The operating point meeting the target.
fn choose(curve: &[Point], target_pgr: Option<f64>, max_cost: Option<f64>, strong_cost: f64) -> anyhow::Result<Point> {
    match (target_pgr, max_cost) {
        (Some(t), _) => curve
            .iter()
            .find(|p| p.pgr >= t)
            .copied()
            .with_context(|| format!("no operating point reaches PGR {t} on this data")),
        (None, Some(c)) => curve
            .iter()
            .filter(|p| p.cost_usd / strong_cost <= c)
            .max_by(|a, b| a.pgr.total_cmp(&b.pgr))
            .copied()
            .with_context(|| format!("no operating point costs at most {c} of always-strong")),
        (None, None) => bail!("give --target-pgr or --max-cost-ratio"),
    }
}

#[derive(Serialize)]
struct PolicyFile {
    routing: RoutingConfig,
}

/// Weights by feature name, rounded to 6 decimals for a readable file.
fn named(w: &[f64]) -> BTreeMap<String, f64> {
    FEATURES
        .iter()
        .zip(w)
        .map(|(k, v)| (k.to_string(), (v * 1e6).round() / 1e6))
        .collect()
}

/// Turns a fit and a knob into routing config.
fn policy(base: &RoutingConfig, f: &Fitted, rows: &[Row], knob: f64, args: &FitArgs) -> anyhow::Result<RoutingConfig> {
    let text_classes: BTreeSet<&str> = rows.iter().filter(|r| r.text).map(|r| r.class.as_str()).collect();
    let (mut to_strong, mut to_small) = (Vec::new(), Vec::new());
    for (class, cal) in &f.calibration {
        let gain = cal.strong_accuracy - cal.small_accuracy;
        if !text_classes.contains(class.as_str()) && gain >= knob {
            to_strong.push(class.clone());
        } else {
            to_small.push(class.clone());
        }
    }
    let mut start_rules = vec![StartRule {
        blast_radius: Some(vec![BlastRadius::High]),
        tasks: None,
        classes: None,
        max_ambiguity: None,
        tier: Tier::Strong,
    }];
    for (classes, tier) in [(to_strong, Tier::Strong), (to_small, Tier::Small)] {
        if !classes.is_empty() {
            start_rules.push(StartRule {
                blast_radius: None,
                tasks: None,
                classes: Some(classes),
                max_ambiguity: None,
                tier,
            });
        }
    }
    start_rules.extend(base.start_rules.iter().filter(|r| r.classes.is_none()).cloned());
    let accept_models = f
        .models
        .iter()
        .map(|(class, w)| AcceptModel {
            tier: Tier::Small,
            classes: Some(vec![class.clone()]),
            // Escalate when P(strong right) − P(this right) ≥ knob: accept when the score is above −knob.
            threshold: (-knob).clamp(-1.0, 1.0),
            weights: named(w),
            strong_weights: Some(named(&f.strong_models[class])),
        })
        .collect();
    let target = match (args.target_pgr, args.max_cost_ratio) {
        (Some(t), _) => format!("pgr{t}"),
        (_, Some(c)) => format!("cost{c}"),
        _ => String::new(),
    };
    let stem = args.dataset.file_stem().and_then(|s| s.to_str()).unwrap_or("data");
    let routing = RoutingConfig {
        policy_version: format!("fit-{stem}-{target}"),
        default_tier: base.default_tier,
        at_top_tier: base.at_top_tier,
        start_rules,
        accept: base.accept.clone(),
        accept_models,
        calibration: f.calibration.clone(),
    };
    routing
        .validate()
        .map_err(|(k, r)| anyhow::anyhow!("fitted policy invalid at routing.{k}: {r}"))?;
    Ok(routing)
}
