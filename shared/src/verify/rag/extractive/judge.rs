//! Tier zero's one calibrated decision: the evidence for each candidate,
//! as features every corpus has ([`ZERO_FEATURES`]), ranked by the fitted
//! `rag.zero_rank` and, for the answer it ranks first,
//! weighed by a logistic model fitted on labelled questions
//! ([`ZeroScore`]), against a threshold chosen so that the one-sided 90%
//! Clopper–Pearson upper bound of the false-defended rate on the
//! calibration questions is at most 5% (`upshift eval rag --fit-zero`).
//!
//! What is true of every corpus stays a hard rule elsewhere (a name is
//! answered by a name, the question's entities are in the passage); what
//! was a rule per failure before (a rival too close, a closer sentence
//! that says something else, a name a part away, a floor on similarity) is
//! a feature here, weighed by data.

use super::features::{coverage, governs, name_parts, name_words, presented, proximity, shape_fit, subject};
use super::{Evidence, close_alternative, defined_terms, locate};
use crate::config::{ZERO_FEATURES, ZeroRank, ZeroScore};
use crate::stats::sigmoid;
use crate::verify::rag::Retrieval;
use crate::verify::rag::question::{QuestionType, asking_sentence, classify};
use crate::verify::rag::text::content_words;
use crate::verify::rag::text::entities;

/// Similarities closer than this are not ordered reliably by the embedding
/// (a right and a wrong name 0.03 apart in the calibration questions): the
/// width of `rival_close`, a feature whose weight the fit sets.
const RIVAL_WINDOW: f64 = 0.05;

/// `lead` when no rival ranks beside a candidate, and its bound either way.
pub const LEAD_CAP: f64 = 5.0;

/// The features of one answer, in [`ZERO_FEATURES`] order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZeroFeatures(pub [f64; ZERO_FEATURES.len()]);

impl ZeroFeatures {
    /// The features by name, for the route and the viewer.
    pub fn named(&self) -> serde_json::Map<String, serde_json::Value> {
        ZERO_FEATURES
            .iter()
            .zip(self.0)
            .map(|(n, v)| (n.to_string(), serde_json::json!((v * 1000.0).round() / 1000.0)))
            .collect()
    }
}

/// Whether `r` defines `name` (one of its [`defined_terms`]: a definition
/// line, a definition list's term, a reference row's first cell, or the
/// title of a reference page).
pub fn defined(name: &str, r: &Retrieval) -> bool {
    defines(&defined_terms(r), name)
}

/// Whether `terms` (a retrieval's [`defined_terms`]) hold `name`.
fn defines(terms: &[String], name: &str) -> bool {
    let name = name.trim().trim_end_matches("()");
    terms.iter().any(|t| t.eq_ignore_ascii_case(name))
}

/// An answer's evidence: its features, and the similarity and lead over the
/// best rival of its sentence (for the route).
#[derive(Debug, Clone, Copy)]
pub struct Judged {
    /// The features.
    pub features: ZeroFeatures,
    /// The answer's sentence's similarity to the question.
    pub similarity: Option<f32>,
    /// Its lead over the best rival candidate's sentence.
    pub margin: Option<f32>,
}

/// The evidence for every one of `labels` (the candidates, in the evidence
/// order) as the answer to `query` over `r`, in their order; `None` for a
/// candidate no retrieved sentence holds. What the retrieval and the
/// question give every candidate alike is computed once.
pub fn judge_all(query: &str, r: &Retrieval, labels: &[String]) -> Vec<Option<Judged>> {
    let t = classify(query);
    let located: Vec<Option<Evidence<'_>>> = labels.iter().map(|l| locate(l, r)).collect();
    let best = r.sentences.iter().map(|s| f64::from(s.similarity)).fold(0.0, f64::max);
    let asking = asking_sentence(query);
    let asked = content_words(&asking);
    // The context says what is wanted too ("… the file name and its offset").
    let whole = name_words(query);
    let sentence_words: Vec<(String, Vec<String>)> = r
        .scored_sentences()
        .into_iter()
        .map(|(_, s, _)| {
            let w = content_words(&s);
            (s, w)
        })
        .collect();
    let terms = defined_terms(r);
    let named = entities(query);
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let n = labels.len();
    (0..n)
        .map(|i| {
            let answer = labels[i].as_str();
            let ev = located[i].as_ref()?;
            let sim = f64::from(ev.similarity.unwrap_or(0.0));
            // The best rival: another candidate from another sentence, most
            // similar to the question.
            let rival = (0..n)
                .filter(|&j| !labels[j].eq_ignore_ascii_case(answer))
                .filter_map(|j| located[j].as_ref().map(|e| (j, e)))
                .filter(|(_, e)| e.sentence != ev.sentence && e.similarity.is_some())
                .max_by(|a, b| a.1.similarity.unwrap_or(0.0).total_cmp(&b.1.similarity.unwrap_or(0.0)));
            let rival_sim = rival.and_then(|(_, e)| e.similarity).map(f64::from);
            let closer = r
                .sentences
                .iter()
                .filter(|s| s.text.split_whitespace().count() >= 4 && !s.text.contains(answer))
                .map(|s| f64::from(s.similarity))
                .fold(0.0, f64::max);
            let own_cov = coverage(&asked, &format!("{answer} {}", ev.sentence));
            let rival_cov = rival.map_or(0.0, |(j, e)| coverage(&asked, &format!("{} {}", labels[j], e.sentence)));
            let own_words = content_words(&format!("{answer} {}", ev.sentence));
            let elsewhere = if asked.is_empty() {
                0.0
            } else {
                asked
                    .iter()
                    .filter(|w| {
                        !own_words.contains(w)
                            && sentence_words.iter().any(|(s, ws)| *s != ev.sentence && ws.contains(w))
                    })
                    .count() as f64
                    / asked.len() as f64
            };
            let rank = r
                .passages
                .iter()
                .position(|p| p.passage_id == ev.passage.passage_id)
                .unwrap_or(r.passages.len());
            let margin = rival_sim.map_or(0.0, |s| (sim - s).clamp(-1.0, 1.0));
            let features = ZeroFeatures([
                sim,
                margin,
                flag(rival_sim.is_none()),
                (closer - sim).max(0.0),
                flag(closer > sim),
                flag(rival_sim.is_some() && margin < RIVAL_WINDOW && rival_cov > own_cov),
                flag(defines(&terms, answer)),
                flag(presented(query, t, answer, ev)),
                own_cov,
                (rival_cov - own_cov).max(0.0),
                elsewhere,
                1.0 / (1.0 + rank as f64),
                flag(close_alternative(query, answer, labels).is_some()),
                (1.0 + n as f64).ln() / 25f64.ln(),
                flag(t == QuestionType::Free),
                flag(matches!(
                    t,
                    QuestionType::Default | QuestionType::Number | QuestionType::Value
                )),
                best,
                1.0 / (1.0 + i as f64),
                proximity(&asked, &ev.sentence, answer),
                shape_fit(&asking, answer),
                // A name question's answer stands under its own definition,
                // which the question does not name: `governs` reads that.
                if t.wants_name() {
                    0.0
                } else {
                    subject(&named, ev.passage, &ev.sentence)
                },
                if t.wants_name() {
                    governs(ev.passage, &ev.sentence, answer)
                } else {
                    0.0
                },
                if t.wants_name() {
                    name_parts(&whole, answer)
                } else {
                    0.0
                },
                // `share` and `lead`: set once the candidates are ranked
                // (none for one failing the hard checks).
                0.0,
                -LEAD_CAP,
            ]);
            Some(Judged {
                features,
                similarity: ev.similarity,
                margin: ev
                    .similarity
                    .zip(rival.and_then(|(_, e)| e.similarity))
                    .map(|(a, b)| a - b),
            })
        })
        .collect()
}

/// What each feature added to the score's log-odds under `model` (its
/// weight × its value), by name, with the intercept as `bias`: what decided
/// an answer, for the route and the viewer.
pub fn contributions(model: &ZeroScore, x: &ZeroFeatures) -> serde_json::Map<String, serde_json::Value> {
    let round = |v: f64| serde_json::json!((v * 1000.0).round() / 1000.0);
    let mut out: serde_json::Map<String, serde_json::Value> = ZERO_FEATURES
        .iter()
        .zip(x.0)
        .map(|(name, v)| {
            (
                name.to_string(),
                round(model.weights.get(*name).copied().unwrap_or(0.0) * v),
            )
        })
        .collect();
    out.insert("bias".into(), round(model.bias));
    out
}

/// Where `x` ranks under `rank`: the higher, the likelier tier zero's answer.
pub fn rank_value(rank: &ZeroRank, x: &ZeroFeatures) -> f64 {
    ZERO_FEATURES
        .iter()
        .zip(x.0)
        .map(|(name, v)| rank.weights.get(*name).copied().unwrap_or(0.0) * v)
        .sum()
}

/// Sets `share` and `lead` of each of `values` (a candidate's features and
/// its ranking value, `None` for one that does not pass the hard checks
/// or has no evidence): its share of the softmax over the values of all
/// of them that are `Some` (itself included), and how far it leads the
/// best other (capped at ±[`LEAD_CAP`]).
pub fn set_standing(values: &mut [(Option<&mut ZeroFeatures>, f64)]) {
    let idx = |name: &str| ZERO_FEATURES.iter().position(|f| *f == name).expect("a feature");
    let (share, lead) = (idx("share"), idx("lead"));
    let top = values
        .iter()
        .filter(|(x, _)| x.is_some())
        .map(|(_, v)| *v)
        .fold(f64::NEG_INFINITY, f64::max);
    let total: f64 = values
        .iter()
        .filter(|(x, _)| x.is_some())
        .map(|(_, v)| (v - top).exp())
        .sum();
    let vs: Vec<Option<f64>> = values.iter().map(|(x, v)| x.as_ref().map(|_| *v)).collect();
    for (i, (x, v)) in values.iter_mut().enumerate() {
        let Some(x) = x else { continue };
        let rival = vs
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .filter_map(|(_, w)| *w)
            .fold(f64::NEG_INFINITY, f64::max);
        x.0[share] = (*v - top).exp() / total;
        x.0[lead] = (*v - rival).clamp(-LEAD_CAP, LEAD_CAP);
    }
}

/// The score of `x` under `model`, in [0, 1].
pub fn score(model: &ZeroScore, x: &ZeroFeatures) -> f64 {
    let z: f64 = ZERO_FEATURES
        .iter()
        .zip(x.0)
        .map(|(name, v)| model.weights.get(*name).copied().unwrap_or(0.0) * v)
        .sum();
    sigmoid(model.bias + z)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::rag::{Passage, Sentence};
    use std::collections::BTreeMap;

    fn retrieval() -> Retrieval {
        let p = |id: &str, title: &str, text: &str| Passage {
            passage_id: id.into(),
            document_id: id.split('#').next().unwrap().into(),
            title: title.into(),
            score: 0.5,
            text: text.into(),
            lexical: None,
            similarity: None,
            defines: None,
        };
        Retrieval {
            terms: "q".into(),
            mode: "hybrid".into(),
            passages: vec![
                p(
                    "os.html#3",
                    "os — Miscellaneous operating system interfaces",
                    "`os.getcwd` ()\nReturn a string representing the current working directory.",
                ),
                p(
                    "os.html#4",
                    "os — Miscellaneous operating system interfaces",
                    "`os.chdir` (path)\nChange the current working directory to path.",
                ),
            ],
            sentences: vec![
                Sentence {
                    passage_id: "os.html#3".into(),
                    text: "Return a string representing the current working directory.".into(),
                    similarity: 0.8,
                },
                Sentence {
                    passage_id: "os.html#4".into(),
                    text: "Change the current working directory to path.".into(),
                    similarity: 0.6,
                },
            ],
        }
    }

    fn rank_by(similarity: f64) -> ZeroRank {
        ZeroRank {
            weights: BTreeMap::from([("similarity".to_string(), similarity)]),
            fitted: String::new(),
        }
    }

    fn by_similarity(weight: f64) -> ZeroScore {
        ZeroScore {
            bias: 0.0,
            weights: BTreeMap::from([("similarity".to_string(), weight)]),
            threshold: 2.0,
            sentence_threshold: 2.0,
            fitted: String::new(),
        }
    }

    #[test]
    fn tier_zero_answers_with_the_best_ranked_candidate_not_the_first_found() {
        let r = retrieval();
        let q = "Which function returns the current working directory?";
        let zero = super::super::tier_zero(q, &r, &rank_by(1.0), &by_similarity(10.0));
        assert_eq!(zero.answer, "os.getcwd", "{:?}", zero.candidates);
        // A ranking that prefers the less similar sentence chooses the
        // other: the order is the ranking's, not the evidence's.
        let zero = super::super::tier_zero(q, &r, &rank_by(-1.0), &by_similarity(-10.0));
        assert_eq!(zero.answer, "os.chdir", "{:?}", zero.candidates);
        assert_eq!(zero.candidates[0], "os.chdir");
        assert_eq!(zero.candidates.len(), zero.ranked.len());
        let ranks: Vec<f64> = zero.ranked.iter().filter(|c| c.passes).filter_map(|c| c.rank).collect();
        assert!(ranks.windows(2).all(|w| w[0] >= w[1]), "best-ranked first: {ranks:?}");
        // Those failing a hard check come after every one that passes.
        let first_failing = zero.ranked.iter().position(|c| !c.passes).unwrap_or(zero.ranked.len());
        assert!(zero.ranked[first_failing..].iter().all(|c| !c.passes));
        assert_eq!(zero.score, zero.ranked[0].score);
        assert!(!zero.findings.is_empty(), "a threshold above 1 defends nothing");
    }

    #[test]
    fn standing_is_the_ranking_softmax_share_and_lead() {
        let mut a = ZeroFeatures([0.0; ZERO_FEATURES.len()]);
        let (mut b, mut c) = (a, a);
        let idx = |n: &str| ZERO_FEATURES.iter().position(|f| *f == n).unwrap();
        let mut values = vec![
            (Some(&mut a), 2.0),
            (Some(&mut b), 0.0),
            (None, 9.0),
            (Some(&mut c), 0.0),
        ];
        set_standing(&mut values);
        let e2 = 2f64.exp();
        assert!((a.0[idx("share")] - e2 / (e2 + 2.0)).abs() < 1e-9);
        assert!((a.0[idx("lead")] - 2.0).abs() < 1e-9);
        assert!((b.0[idx("lead")] + 2.0).abs() < 1e-9, "behind the best other");
        assert!((b.0[idx("share")] - c.0[idx("share")]).abs() < 1e-12);
        // Alone, a candidate has the whole share and the capped lead.
        let mut alone = ZeroFeatures([0.0; ZERO_FEATURES.len()]);
        set_standing(&mut [(Some(&mut alone), -3.0)]);
        assert_eq!(alone.0[idx("share")], 1.0);
        assert_eq!(alone.0[idx("lead")], LEAD_CAP);
    }

    #[test]
    fn features_read_the_evidence_of_any_manual() {
        let r = retrieval();
        let q =
            "My script writes files relative to where it runs. Which function returns the current working directory?";
        let labels = vec!["os.getcwd".to_string(), "os.chdir".to_string()];
        let x = judge_all(q, &r, &labels)[0].unwrap().features;
        let named = x.named();
        assert_eq!(named["defined"], 1.0, "a definition list's term defines it");
        assert_eq!(named["no_rival"], 0.0);
        assert!((named["margin"].as_f64().unwrap() - 0.2).abs() < 1e-6);
        assert_eq!(named["rank"], 1.0);
        assert_eq!(named["closer_gap"], 0.0);
        assert!(named["coverage"].as_f64().unwrap() > 0.5, "{named:?}");
        // A score weighs them; a weight for a name no feature has is refused by config validation.
        let model = ZeroScore {
            bias: -1.0,
            weights: BTreeMap::from([("margin".to_string(), 10.0), ("defined".to_string(), 1.0)]),
            threshold: 0.5,
            sentence_threshold: 2.0,
            fitted: String::new(),
        };
        assert!((score(&model, &x) - sigmoid(2.0)).abs() < 1e-6);
        let with_walk = ["os.walk".to_string(), "os.getcwd".to_string()];
        assert!(
            judge_all(q, &r, &with_walk)[0].is_none(),
            "no retrieved sentence holds it"
        );
    }
}
