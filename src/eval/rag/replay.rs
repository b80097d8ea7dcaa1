//! `upshift eval rag --replay`: the decisions of a run decided again from
//! its recorded retrievals, with the configuration given now (the same
//! code the router runs, `verify::rag::extractive::offline`), and
//! `--fit-zero`: tier zero's evidence score fitted on the calibration
//! questions, its threshold chosen so that the one-sided upper bound of the
//! false-defended rate (Clopper–Pearson) meets the target.

use super::score::{Question, Record};
use anyhow::{Context, bail};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::path::Path;
use upshift_shared::config::{RagConfig, ZERO_FEATURES, ZeroRank};
use upshift_shared::risk::thin;
use upshift_shared::stats::clopper_pearson_upper;
use upshift_shared::verify::rag::extractive::compose;
use upshift_shared::verify::rag::extractive::fit::{ZeroFit, calibrate, fit_rank, fit_weights, held_out_scores};
use upshift_shared::verify::rag::extractive::judge::ZeroFeatures;
use upshift_shared::verify::rag::extractive::offline::{Offline, decide};
use upshift_shared::verify::rag::question::classify;

/// Splits that are only ever reported: a fit refuses them, whatever it is told.
pub const TEST_SPLITS: &[&str] = &["test", "clean", "clean2", "uclean", "uclean2", "heldout"];

/// One question decided again.
pub struct Replayed {
    /// The question's id and split.
    pub id: String,
    /// Its split.
    pub split: String,
    /// Whether the collection answers it.
    pub answerable: bool,
    /// The offline decision.
    pub decision: Offline,
    /// The answer the job shows (none when the retrieval floor stopped it
    /// before extraction) holds an accepted answer.
    pub right: bool,
    /// The similarity of the search's sentence most similar to the question
    /// (what the retrieval floor reads).
    pub best_similarity: Option<f32>,
    /// Whether each of tier zero's candidates (`decision.zero.ranked`) is
    /// an accepted answer.
    pub candidate_right: Vec<bool>,
}

impl Replayed {
    /// Where the first accepted answer is among tier zero's candidates
    /// (0: the choice itself); `None`: no candidate is one.
    pub fn right_candidate(&self) -> Option<usize> {
        self.candidate_right.iter().position(|&r| r)
    }
}

/// Decides every record with a retrieval again under `rag`, rewriting its
/// status, answer and match; returns the replays and how many records kept
/// the status and short answer the live run gave them.
pub fn replay(records: &mut [Record], questions: &[Question], rag: &RagConfig) -> (Vec<Replayed>, usize) {
    let by_id: HashMap<&str, &Question> = questions.iter().map(|q| (q.id.as_str(), q)).collect();
    let (mut out, mut agree) = (Vec::new(), 0);
    for rec in records.iter_mut() {
        let (Some(q), Some(r)) = (by_id.get(rec.id.as_str()), rec.retrieval.as_ref()) else {
            continue;
        };
        let d = decide(&q.question, r, rag);
        let span = classify(&q.question).wants_span();
        let short = span.then(|| d.zero.answer.clone()).filter(|s| !s.is_empty());
        let zero_right = q.answerable() && q.accepts(&short.clone().or_else(|| d.answer.clone()).unwrap_or_default());
        // Stopped at the floor, the job never reaches extraction and shows no answer.
        let stopped = d.retrieval.is_some();
        let (short, answer) = if stopped {
            (None, None)
        } else {
            (short, d.answer.clone())
        };
        let right = zero_right && !stopped;
        // A free-form candidate is judged as it would be answered, composed
        // (with the term its sentence describes) and without its citation,
        // as `right` is.
        let candidate_right: Vec<bool> = d
            .zero
            .ranked
            .iter()
            .map(|c| {
                let said = if span {
                    c.label.clone()
                } else {
                    compose(&q.question, &c.label, r).unwrap_or_else(|| c.label.clone())
                };
                q.answerable() && q.accepts(&said)
            })
            .collect();
        let status = if d.defended() { "succeeded" } else { "unresolved" };
        // An undefended answer is a model's best choice live (its tiers climb
        // before the job ends unresolved): only the status can agree then.
        if rec.status == status && (status != "succeeded" || rec.short_answer == short) {
            agree += 1;
        }
        rec.status = status.to_string();
        rec.short_answer = short;
        rec.answer = answer;
        rec.answer_match = right;
        out.push(Replayed {
            id: rec.id.clone(),
            split: rec.split.clone(),
            answerable: q.answerable(),
            best_similarity: r.best_similarity(),
            decision: d,
            right,
            candidate_right,
        });
    }
    (out, agree)
}

/// Fits which candidate tier zero answers with, on the `calibration`
/// replays: the candidates that pass the hard checks, of every question the
/// retrieval floor lets through, and whether each is an accepted answer
/// (the one fit every corpus uses, `verify::rag::extractive::fit`).
pub fn rank(calibration: &[&Replayed], source: &str) -> ZeroRank {
    let groups: Vec<Vec<(ZeroFeatures, bool)>> = calibration
        .iter()
        .filter(|r| r.decision.retrieval.is_none())
        .map(|r| {
            r.decision
                .zero
                .ranked
                .iter()
                .zip(&r.candidate_right)
                .filter(|(c, _)| c.passes)
                .filter_map(|(c, right)| Some((c.features?, *right)))
                .collect()
        })
        .collect();
    fit_rank(&groups, source)
}

/// Folds of the cross-fit ([`cross_fit`]).
pub const FOLDS: usize = 5;

/// The calibration questions decided again, each with a ranking fitted
/// without it (cross-fitting over [`FOLDS`] folds, a question's fold its
/// place among the `floored` calibration replays modulo the folds): the
/// score is then fitted on answers chosen as a new question's are, not by a
/// ranking that has seen the question, so its threshold does not lean on
/// the ranking's fit to its own data. `floored`: the `records` replayed
/// under `rag` (the fitted floor); `rag.zero_rank` is replaced per fold.
pub fn cross_fit(
    records: &[Record],
    questions: &[Question],
    rag: &RagConfig,
    floored: &[Replayed],
    splits: &[String],
    source: &str,
) -> anyhow::Result<Vec<(usize, Replayed)>> {
    let cal = calibration(floored, splits)?;
    let fold: HashMap<(&str, &str), usize> = cal
        .iter()
        .enumerate()
        .map(|(i, r)| ((r.split.as_str(), r.id.as_str()), i % FOLDS))
        .collect();
    let mut out = Vec::with_capacity(cal.len());
    for k in 0..FOLDS {
        let train: Vec<&Replayed> = cal
            .iter()
            .copied()
            .filter(|r| fold[&(r.split.as_str(), r.id.as_str())] != k)
            .collect();
        let mut held: Vec<Record> = records
            .iter()
            .filter(|r| fold.get(&(r.split.as_str(), r.id.as_str())) == Some(&k))
            .cloned()
            .collect();
        let mut rag = rag.clone();
        rag.zero_rank = rank(&train, source);
        out.extend(replay(&mut held, questions, &rag).0.into_iter().map(|r| (k, r)));
    }
    Ok(out)
}

/// Fits tier zero's score on the `calibration` replays, each with its fold
/// ([`cross_fit`]): a logistic model of whether the eligible questions'
/// answers are right, and the threshold its bound allows on their scores
/// under weights fitted without their fold ([`held_out_scores`]).
pub fn fit(calibration: &[(usize, Replayed)], target: f64, confidence: f64, source: &str) -> ZeroFit {
    let (folds, rows): (Vec<usize>, Vec<(ZeroFeatures, bool)>) = calibration
        .iter()
        .filter(|(_, r)| r.decision.eligible())
        .filter_map(|(k, r)| Some((*k, (r.decision.zero.features?, r.right))))
        .unzip();
    let held = held_out_scores(&rows, &folds);
    // A free-form question's answer is a sentence: its own kind, its own threshold.
    let free = ZERO_FEATURES.iter().position(|f| *f == "free").expect("a feature");
    let scored: Vec<(f64, bool, bool)> = held
        .into_iter()
        .zip(&rows)
        .map(|(h, (x, y))| (h, *y, x.0[free] > 0.5))
        .collect();
    let answerable = calibration.iter().filter(|(_, r)| r.answerable).count();
    calibrate(
        fit_weights(&rows),
        &scored,
        (answerable, calibration.len()),
        target,
        confidence,
        source,
    )
}

/// The retrieval floor fitted on the `calibration` replays: the highest
/// (in steps of 0.01) that stops none of the questions with an accepted
/// answer among tier zero's candidates, whichever the ranking then chooses
/// (so the floor depends neither on the ranking nor on the score fitted
/// after it). Below it, no calibration question's answer was found, so the
/// job ends early with a plain "nothing retrieved is close" instead of an
/// undefended guess; above it the fitted ranking and score decide. `None`:
/// no answer to fit on (the configured floor stays).
pub fn fit_floor(calibration: &[&Replayed]) -> Option<f32> {
    calibration
        .iter()
        .filter(|r| r.right_candidate().is_some())
        .filter_map(|r| r.best_similarity)
        .reduce(f32::min)
        // A hundredth down (less float noise: 0.47 stays 0.47).
        .map(|m| ((m * 100.0) + 1e-3).floor() / 100.0)
}

/// The calibration replays: every split asked for that is not a test split.
pub fn calibration<'a>(replays: &'a [Replayed], splits: &[String]) -> anyhow::Result<Vec<&'a Replayed>> {
    if let Some(s) = splits.iter().find(|s| TEST_SPLITS.contains(&s.as_str())) {
        bail!("split `{s}` is for testing only: a fit never reads it");
    }
    let out: Vec<&Replayed> = replays.iter().filter(|r| splits.contains(&r.split)).collect();
    if out.is_empty() {
        bail!("no recorded retrievals in the calibration splits {}", splits.join(", "));
    }
    Ok(out)
}

/// The fitted floor, ranking and score as a config file to layer with `--config`.
pub fn to_toml(floor: Option<f32>, rank: &ZeroRank, f: &ZeroFit, command: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# The retrieval floor and tier zero's evidence score, written by `{command}`."
    );
    if let Some(floor) = floor {
        let _ = writeln!(
            out,
            "# The floor: the highest that stops no calibration question with an accepted answer among its candidates."
        );
        let _ = writeln!(out, "[rag]\nmin_similarity = {floor:.2}");
    }
    let _ = writeln!(
        out,
        "# Which candidate tier zero answers with: a conditional logit over each question's candidates."
    );
    let _ = writeln!(out, "[rag.zero_rank]");
    let _ = writeln!(out, "fitted = {}", toml_str(&rank.fitted));
    let _ = writeln!(out, "[rag.zero_rank.weights]");
    for (k, v) in &rank.weights {
        let _ = writeln!(out, "{k} = {v}");
    }
    for (kind, curve) in [("names and values", &f.curve), ("sentences", &f.sentence_curve)] {
        let _ = writeln!(
            out,
            "# Risk-coverage of the {kind} on the calibration questions, held-out scores (threshold: defended, wrong, coverage, bound):"
        );
        for p in thin(curve, 12) {
            let _ = writeln!(
                out,
                "#   {:.4}: {:>4} defended, {:>3} wrong, coverage {:.3}, bound {:.3}",
                p.threshold, p.defended, p.wrong, p.coverage, p.bound
            );
        }
    }
    let _ = writeln!(out, "[rag.zero_score]");
    let _ = writeln!(out, "fitted = {}", toml_str(&f.score.fitted));
    let _ = writeln!(out, "threshold = {}", f.score.threshold);
    let _ = writeln!(out, "sentence_threshold = {}", f.score.sentence_threshold);
    let _ = writeln!(out, "bias = {}", f.score.bias);
    let _ = writeln!(out, "[rag.zero_score.weights]");
    for (k, v) in &f.score.weights {
        let _ = writeln!(out, "{k} = {v}");
    }
    out
}

fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Per split: questions, defended, wrong among them, the bound, and
/// coverage, under the configuration replayed.
pub fn table(replays: &[Replayed], confidence: f64) -> String {
    let mut by: BTreeMap<&str, Vec<&Replayed>> = BTreeMap::new();
    for r in replays {
        by.entry(r.split.as_str()).or_default().push(r);
        by.entry("all").or_default().push(r);
    }
    let mut rows = vec![
        [
            "split",
            "questions",
            "answerable",
            "defended",
            "wrong",
            "false-defended (bound)",
            "coverage",
            "best answer right",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for (split, rs) in by {
        let answerable = rs.iter().filter(|r| r.answerable).count();
        let defended: Vec<_> = rs.iter().filter(|r| r.decision.defended()).collect();
        let wrong = defended.iter().filter(|r| !r.right).count();
        let right = defended.len() - wrong;
        let best = rs.iter().filter(|r| r.right).count();
        let share = |a: usize, b: usize| {
            if b == 0 {
                "-".to_string()
            } else {
                format!("{:.1}%", 100.0 * a as f64 / b as f64)
            }
        };
        rows.push(vec![
            split.to_string(),
            rs.len().to_string(),
            answerable.to_string(),
            defended.len().to_string(),
            wrong.to_string(),
            format!(
                "{} (≤ {:.1}%)",
                share(wrong, defended.len()),
                100.0 * clopper_pearson_upper(wrong, defended.len(), confidence)
            ),
            share(right, answerable),
            share(best, answerable),
        ]);
    }
    crate::table::render(&rows, None)
}

/// Draws the risk–coverage curve of `f` (coverage against the bound of
/// the false-defended rate) as SVG.
pub fn plot(path: &Path, f: &ZeroFit, target: f64, title: &str) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(path, (760, 520)).into_drawing_area();
        root.fill(&WHITE)?;
        let max_x = f.curve.iter().map(|p| p.coverage).fold(0.1f64, f64::max) * 1.05;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("tier zero: risk vs coverage — {title}"), ("sans-serif", 18))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..max_x, 0f64..0.5f64)?;
        chart
            .configure_mesh()
            .x_desc("coverage (defended and right ÷ answerable)")
            .y_desc("false-defended")
            .draw()?;
        let observed: Vec<(f64, f64)> = f
            .curve
            .iter()
            .map(|p| (p.coverage, p.wrong as f64 / p.defended.max(1) as f64))
            .collect();
        chart
            .draw_series(LineSeries::new(observed, BLUE.stroke_width(2)))?
            .label("observed")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
        let bound: Vec<(f64, f64)> = f.curve.iter().map(|p| (p.coverage, p.bound.min(0.5))).collect();
        chart
            .draw_series(LineSeries::new(bound, RED.stroke_width(2)))?
            .label("one-sided upper bound")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
        chart.draw_series(LineSeries::new(
            vec![(0.0, target), (max_x, target)],
            BLACK.stroke_width(1),
        ))?;
        if let Some(p) = &f.chosen {
            chart.draw_series(std::iter::once(Circle::new((p.coverage, p.bound), 6, BLACK.filled())))?;
        }
        chart.configure_series_labels().border_style(BLACK).draw()?;
        root.present()?;
        Ok(())
    };
    draw()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("drawing {}", path.display()))
}

/// Where tier zero loses the answer on the splits one may tune on: of the
/// answerable questions, how many have an accepted answer among the
/// candidates at all, and at which place (what a better ranking could win,
/// and what only better candidates could).
pub fn candidate_ranks(replays: &[Replayed]) -> String {
    let tunable: Vec<&Replayed> = replays
        .iter()
        .filter(|r| r.answerable && !TEST_SPLITS.contains(&r.split.as_str()))
        .collect();
    if tunable.is_empty() {
        return String::new();
    }
    let at = |lo: usize, hi: usize| {
        tunable
            .iter()
            .filter(|r| r.right_candidate().is_some_and(|i| (lo..=hi).contains(&i)))
            .count()
    };
    let among = tunable.iter().filter(|r| r.right_candidate().is_some()).count();
    format!(
        "candidates (calibration splits): of {} answerable, an accepted answer is among the candidates for {among} \
         (chosen {}, 2nd–4th {}, later {}); none is for {}\n",
        tunable.len(),
        at(0, 0),
        at(1, 3),
        at(4, usize::MAX),
        tunable.len() - among
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fit_never_reads_a_test_split() {
        let err = calibration(&[], &["dev".into(), "clean".into()]).err().unwrap();
        assert!(err.to_string().contains("`clean` is for testing only"), "{err}");
        assert!(calibration(&[], &["dev".into()]).is_err(), "nothing recorded");
    }

    /// Two retrieved passages of `os` (the best sentence scoring `best`), as
    /// a record of question `id`.
    fn record(id: &str, best: f32) -> Record {
        let passage = |id: &str, text: &str| serde_json::json!({"passage_id": id, "document_id": "os.html", "title": "os", "score": 0.5, "text": text});
        let sentence = |id: &str, text: &str, similarity: f32| serde_json::json!({"passage_id": id, "text": text, "similarity": similarity});
        let retrieval = serde_json::json!({
            "terms": "q", "mode": "hybrid",
            "passages": [
                passage("os.html#3", "`os.getcwd` ()\nReturn a string representing the current working directory."),
                passage("os.html#4", "`os.chdir` (path)\nChange the current working directory to path."),
            ],
            "sentences": [
                sentence("os.html#4", "Change the current working directory to path.", best),
                sentence("os.html#3", "Return a string representing the current working directory.", best - 0.2),
            ],
        });
        serde_json::from_value::<Record>(serde_json::json!({
            "id": id, "split": "dev", "answerable": true, "job": "j", "status": "unresolved",
            "answer": null, "short_answer": null, "answer_match": false, "hit_at_1": true, "hit_at_k": true,
            "cited_page": false, "cost_usd": 0.0, "always_strong_cost_usd": 0.0, "job_s": 0.1,
            "step_s": {}, "tiers": {}, "findings": [], "decisions": [], "retrieval": retrieval,
        }))
        .unwrap()
    }

    fn question(id: &str, answer: &str) -> Question {
        Question {
            id: id.into(),
            split: "dev".into(),
            kind: "function".into(),
            question: "My script must move into another folder first. Which function changes the working directory?"
                .into(),
            answers: vec![answer.into()],
            pages: vec!["os.html".into()],
        }
    }

    fn rag(floor: f32) -> RagConfig {
        let mut cfg = upshift_shared::config::Config::from_toml_over_defaults("").unwrap().rag;
        cfg.min_similarity = floor;
        // A ranking by the sentence's similarity alone, whatever the shipped fit.
        cfg.zero_rank = ZeroRank {
            weights: BTreeMap::from([("similarity".to_string(), 1.0)]),
            fitted: String::new(),
        };
        cfg
    }

    #[test]
    fn the_replay_says_where_among_the_candidates_the_answer_is() {
        let mut records = vec![record("a", 0.8), record("b", 0.8)];
        let questions = [question("a", "os.chdir"), question("b", "os.walk")];
        let (replays, _) = replay(&mut records, &questions, &rag(0.0));
        let chosen = &replays[0].decision.zero.candidates;
        let at = chosen.iter().position(|c| c == "os.chdir");
        assert!(at.is_some(), "{chosen:?}");
        assert_eq!(replays[0].right_candidate(), at);
        assert_eq!(replays[1].right_candidate(), None, "no candidate is os.walk");
        let line = candidate_ranks(&replays);
        assert!(
            line.contains("of 2 answerable, an accepted answer is among the candidates for 1"),
            "{line}"
        );
        assert!(line.contains("none is for 1"), "{line}");
    }

    #[test]
    fn the_cross_fit_decides_each_calibration_question_once_with_a_ranking_fitted_without_it() {
        let ids: Vec<String> = (0..12).map(|i| format!("q{i}")).collect();
        let questions: Vec<Question> = ids.iter().map(|id| question(id, "os.chdir")).collect();
        let mut records: Vec<Record> = ids.iter().map(|id| record(id, 0.8)).collect();
        let mut test = record("t", 0.8);
        test.split = "test".into();
        records.push(test);
        let (floored, _) = replay(&mut records.clone(), &questions, &rag(0.0));
        let held = cross_fit(&records, &questions, &rag(0.0), &floored, &["dev".into()], "t").unwrap();
        let mut seen: Vec<&str> = held.iter().map(|(_, r)| r.id.as_str()).collect();
        seen.sort();
        let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
        want.sort();
        assert_eq!(seen, want, "every calibration question once, no test question");
        assert!(cross_fit(&records, &questions, &rag(0.0), &floored, &["test".into()], "t").is_err());
    }

    #[test]
    fn a_job_stopped_at_the_floor_shows_no_answer_and_the_floor_is_fitted_below_every_right_one() {
        let questions = [
            question("a", "os.chdir"),
            question("b", "os.chdir"),
            question("c", "os.walk"),
        ];
        let recorded = vec![record("a", 0.72), record("b", 0.47), record("c", 0.30)];
        let (replays, _) = replay(&mut recorded.clone(), &questions, &rag(0.0));
        assert!(replays[0].right && replays[1].right, "tier zero answers both");
        // Live, a floor of 0.60 stops `b` before extraction: no answer shown.
        let mut records = recorded.clone();
        let (stopped, _) = replay(&mut records, &questions, &rag(0.60));
        assert!(stopped[0].right && !stopped[1].right && stopped[1].right_candidate().is_some());
        assert_eq!(records[1].short_answer, None);
        assert!(records[1].answer.is_none() && !records[1].answer_match);
        // The fit: the highest floor that stops no right answer (`c` is wrong).
        let all: Vec<&Replayed> = stopped.iter().collect();
        assert_eq!(fit_floor(&all), Some(0.47));
        assert_eq!(fit_floor(&all[2..]), None, "nothing right to fit on");
        let folded: Vec<(usize, Replayed)> = replay(&mut recorded.clone(), &questions, &rag(0.60))
            .0
            .into_iter()
            .enumerate()
            .map(|(i, r)| (i % FOLDS, r))
            .collect();
        let toml = to_toml(fit_floor(&all), &rank(&all, "t"), &fit(&folded, 0.05, 0.9, "t"), "cmd");
        let cfg = upshift_shared::config::Config::from_toml_over_defaults(&toml).unwrap();
        assert_eq!(cfg.rag.min_similarity, 0.47, "{toml}");
        assert!(cfg.rag.zero_rank.weights.contains_key("similarity"), "{toml}");
    }
}
