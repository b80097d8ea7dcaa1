//! Tier zero's one calibrated decision: the evidence for the evidence's
//! own first choice, as features every corpus has ([`ZERO_FEATURES`]),
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

use super::{Evidence, close_alternative, defined_terms, lead, locate, rival};
use crate::config::{ZERO_FEATURES, ZeroScore};
use crate::stats::sigmoid;
use crate::verify::rag::Retrieval;
use crate::verify::rag::checks::{asks_how, names_a_means, presents_program, states_default};
use crate::verify::rag::question::{QuestionType, asking_sentence, classify};
use crate::verify::rag::text::content_words;

/// Similarities closer than this are not ordered reliably by the embedding
/// (a right and a wrong name 0.03 apart in the calibration questions): the
/// width of `rival_close`, a feature whose weight the fit sets.
const RIVAL_WINDOW: f64 = 0.05;

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
    let name = name.trim().trim_end_matches("()");
    defined_terms(r).iter().any(|t| t.eq_ignore_ascii_case(name))
}

/// Share of the asking sentence's content words that `text` holds.
fn coverage(asked: &[String], text: &str) -> f64 {
    if asked.is_empty() {
        return 0.0;
    }
    let words = content_words(text);
    asked.iter().filter(|w| words.contains(w)).count() as f64 / asked.len() as f64
}

/// Whether `ev`'s sentence presents `answer` as what a question of type
/// `t` asks for.
fn presented(query: &str, t: QuestionType, answer: &str, ev: &Evidence<'_>) -> bool {
    match t {
        QuestionType::Default => states_default(&ev.passage.text, answer),
        QuestionType::Program => presents_program(ev.passage, answer),
        QuestionType::Free if asks_how(query) => names_a_means(&ev.sentence, query),
        _ => true,
    }
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

/// The evidence for `answer` (the first of `labels`) as the answer to
/// `query` over `r`; `None` when no retrieved sentence holds it.
pub fn zero_features(query: &str, r: &Retrieval, answer: &str, labels: &[String]) -> Option<Judged> {
    let t = classify(query);
    let ev = locate(answer, r)?;
    let sim = f64::from(ev.similarity.unwrap_or(0.0));
    let rival = rival(answer, labels, r);
    let rival_sim = rival.as_ref().and_then(|(_, e)| e.similarity).map(f64::from);
    let best = r.sentences.iter().map(|s| f64::from(s.similarity)).fold(0.0, f64::max);
    let closer = r
        .sentences
        .iter()
        .filter(|s| s.text.split_whitespace().count() >= 4 && !s.text.contains(answer))
        .map(|s| f64::from(s.similarity))
        .fold(0.0, f64::max);
    let asked = content_words(&asking_sentence(query));
    let own_cov = coverage(&asked, &format!("{answer} {}", ev.sentence));
    let rival_cov = rival
        .as_ref()
        .map_or(0.0, |(name, e)| coverage(&asked, &format!("{name} {}", e.sentence)));
    let own_words = content_words(&format!("{answer} {}", ev.sentence));
    let others: std::collections::HashSet<String> = r
        .scored_sentences()
        .iter()
        .filter(|(_, s, _)| *s != ev.sentence)
        .flat_map(|(_, s, _)| content_words(s))
        .collect();
    let elsewhere = if asked.is_empty() {
        0.0
    } else {
        asked
            .iter()
            .filter(|w| !own_words.contains(w) && others.contains(*w))
            .count() as f64
            / asked.len() as f64
    };
    let rank = r
        .passages
        .iter()
        .position(|p| p.passage_id == ev.passage.passage_id)
        .unwrap_or(r.passages.len());
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let margin = rival_sim.map_or(0.0, |s| (sim - s).clamp(-1.0, 1.0));
    let features = ZeroFeatures([
        sim,
        margin,
        flag(rival_sim.is_none()),
        (closer - sim).max(0.0),
        flag(closer > sim),
        flag(rival_sim.is_some() && margin < RIVAL_WINDOW && rival_cov > own_cov),
        flag(defined(answer, r)),
        flag(presented(query, t, answer, &ev)),
        own_cov,
        (rival_cov - own_cov).max(0.0),
        elsewhere,
        1.0 / (1.0 + rank as f64),
        flag(close_alternative(query, answer, labels).is_some()),
        (1.0 + labels.len() as f64).ln() / 25f64.ln(),
        flag(t == QuestionType::Free),
        flag(matches!(t, QuestionType::Default | QuestionType::Number)),
        best,
    ]);
    Some(Judged {
        features,
        similarity: ev.similarity,
        margin: ev.similarity.and_then(|s| lead(s, rival.as_ref())),
    })
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

    #[test]
    fn features_read_the_evidence_of_any_manual() {
        let r = retrieval();
        let q =
            "My script writes files relative to where it runs. Which function returns the current working directory?";
        let labels = vec!["os.getcwd".to_string(), "os.chdir".to_string()];
        let x = zero_features(q, &r, "os.getcwd", &labels).unwrap().features;
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
            fitted: String::new(),
        };
        assert!((score(&model, &x) - sigmoid(2.0)).abs() < 1e-6);
        assert!(zero_features(q, &r, "os.walk", &labels).is_none());
    }
}
