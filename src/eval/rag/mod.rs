//! `upshift eval rag`: a labelled question set run through the live system,
//! one `rag` job per question, scored against the accepted answers and the
//! pages that hold them.
//!
//! Reported per split (tune on `dev`, report `test` too): retrieval hit@1
//! and hit@k of the answer's page, answer match, cited-page match, the
//! defended rate, the false-defended rate (the job said defended and the
//! answer is wrong, or the collection does not answer the question),
//! refusals of unanswerable questions, cost against always-strong, and p50
//! / p95 time per step and per job. `--fit` turns the run's extraction
//! and critique decisions into trust thresholds per tier ([`fit`]).

mod fit;
pub mod replay;
pub mod score;

use crate::client::Client;
use anyhow::{Context, bail};
use score::{Question, Record, Summary, score, summarise};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The splits of the question sets: `dev`, `dev2`, `dev3`, `udev`, `udev2` and `udev3` are
/// calibration; `test`, `clean`, `clean2`, `uclean`, `uclean2` and `heldout`
/// are only ever reported (a fit refuses them, [`replay::TEST_SPLITS`]);
/// `holdout` and `fresh` …
/// `fresh7` of the PostgreSQL set were each written before a change to the
/// rules of an earlier version and run with it (docs/rag.md tells the
/// history of each); they are calibration data now.
const SPLITS: &[&str] = &[
    "dev", "dev2", "dev3", "udev", "udev2", "udev3", "test", "clean", "clean2", "uclean", "uclean2", "heldout",
    "holdout", "fresh", "fresh2", "fresh3", "fresh4", "fresh5", "fresh6", "fresh7",
];

/// Options of `upshift eval rag`.
#[derive(clap::Args)]
pub struct RagEvalArgs {
    /// The collection the questions are about (see `upshift ingest`).
    #[arg(long)]
    collection: String,
    /// The labelled questions: JSON Lines of {id, split, kind, question, answers, pages}.
    #[arg(long)]
    questions: PathBuf,
    /// Only this split (`dev`, `test`, `holdout` or a `fresh` split); all by default.
    #[arg(long)]
    split: Option<String>,
    /// Only the first N questions (of the split).
    #[arg(long)]
    limit: Option<usize>,
    /// Blast radius of every job.
    #[arg(long, default_value = "low")]
    blast_radius: String,
    /// Give up on a job after this many seconds.
    #[arg(long, default_value_t = 900)]
    job_timeout_secs: u64,
    /// Write the fitted trust thresholds of each tier's extraction and
    /// critique (a policy file) here.
    #[arg(long)]
    fit: Option<PathBuf>,
    /// Score and fit the records of an earlier `--json` run instead of
    /// asking the questions again.
    #[arg(long)]
    records: Option<PathBuf>,
    /// Precision a trusted tier's answers must reach (with --fit): 0.95
    /// for the 5% false-defended target …
    #[arg(long, default_value_t = 0.95)]
    target_precision: f64,
    /// … counted as the lower bound of the measured precision at this
    /// one-sided confidence (a small dev set measures little).
    #[arg(long, default_value_t = 0.8)]
    confidence: f64,
    /// Print one JSON object (summaries and every record) instead of tables.
    #[arg(long)]
    json: bool,
    /// With --records: decide every recorded retrieval again with the
    /// configuration given now (no model runs; what the router decides when
    /// no model is trusted to extract), and say how many decisions match
    /// the recorded run.
    #[arg(long, requires = "records")]
    replay: bool,
    /// With --replay: fit tier zero's evidence score on the calibration
    /// splits and write it (a config file for --config) here.
    #[arg(long, requires = "replay")]
    fit_zero: Option<PathBuf>,
    /// The calibration splits of --fit-zero (default: every recorded split
    /// but the test ones: test, clean, clean2, uclean, uclean2, heldout, which are refused).
    #[arg(long, value_delimiter = ',')]
    fit_splits: Vec<String>,
    /// With --fit-zero: the false-defended rate the bound must meet …
    #[arg(long, default_value_t = 0.05)]
    zero_target: f64,
    /// … at this one-sided confidence (Clopper–Pearson).
    #[arg(long, default_value_t = 0.9)]
    zero_confidence: f64,
    /// With --fit-zero: draw the risk–coverage curve here (SVG).
    #[arg(long, requires = "fit_zero")]
    plot: Option<PathBuf>,
}

/// Reads a question file; errors name the line and field.
pub fn load_questions(path: &std::path::Path) -> anyhow::Result<Vec<Question>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let q: Question = serde_json::from_str(line).with_context(|| format!("{} line {}", path.display(), i + 1))?;
        if !SPLITS.contains(&q.split.as_str()) {
            bail!(
                "{} line {}: split must be one of {}",
                path.display(),
                i + 1,
                SPLITS.join(", ")
            );
        }
        if q.answerable() == q.pages.is_empty() {
            bail!("{} line {}: answers and pages go together", path.display(), i + 1);
        }
        out.push(q);
    }
    Ok(out)
}

/// Runs the evaluation against the orchestrator `client` talks to (or,
/// with `--replay`, offline under `cfg`).
pub async fn run(client: &Client, cfg: &upshift_shared::config::Config, args: RagEvalArgs) -> anyhow::Result<()> {
    let mut questions = load_questions(&args.questions)?;
    if let Some(s) = &args.split {
        questions.retain(|q| &q.split == s);
    }
    if let Some(n) = args.limit {
        questions.truncate(n);
    }
    if questions.is_empty() {
        bail!("no questions to ask");
    }
    let records = match &args.records {
        Some(path) => {
            let doc: serde_json::Value =
                serde_json::from_slice(&std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
                    .with_context(|| format!("{} is not JSON", path.display()))?;
            let all: Vec<Record> = serde_json::from_value(doc["records"].clone())
                .with_context(|| format!("{} has no records of `upshift eval rag --json`", path.display()))?;
            let ids: Vec<&str> = questions.iter().map(|q| q.id.as_str()).collect();
            all.into_iter().filter(|r| ids.contains(&r.id.as_str())).collect()
        }
        None => run_questions(client, &args, &questions).await?,
    };
    if args.replay {
        return run_replay(cfg, &args, &questions, records);
    }
    let splits: Vec<(&str, Summary)> = SPLITS
        .iter()
        .copied()
        .chain(["all"])
        .filter_map(|s| {
            let rs: Vec<&Record> = records.iter().filter(|r| s == "all" || r.split == s).collect();
            (!rs.is_empty()).then(|| (s, summarise(&rs)))
        })
        .collect();
    let fits = args.fit.as_ref().map(|path| {
        let rs: Vec<&Record> = records.iter().collect();
        let fits = fit::fit(&rs, args.target_precision, args.confidence);
        let source = format!("{} ({} jobs)", args.questions.display(), rs.len());
        (
            path,
            fits.clone(),
            fit::to_toml(&fits, args.target_precision, args.confidence, &source),
        )
    });
    if let Some((path, _, toml)) = &fits {
        std::fs::write(path, toml).with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        let doc = serde_json::json!({
            "collection": args.collection,
            "summaries": splits.iter().map(|(s, x)| (s.to_string(), serde_json::to_value(x).unwrap_or_default()))
                .collect::<serde_json::Map<_, _>>(),
            "fits": fits.as_ref().map(|f| &f.1),
            "records": records,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", table(&splits));
        if let Some((path, fits, _)) = &fits {
            for f in fits {
                println!(
                    "{} on {}: {} decisions, right {:.2}, trusted from {}",
                    f.step,
                    f.tier,
                    f.n,
                    f.accuracy,
                    if f.threshold >= upshift_shared::policy::NEVER_TRUSTED {
                        "never".to_string()
                    } else {
                        format!("{:.3}", f.threshold)
                    }
                );
            }
            println!("thresholds written to {}", path.display());
        }
    }
    Ok(())
}

/// `--replay` (and `--fit-zero`): the recorded retrievals decided again.
fn run_replay(
    cfg: &upshift_shared::config::Config,
    args: &RagEvalArgs,
    questions: &[Question],
    mut records: Vec<Record>,
) -> anyhow::Result<()> {
    let total = records.iter().filter(|r| r.retrieval.is_some()).count();
    if total == 0 {
        bail!("the records hold no retrievals (record them with this version's `upshift eval rag --json`)");
    }
    // The fit decides the records again (floor, ranking, each fold of the score): keep them as recorded.
    let recorded = args.fit_zero.is_some().then(|| records.clone());
    let (replays, agree) = replay::replay(&mut records, questions, &cfg.rag);
    if let Some(path) = &args.fit_zero {
        let splits: Vec<String> = if args.fit_splits.is_empty() {
            let mut s: Vec<String> = replays
                .iter()
                .map(|r| r.split.clone())
                .filter(|s| !replay::TEST_SPLITS.contains(&s.as_str()))
                .collect();
            s.sort();
            s.dedup();
            s
        } else {
            args.fit_splits.clone()
        };
        // The floor first; then the ranking and the score, on the questions that pass it.
        let floor = replay::fit_floor(&replay::calibration(&replays, &splits)?);
        let mut rag = cfg.rag.clone();
        if let Some(f) = floor {
            rag.min_similarity = f;
        }
        let recorded = recorded.unwrap_or_default();
        let (refloored, _) = replay::replay(&mut recorded.clone(), questions, &rag);
        let source = format!("{} ({})", args.questions.display(), splits.join(", "));
        let rank = replay::rank(&replay::calibration(&refloored, &splits)?, &source);
        // The score is fitted on the answers tier zero gives each question
        // under a ranking fitted without it (cross-fitted), as a new
        // question's would be chosen; the ranking shipped is fitted on all.
        let held = replay::cross_fit(&recorded, questions, &rag, &refloored, &splits, &source)?;
        let fit = replay::fit(&held, args.zero_target, args.zero_confidence, &source);
        let command = format!(
            "upshift eval rag --collection {} --questions {} --records {} --replay --fit-zero {}",
            args.collection,
            args.questions.display(),
            args.records.as_ref().map_or(String::new(), |p| p.display().to_string()),
            path.display()
        );
        std::fs::write(path, replay::to_toml(floor, &rank, &fit, &command))
            .with_context(|| format!("writing {}", path.display()))?;
        match floor {
            Some(f) => {
                println!(
                    "retrieval floor: {f:.2} (the lowest best similarity of a question with an accepted answer among its candidates)"
                )
            }
            None => println!(
                "retrieval floor: {:.2} kept (no calibration question answered right)",
                cfg.rag.min_similarity
            ),
        }
        for (kind, curve) in [("names and values", &fit.curve), ("sentences", &fit.sentence_curve)] {
            println!(
                "risk–coverage of the {kind} on the calibration questions ({}), held-out scores:",
                splits.join(", ")
            );
            println!("  threshold  defended  wrong  coverage  bound");
            for p in upshift_shared::risk::thin(curve, 16) {
                println!(
                    "  {:>9.4}  {:>8}  {:>5}  {:>8.3}  {:>5.3}",
                    p.threshold, p.defended, p.wrong, p.coverage, p.bound
                );
            }
        }
        println!("{}", fit.score.fitted);
        println!("written to {} (use it with --config)", path.display());
        if let Some(plot) = &args.plot {
            replay::plot(plot, &fit, args.zero_target, &args.collection)?;
            println!("plot written to {}", plot.display());
        }
        return Ok(());
    }
    // With --json, stdout is one JSON document; the summary goes to stderr.
    let summary = format!(
        "replayed {} recorded retrievals: {agree} decided as the recorded run did (status and short answer)\n{}{}",
        replays.len(),
        replay::table(&replays, args.zero_confidence),
        replay::candidate_ranks(&replays)
    );
    if args.json {
        eprint!("{summary}");
    } else {
        print!("{summary}");
    }
    // What to look at next, on the splits one may tune on.
    for r in replays.iter().filter(|r| r.decision.defended() && !r.right) {
        if !replay::TEST_SPLITS.contains(&r.split.as_str()) {
            let line = format!("defended and wrong: {} {} `{}`", r.split, r.id, r.decision.zero.answer);
            if args.json {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        }
    }
    if args.json {
        let decisions: Vec<serde_json::Value> = replays
            .iter()
            .map(|r| {
                serde_json::json!({
                    "id": r.id, "split": r.split, "answerable": r.answerable, "right": r.right,
                    "eligible": r.decision.eligible(), "defended": r.decision.defended(),
                    "answer": r.decision.zero.answer, "score": r.decision.zero.score,
                    "candidates": r.decision.zero.candidates, "right_candidate": r.right_candidate(),
                    "features": r.decision.zero.features.map(|x| x.named()),
                    "ranked": r.decision.zero.ranked.iter().zip(&r.candidate_right).map(|(c, right)| serde_json::json!({
                        "label": c.label, "passes": c.passes, "rank": c.rank, "score": c.score, "right": right,
                        "features": c.features.map(|x| x.named()),
                    })).collect::<Vec<_>>(),
                    "findings": r.decision.zero.findings.iter().chain(&r.decision.synthesis)
                        .map(|f| f.code.as_str()).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"records": records, "decisions": decisions}))?
        );
    }
    Ok(())
}

/// Asks every question, printing a line for each unless `--json`.
async fn run_questions(client: &Client, args: &RagEvalArgs, questions: &[Question]) -> anyhow::Result<Vec<Record>> {
    let status = client
        .get(&format!("/v1/collections/{}", args.collection), &[])
        .await
        .with_context(|| format!("collection `{}` (ingest it first: upshift ingest)", args.collection))?;
    let (passages, embedded) = (
        status["passages"].as_i64().unwrap_or(0),
        status["embedded"].as_i64().unwrap_or(0),
    );
    if embedded < passages && status["embedding_model"].is_string() {
        eprintln!(
            "note: {embedded}/{passages} passages embedded so far; retrieval ranks by full text until all are (dense ranking joins then), so these figures are not the hybrid ones"
        );
    }
    let mut records = Vec::with_capacity(questions.len());
    for q in questions {
        let r = ask(client, args, q).await?;
        if !args.json {
            println!("{}", line(q, &r));
        }
        records.push(r);
    }
    Ok(records)
}

/// Asks one question and scores the job.
async fn ask(client: &Client, args: &RagEvalArgs, q: &Question) -> anyhow::Result<Record> {
    let body = serde_json::json!({
        "kind": "rag", "collection": args.collection, "query": q.question, "blast_radius": args.blast_radius,
        "metadata": {"eval": q.id, "split": q.split},
    });
    let started = Instant::now();
    let id = client
        .submit(&body)
        .await
        .with_context(|| format!("question {}", q.id))?;
    let job = tokio::time::timeout(Duration::from_secs(args.job_timeout_secs), client.wait(id, false))
        .await
        .with_context(|| {
            format!(
                "question {}: job {id} still running after {}s",
                q.id, args.job_timeout_secs
            )
        })??;
    let job_s = started.elapsed().as_secs_f64();
    let route = client.route(id).await?;
    Ok(score(q, &job, &route, job_s))
}

/// One progress line: split, id, outcome, match, retrieval, time, answer.
fn line(q: &Question, r: &Record) -> String {
    let mark = |b: bool| if b { "✓" } else { "✗" };
    let outcome = match (r.status.as_str(), q.answerable()) {
        ("succeeded", true) if r.answer_match => "defended, right",
        ("succeeded", true) => "DEFENDED, WRONG",
        ("succeeded", false) => "DEFENDED, UNANSWERABLE",
        (_, false) => "refused (right)",
        ("unresolved", _) => "unresolved",
        _ => "failed",
    };
    let shown: String = r
        .short_answer
        .clone()
        .or_else(|| r.answer.clone())
        .unwrap_or_default()
        .chars()
        .take(60)
        .collect();
    format!(
        "{:<4} {:<4} {:<23} match {} hit@k {} {:>6.1}s  {}",
        q.split,
        q.id,
        outcome,
        if q.answerable() { mark(r.answer_match) } else { "-" },
        if q.answerable() { mark(r.hit_at_k) } else { "-" },
        r.job_s,
        shown.replace('\n', " ")
    )
}

/// The summaries as a table, one column per split.
fn table(splits: &[(&str, Summary)]) -> String {
    let mut rows: Vec<Vec<String>> = vec![
        std::iter::once("".to_string())
            .chain(
                splits
                    .iter()
                    .map(|(s, x)| format!("{s} (n={}, {} answerable)", x.n, x.answerable)),
            )
            .collect(),
    ];
    type Cell = fn(&Summary) -> String;
    let metrics: Vec<(&str, Cell)> = vec![
        ("retrieval hit@1 (answer's page)", |x| {
            format!("{:.1}%", 100.0 * x.hit_at_1)
        }),
        ("retrieval hit@k", |x| format!("{:.1}%", 100.0 * x.hit_at_k)),
        ("answer match", |x| format!("{:.1}%", 100.0 * x.answer_match)),
        ("cited-page match", |x| format!("{:.1}%", 100.0 * x.cited_page)),
        ("defended (all questions)", |x| format!("{:.1}%", 100.0 * x.defended)),
        ("defended and right (answerable)", |x| {
            format!("{:.1}%", 100.0 * x.defended_and_right)
        }),
        ("false-defended (of defended)", |x| {
            format!("{:.1}% ({})", 100.0 * x.false_defended, x.false_defended_n)
        }),
        ("refusals (unanswerable)", |x| format!("{:.1}%", 100.0 * x.refusals)),
        ("failed jobs", |x| x.failed.to_string()),
        ("cost / always-strong", |x| {
            format!("{:.3} (${:.6})", x.cost_ratio, x.cost_usd)
        }),
    ];
    for (name, f) in metrics {
        rows.push(
            std::iter::once(name.to_string())
                .chain(splits.iter().map(|(_, x)| f(x)))
                .collect(),
        );
    }
    for step in ["retrieve", "extract", "synthesise", "critique", "job"] {
        rows.push(
            std::iter::once(format!("p50 / p95 {step} (s)"))
                .chain(splits.iter().map(|(_, x)| {
                    x.latency
                        .get(step)
                        .map_or("-".into(), |(a, b)| format!("{a:.1} / {b:.1}"))
                }))
                .collect(),
        );
    }
    crate::table::render(&rows, None)
}
