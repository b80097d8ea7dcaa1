//! Tier zero of an extraction: the evidence's own first choice, and
//! whether it can be defended without a model. The router decides with it
//! online; `examples/rag_replay.rs` runs the same code over recorded
//! retrievals, so a rule change is measured before a job sees it.

use super::{Evidence, candidates, close_alternative, lead, locate, rival};
use crate::config::RagConfig;
use crate::reasons::ReasonCode;
use crate::verify::rag::question::classify;
use crate::verify::rag::text::content_words;
use crate::verify::rag::{Retrieval, SpanFloors, check_span};
use crate::verify::{Finding, clip};

/// What tier zero makes of a retrieval.
#[derive(Debug, Clone)]
pub struct ZeroChoice {
    /// The evidence's first choice (empty without candidates).
    pub answer: String,
    /// Every candidate, in the evidence's order (a model's labels).
    pub candidates: Vec<String>,
    /// Its sentence's similarity to the question.
    pub similarity: Option<f32>,
    /// Its lead over the best rival candidate's sentence.
    pub margin: Option<f32>,
    /// The span verifiers' findings alone: what the tier-zero threshold
    /// is measured on.
    pub span_findings: Vec<Finding>,
    /// Everything that stops tier zero defending it; empty: defended.
    pub findings: Vec<Finding>,
}

impl ZeroChoice {
    /// Whether a model could add evidence: choosing among one label always
    /// scores 1, so with a single candidate there is nothing to ask.
    pub fn askable(&self) -> bool {
        self.candidates.len() >= 2
    }
}

/// How far tier zero may trust the evidence's ranking.
#[derive(Debug, Clone, Copy)]
pub struct ZeroFloors {
    /// The chosen span's own floors (its verifiers).
    pub span: SpanFloors,
    /// Lowest similarity of its sentence to the question (`rag.zero_min_relevance`).
    pub min_relevance: f32,
    /// How close a rival may come (`rag.rival_window`).
    pub rival_window: f32,
}

impl From<&RagConfig> for ZeroFloors {
    fn from(cfg: &RagConfig) -> ZeroFloors {
        ZeroFloors {
            span: SpanFloors::from(cfg),
            min_relevance: cfg.zero_min_relevance,
            rival_window: cfg.rival_window,
        }
    }
}

/// Tier zero for `query` over `r`: the first candidate is defended when its
/// span verifiers pass, no other candidate names almost the same thing,
/// its sentence is at least `min_relevance` similar to the question, and
/// (for a name) the evidence singles it out: no sentence closer to the
/// question says something else, and no rival nearly as close holds more
/// of the question's words.
pub fn tier_zero(query: &str, r: &Retrieval, floors: ZeroFloors) -> ZeroChoice {
    let ZeroFloors {
        span: span_floors,
        min_relevance: zero_min_relevance,
        rival_window,
    } = floors;
    let labels = candidates(query, r);
    let first = labels.first().cloned().unwrap_or_default();
    let own = locate(&first, r);
    let similarity = own.as_ref().and_then(|e| e.similarity);
    // The candidate closest behind it, found once: the margin and the
    // rival rule both weigh it.
    let rival = rival(&first, &labels, r);
    let span_findings = check_span(&first, r, query, span_floors);
    let mut findings = span_findings.clone();
    if let Some(alt) = close_alternative(query, &first, &labels) {
        // Two names a part apart: the ranking of sentences cannot tell
        // which one the question means; a model must choose.
        findings.push(Finding::new(
            ReasonCode::AmbiguousEvidence,
            format!("`{alt}` is also a candidate and names almost the same thing as `{first}`"),
        ));
    }
    if similarity.unwrap_or(0.0) < zero_min_relevance && !findings.iter().any(|f| f.code == ReasonCode::LowRelevance) {
        findings.push(Finding::new(
            ReasonCode::LowRelevance,
            format!(
                "its sentence scores {:.2} against the question; without a model it needs {zero_min_relevance:.2}{}",
                similarity.unwrap_or(0.0),
                if labels.len() < 2 {
                    ", and with no other candidate a model has nothing to choose"
                } else {
                    ""
                }
            ),
        ));
    }
    if classify(query).wants_name()
        && let Some(own) = &own
        && let Some(sim) = own.similarity
    {
        findings.extend(unsingled(query, (&first, own, sim), rival.as_ref(), r, rival_window));
    }
    ZeroChoice {
        margin: similarity.and_then(|sim| lead(sim, rival.as_ref())),
        answer: first,
        candidates: labels,
        similarity,
        span_findings,
        findings,
    }
}

/// Why the evidence does not single out `answer` (from `own`, its
/// sentence scoring `sim`), if it does not:
///
/// - a sentence of the retrieval closer to the question does not hold it
///   (fresh5 n28: "Converts a write-ahead log location to the name of the
///   WAL file holding that location", 0.92, whose function's name ended the
///   passage before; the answer came from the next row, 0.876);
/// - a rival candidate's sentence scores within `window` of its own and
///   holds more of the question's content words: embedding and words
///   disagree on which one the question describes (fresh5 n25, n30).
fn unsingled(
    query: &str,
    (answer, own, sim): (&str, &Evidence<'_>, f32),
    rival: Option<&(String, Evidence<'_>)>,
    r: &Retrieval,
    window: f32,
) -> Vec<Finding> {
    let mut out = Vec::new();
    // Headings ("The PostgreSQL User Account") look like a question but
    // state nothing.
    if let Some(closer) = r
        .sentences
        .iter()
        .filter(|s| s.text.split_whitespace().count() >= 4 && s.similarity > sim)
        .max_by(|a, b| a.similarity.total_cmp(&b.similarity))
    {
        out.push(Finding::new(
            ReasonCode::AmbiguousEvidence,
            format!(
                "a sentence closer to the question ({:.2} against {sim:.2}) does not hold `{}`: \"{}\"",
                closer.similarity,
                clip(answer, 40),
                clip(&closer.text, 80)
            ),
        ));
    }
    let asked = content_words(query);
    let covered = |text: &str| {
        let words = content_words(text);
        asked.iter().filter(|w| words.contains(w)).count()
    };
    if let Some((name, ev)) = rival
        && let Some(theirs) = ev.similarity
        && sim - theirs < window
    {
        let (mine, their) = (
            covered(&format!("{answer} {}", own.sentence)),
            covered(&format!("{name} {}", ev.sentence)),
        );
        if their > mine {
            out.push(Finding::new(
                ReasonCode::AmbiguousEvidence,
                format!(
                    "`{}` is nearly as close ({theirs:.2} against {sim:.2}) and its sentence holds more of the question's words ({their} against {mine})",
                    clip(name, 40)
                ),
            ));
        }
    }
    out
}
