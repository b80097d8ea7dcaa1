//! `upshift eval`: runs a labelled dataset through the routing policy
//! offline, in-process, with the same start rule, verifiers and decision code
//! the orchestrator runs live ([`upshift_shared::simulate`]), and reports
//! accuracy, cost, baselines and RouteLLM's quality–cost metrics.

pub mod dataset;
pub mod fit;
pub mod ladder;
mod live;
pub mod metrics;
mod plot;
pub mod rag;
mod report;

use anyhow::{Context, bail};
use dataset::{Dataset, Item};
use metrics::{CurveItem, Point};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use upshift_shared::config::{Config, ModelConfig, ProviderConfig, REPLAY_TOML};
use upshift_shared::policy::{accept_model, estimate_ambiguity, features};
use upshift_shared::simulate::{Recorded, SimItem, SimRoute, call_price, simulate};
use upshift_shared::{BlastRadius, TaskType, Tier, verify};

/// Options of `upshift eval`.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct EvalArgs {
    /// `rag`: a labelled question set through the live system.
    #[command(subcommand)]
    pub command: Option<EvalCommand>,
    /// RouteLLM-format CSV with correctness labels.
    #[arg(long, required = true)]
    pub dataset: Option<PathBuf>,
    /// Policy file (e.g. from `upshift policy fit`) layered over the config.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Task class for every item (default: `domain` column, else the file name stem).
    #[arg(long)]
    pub class: Option<String>,
    /// Blast radius of every item.
    #[arg(long, default_value = "low")]
    pub blast_radius: BlastRadius,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Write the cost–accuracy curve as SVG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Also send every item through the running orchestrator (`--api`) and
    /// check that each live route equals the offline one.
    #[arg(long)]
    pub live: bool,
    /// With --live: only the first N items.
    #[arg(long)]
    pub limit: Option<usize>,
}

/// Evaluations other than the offline routing one.
#[derive(clap::Subcommand)]
pub enum EvalCommand {
    /// Rag jobs on a labelled question set, through the running system
    /// (`--api`): retrieval, answers, defended and false-defended rates.
    Rag(rag::RagEvalArgs),
}

/// A policy's figures on a dataset.
#[derive(Debug, Serialize)]
pub struct Evaluation {
    /// Items.
    pub n: usize,
    /// Accuracy of the accepted answers (a failed step counts as wrong).
    pub accuracy: f64,
    /// Share of items whose answer was defended (not unresolved, not failed).
    pub defended_share: f64,
    /// Accuracy of the defended answers alone.
    pub defended_accuracy: Option<f64>,
    /// Cost of every call, cheap attempts included.
    pub cost_usd: f64,
    /// Cost of sending every item to the strong model once.
    pub always_strong_cost_usd: f64,
    /// `cost_usd / always_strong_cost_usd`.
    pub cost_ratio: f64,
    /// Share of items that reached the strong tier.
    pub strong_share: f64,
    /// PGR of the policy's accuracy.
    pub pgr: f64,
    /// Area under the policy's PGR–strong-share curve.
    pub apgr: f64,
    /// Strong share needed for PGR 0.5.
    pub cpt50: Option<f64>,
    /// Strong share needed for PGR 0.8.
    pub cpt80: Option<f64>,
    /// Cost at PGR 0.8 over always-strong cost.
    pub cost_ratio_at_pgr80: Option<f64>,
    /// The most accurate operating point costing at most 85% of always-strong.
    pub best_at_85pct_cost: Option<Point>,
    /// Baselines on the same items.
    pub baselines: BTreeMap<&'static str, Baseline>,
    /// Per task class.
    pub classes: Vec<report::ClassRow>,
    /// The operating curve.
    pub curve: Vec<Point>,
}

/// A baseline router's figures.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Baseline {
    /// Accuracy.
    pub accuracy: f64,
    /// Cost.
    pub cost_usd: f64,
    /// Share of strong calls.
    pub strong_share: f64,
}

/// The dataset column a model answers from.
pub fn column_of(model: &ModelConfig) -> &str {
    match &model.provider {
        ProviderConfig::Replay { column, .. } => column,
        _ => "",
    }
}

/// The recorded answer of `model` for `item`.
pub fn recorded<'a>(item: &'a Item, model: &ModelConfig) -> Option<&'a Recorded> {
    item.answers.get(column_of(model))
}

/// Checks that every tier's model has a column in the dataset.
pub fn check_columns(cfg: &Config, ds: &Dataset) -> anyhow::Result<()> {
    for tier in Tier::ALL {
        let col = column_of(cfg.tier_model(*tier));
        if !ds.models.iter().any(|m| m == col) {
            bail!(
                "tier {tier} answers from column `{col}`, which the dataset lacks (it has: {})",
                ds.models.join(", ")
            );
        }
    }
    Ok(())
}

/// The simulator's view of an item.
pub fn sim_item<'a>(item: &'a Item, blast: BlastRadius) -> SimItem<'a> {
    SimItem {
        input: &item.prompt,
        task: item.task,
        class: &item.class,
        ambiguity: estimate_ambiguity(&item.prompt),
        blast,
    }
}

/// Evaluates the policy in `cfg` on `ds`.
pub fn evaluate(cfg: &Config, ds: &Dataset, blast: BlastRadius) -> anyhow::Result<Evaluation> {
    check_columns(cfg, ds)?;
    let (small, strong) = (cfg.tier_model(Tier::Small), cfg.tier_model(Tier::Strong));
    let n = ds.items.len();
    if n == 0 {
        bail!("the dataset has no items");
    }
    let mut routes = Vec::with_capacity(n);
    let mut curve_items = Vec::with_capacity(n);
    let (mut weak_ok, mut strong_ok, mut oracle_ok) = (0usize, 0usize, 0usize);
    let (mut weak_cost, mut strong_cost, mut oracle_cost) = (0.0, 0.0, 0.0);
    for item in &ds.items {
        let route = simulate(cfg, sim_item(item, blast), |m| recorded(item, m).cloned());
        let w = recorded(item, small).context("small-tier answer")?;
        let s = recorded(item, strong).context("strong-tier answer")?;
        let (wc, sc) = (
            call_price(small, &item.prompt, &w.output),
            call_price(strong, &item.prompt, &s.output),
        );
        let (w_ok, s_ok) = (w.correct == Some(true), s.correct == Some(true));
        weak_ok += usize::from(w_ok);
        strong_ok += usize::from(s_ok);
        oracle_ok += usize::from(w_ok || s_ok);
        weak_cost += wc;
        strong_cost += sc;
        oracle_cost += if w_ok || !s_ok { wc } else { sc };
        let cascade = item.task != TaskType::Classify;
        curve_items.push(CurveItem {
            priority: priority(cfg, item, &w.output, &route),
            kept: (w_ok, wc),
            escalated: (s_ok, if cascade { wc + sc } else { sc }),
        });
        routes.push(route);
    }
    let nf = n as f64;
    let (acc_w, acc_s) = (weak_ok as f64 / nf, strong_ok as f64 / nf);
    let accuracy = routes.iter().filter(|r| r.correct).count() as f64 / nf;
    let defended = routes.iter().filter(|r| r.defended).count();
    let defended_right = routes.iter().filter(|r| r.defended && r.correct).count();
    let cost: f64 = routes.iter().map(|r| r.cost_usd).sum();
    let share = routes
        .iter()
        .filter(|r| r.attempts.iter().any(|a| a.tier == Tier::Strong))
        .count() as f64
        / nf;
    let curve = metrics::curve(&curve_items, acc_w, acc_s);
    let at80 = metrics::cpt_point(&curve, 0.8);
    let mut baselines = BTreeMap::new();
    baselines.insert(
        "always_weak",
        Baseline {
            accuracy: acc_w,
            cost_usd: weak_cost,
            strong_share: 0.0,
        },
    );
    baselines.insert(
        "always_strong",
        Baseline {
            accuracy: acc_s,
            cost_usd: strong_cost,
            strong_share: 1.0,
        },
    );
    baselines.insert(
        "random",
        Baseline {
            accuracy: acc_w + share * (acc_s - acc_w),
            cost_usd: (1.0 - share) * weak_cost + share * strong_cost,
            strong_share: share,
        },
    );
    baselines.insert(
        "oracle",
        Baseline {
            accuracy: oracle_ok as f64 / nf,
            cost_usd: oracle_cost,
            strong_share: curve_items.iter().filter(|c| !c.kept.0 && c.escalated.0).count() as f64 / nf,
        },
    );
    Ok(Evaluation {
        n,
        accuracy,
        defended_share: defended as f64 / nf,
        defended_accuracy: (defended > 0).then(|| defended_right as f64 / defended as f64),
        cost_usd: cost,
        always_strong_cost_usd: strong_cost,
        cost_ratio: cost / strong_cost,
        strong_share: share,
        pgr: metrics::pgr(accuracy, acc_w, acc_s),
        apgr: metrics::apgr(&curve),
        cpt50: metrics::cpt(&curve, 0.5),
        cpt80: at80.map(|p| p.strong_share),
        cost_ratio_at_pgr80: at80.map(|p| p.cost_usd / strong_cost),
        best_at_85pct_cost: curve
            .iter()
            .filter(|p| p.cost_usd <= 0.85 * strong_cost)
            .max_by(|a, b| a.accuracy.total_cmp(&b.accuracy))
            .copied(),
        baselines,
        classes: report::class_rows(ds, &routes),
        curve,
    })
}

/// How strongly the policy wants `item` on the strong model: the expected
/// accuracy gain of escalating (fitted policies: the negated defensibility
/// score, or a class's calibrated gain), else 1 when this policy's route
/// reached the strong tier and 0 when it did not.
fn priority(cfg: &Config, item: &Item, weak_output: &str, route: &SimRoute) -> f64 {
    let cal = cfg.routing.calibration.get(&item.class);
    if let Some(m) = accept_model(&cfg.routing, Tier::Small, &item.class).filter(|m| m.reads_output()) {
        let findings = verify::run(
            &verify::default_verifiers(item.task, false, false),
            weak_output,
            verify::Expect::default(),
        );
        let score = m.score(&features(
            &item.prompt,
            weak_output,
            &findings,
            None,
            estimate_ambiguity(&item.prompt),
        ));
        return match (&m.strong_weights, cal) {
            (Some(_), _) => -score,
            (None, c) => c.map_or(1.0, |c| c.strong_accuracy) - score,
        };
    }
    if let Some(c) = cal {
        return c.strong_accuracy - c.small_accuracy;
    }
    f64::from(u8::from(route.attempts.iter().any(|a| a.tier == Tier::Strong)))
}

/// Runs `upshift eval`; with `--live`, against the orchestrator at `api`.
pub async fn run(config: Option<&std::path::Path>, args: EvalArgs, api: &str, key: Option<&str>) -> anyhow::Result<()> {
    let mut layers: Vec<&std::path::Path> = config.into_iter().collect();
    if let Some(p) = &args.policy {
        layers.push(p);
    }
    if let Some(EvalCommand::Rag(rag_args)) = args.command {
        let client = crate::client::Client::new(api, key)?;
        let cfg = Config::load_profile(None, &layers).context("loading configuration")?;
        return rag::run(&client, &cfg, rag_args).await;
    }
    let dataset = args.dataset.clone().context("--dataset is required")?;
    let cfg = Config::load_profile(Some(REPLAY_TOML), &layers).context("loading configuration")?;
    let mut ds = dataset::load(&dataset, args.class.as_deref())?;
    if let Some(n) = args.limit {
        ds.items.truncate(n);
    }
    if args.live {
        return live::run(&cfg, &ds, args.blast_radius, api, key).await;
    }
    let started = std::time::Instant::now();
    let ev = evaluate(&cfg, &ds, args.blast_radius)?;
    let elapsed = started.elapsed();
    if let Some(path) = &args.plot {
        plot::write(path, &ev, &dataset.display().to_string())?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&ev)?);
    } else {
        print!("{}", report::render(&ev));
        println!(
            "evaluated {} items in {:.3}s (policy {})",
            ev.n,
            elapsed.as_secs_f64(),
            cfg.routing.policy_version
        );
        if let Some(p) = &args.plot {
            println!("plot written to {}", p.display());
        }
        if let Some(p) = &ev.best_at_85pct_cost {
            println!(
                "best accuracy within 85% of always-strong cost: {:.3} at {:.1}% of its cost ({:.1}% strong)",
                p.accuracy,
                100.0 * p.cost_usd / ev.always_strong_cost_usd,
                100.0 * p.strong_share
            );
        }
    }
    Ok(())
}
