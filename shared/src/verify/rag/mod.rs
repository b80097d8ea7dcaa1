//! Verifiers of the `rag` job's steps. They read the passages the retrieve
//! step found and check the later steps against them:
//!
//! - **retrieval**: at least [`RetrievalFloor::min_passages`] passages scored
//!   at or above the floor (`retrieval_empty`);
//! - **facts** (extract): every fact cites a retrieved passage
//!   (`citation_missing`) and at least [`MIN_SUPPORT`] of its content words
//!   occur in that passage (`unsupported_claims`); named things of the query
//!   appear in some fact (`unresolved_entities`);
//! - **answer** (synthesise): every sentence that states something cites a
//!   retrieved passage (`citation_missing`), at most [`MAX_UNSUPPORTED_SHARE`]
//!   of cited sentences are unsupported by what they cite
//!   (`unsupported_claims`), and the cited passages do not give different
//!   values for the same setting (`conflicting_evidence`).

pub mod text;

use super::Finding;
use crate::reasons::ReasonCode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A claim is supported when at least this share of its content words occur
/// in the passages it cites.
pub const MIN_SUPPORT: f64 = 0.6;
/// Most unsupported cited sentences an answer may have, as a share.
pub const MAX_UNSUPPORTED_SHARE: f64 = 0.25;
/// A sentence with fewer content words than this states nothing to cite.
pub const MIN_CLAIM_WORDS: usize = 3;

/// A passage the retrieve step found, as later steps see and cite it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Passage {
    /// `<document id>#<n>`.
    pub passage_id: String,
    /// The document.
    pub document_id: String,
    /// The document's title.
    pub title: String,
    /// Full-text rank.
    pub score: f32,
    /// The passage text.
    pub text: String,
}

/// The retrieve step's accepted output: the model's search terms and what
/// the search returned for them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retrieval {
    /// The terms searched for.
    pub terms: String,
    /// The passages found, best first.
    pub passages: Vec<Passage>,
}

impl Retrieval {
    /// Parses a retrieve step's stored output.
    pub fn parse(output: &str) -> Option<Retrieval> {
        serde_json::from_str(output).ok()
    }

    fn get(&self, id: &str) -> Option<&Passage> {
        self.passages.iter().find(|p| p.passage_id == id)
    }
}

/// One extracted fact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fact {
    /// The fact, in the passage's words.
    pub fact: String,
    /// The passage it comes from.
    pub passage_id: String,
}

/// The JSON schema of the extract step's output, `{"facts": [{fact,
/// passage_id}]}`. An object at the top rather than a bare array, because
/// OpenAI's strict structured outputs accept only objects there.
pub fn facts_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {"facts": {
            "type": "array", "minItems": 1, "maxItems": 5,
            "items": {
                "type": "object",
                "properties": {
                    "fact": {"type": "string", "minLength": 10, "maxLength": 300},
                    "passage_id": {"type": "string"}
                },
                "required": ["fact", "passage_id"],
                "additionalProperties": false
            }
        }},
        "required": ["facts"],
        "additionalProperties": false
    })
}

/// The facts of an extract output (`{"facts": [...]}`, or a bare array).
pub fn parse_facts(output: &str) -> Option<Vec<Fact>> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Facts {
        Wrapped { facts: Vec<Fact> },
        Bare(Vec<Fact>),
    }
    match serde_json::from_str::<Facts>(super::schema::strip_fence(output)).ok()? {
        Facts::Wrapped { facts } | Facts::Bare(facts) => Some(facts),
    }
}

/// The JSON schema of the critique step's verdict.
pub fn verdict_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "verdict": {"enum": ["supported", "unsupported"]},
            "reason": {"type": "string", "maxLength": 200}
        },
        "required": ["verdict", "reason"],
        "additionalProperties": false
    })
}

/// A critique's verdict, when its output parses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Verdict {
    /// `supported` or `unsupported`.
    pub verdict: String,
    /// Why.
    #[serde(default)]
    pub reason: String,
}

impl Verdict {
    /// Parses a critique output (fenced JSON tolerated).
    pub fn parse(output: &str) -> Option<Verdict> {
        serde_json::from_str(super::schema::strip_fence(output)).ok()
    }

    /// Whether the critic rejected the answer.
    pub fn rejects(&self) -> bool {
        self.verdict != "supported"
    }
}

/// The retrieval floor: enough passages at or above a score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetrievalFloor {
    /// Fewest passages.
    pub min_passages: usize,
    /// Lowest score that counts.
    pub min_score: f32,
}

/// `retrieval_empty` when too few passages clear the floor.
pub fn check_retrieval(r: &Retrieval, floor: RetrievalFloor) -> Option<Finding> {
    let good = r.passages.iter().filter(|p| p.score >= floor.min_score).count();
    (good < floor.min_passages).then(|| {
        Finding::new(
            ReasonCode::RetrievalEmpty,
            format!(
                "terms `{}` found {good} passages scoring ≥ {} (need {})",
                r.terms, floor.min_score, floor.min_passages
            ),
        )
    })
}

/// Checks extracted facts against the passages and the query.
pub fn check_facts(output: &str, r: &Retrieval, query: &str) -> Vec<Finding> {
    let Some(facts) = parse_facts(output) else {
        return Vec::new(); // the schema verifier reports malformed output
    };
    let mut out = Vec::new();
    let unknown: Vec<&str> = facts
        .iter()
        .filter(|f| r.get(&f.passage_id).is_none())
        .map(|f| f.passage_id.as_str())
        .collect();
    if !unknown.is_empty() {
        out.push(Finding::new(
            ReasonCode::CitationMissing,
            format!("cites passages that were not retrieved: {}", unknown.join(", ")),
        ));
    }
    let unsupported: Vec<String> = facts
        .iter()
        .enumerate()
        .filter(|(_, f)| {
            r.get(&f.passage_id).is_some_and(|p| {
                text::support(&f.fact, &text::word_set([p.text.as_str(), p.title.as_str()])) < MIN_SUPPORT
            })
        })
        .map(|(i, _)| format!("fact {i}"))
        .collect();
    if !unsupported.is_empty() {
        out.push(Finding::new(
            ReasonCode::UnsupportedClaims,
            format!("not supported by the cited passage: {}", unsupported.join(", ")),
        ));
    }
    let all: String = facts.iter().map(|f| f.fact.as_str()).collect::<Vec<_>>().join(" ");
    let missing: Vec<String> = text::entities(query)
        .into_iter()
        .filter(|e| !text::mentions(&all, e))
        .collect();
    if !missing.is_empty() {
        out.push(Finding::new(
            ReasonCode::UnresolvedEntities,
            format!("the facts never mention: {}", missing.join(", ")),
        ));
    }
    out
}

/// Checks a synthesised answer's citations, support and evidence.
pub fn check_answer(answer: &str, r: &Retrieval) -> Vec<Finding> {
    let mut out = Vec::new();
    if answer.trim().is_empty() {
        return vec![Finding::new(ReasonCode::AnswerFormat, "empty answer")];
    }
    let unknown: Vec<String> = text::citations(answer)
        .into_iter()
        .filter(|id| r.get(id).is_none())
        .collect();
    if !unknown.is_empty() {
        out.push(Finding::new(
            ReasonCode::CitationMissing,
            format!("cites passages that were not retrieved: {}", unknown.join(", ")),
        ));
    }
    let (mut claims, mut uncited, mut unsupported) = (0, 0, 0);
    for s in text::sentences(answer) {
        let bare = text::strip_citations(&s);
        if text::content_words(&bare).len() < MIN_CLAIM_WORDS {
            continue;
        }
        claims += 1;
        let cited: Vec<&Passage> = text::citations(&s).iter().filter_map(|id| r.get(id)).collect();
        if cited.is_empty() {
            uncited += 1;
            continue;
        }
        let source = text::word_set(cited.iter().flat_map(|p| [p.text.as_str(), p.title.as_str()]));
        if text::support(&bare, &source) < MIN_SUPPORT {
            unsupported += 1;
        }
    }
    if uncited > 0 {
        out.push(Finding::new(
            ReasonCode::CitationMissing,
            format!("{uncited} of {claims} sentences cite no retrieved passage"),
        ));
    }
    let cited = claims - uncited;
    if cited > 0 && unsupported as f64 / cited as f64 > MAX_UNSUPPORTED_SHARE {
        out.push(Finding::new(
            ReasonCode::UnsupportedClaims,
            format!("{unsupported} of {cited} cited sentences are not supported by their passages"),
        ));
    }
    let cited: Vec<&Passage> = text::citations(answer).iter().filter_map(|id| r.get(id)).collect();
    out.extend(conflicts(&cited).map(|d| Finding::new(ReasonCode::ConflictingEvidence, d)));
    out
}

/// The first setting to which `passages` give different values, described.
pub fn conflicts(passages: &[&Passage]) -> Option<String> {
    let mut seen: BTreeMap<String, (String, &str)> = BTreeMap::new();
    for p in passages {
        for (key, value) in text::settings(&p.text) {
            match seen.get(&key) {
                Some((v, other)) if *v != value && *other != p.passage_id => {
                    return Some(format!("`{key}` is {v} in {other} but {value} in {}", p.passage_id));
                }
                Some(_) => {}
                None => {
                    seen.insert(key, (value, &p.passage_id));
                }
            }
        }
    }
    None
}

/// Ambiguity of the steps after retrieval, from what was retrieved, with
/// its parts for the route: `0.4 × unresolved + 0.3 × flatness + 0.3 ×
/// conflict`, never below `base` (the query's own estimate).
///
/// - unresolved: share of the query's entities no passage mentions;
/// - flatness: `1 − (best − worst) / best` over the passages' scores (a flat
///   ranking means the search could not tell passages apart);
/// - conflict: 1 when the passages give different values for a setting.
pub fn ambiguity(query: &str, r: &Retrieval, base: f64) -> (f64, serde_json::Value) {
    let ents = text::entities(query);
    let all: String = r.passages.iter().map(|p| p.text.as_str()).collect::<Vec<_>>().join(" ");
    let unresolved = if ents.is_empty() {
        0.0
    } else {
        ents.iter().filter(|e| !text::mentions(&all, e)).count() as f64 / ents.len() as f64
    };
    let scores: Vec<f32> = r.passages.iter().map(|p| p.score).collect();
    let best = scores.iter().copied().fold(0.0f32, f32::max);
    let worst = scores.iter().copied().fold(f32::INFINITY, f32::min);
    let flatness = if scores.len() < 2 || best <= 0.0 {
        1.0
    } else {
        1.0 - f64::from((best - worst) / best)
    };
    let all_refs: Vec<&Passage> = r.passages.iter().collect();
    let conflict = conflicts(&all_refs);
    let a = (0.4 * unresolved + 0.3 * flatness + 0.3 * f64::from(u8::from(conflict.is_some()))).max(base);
    let detail = serde_json::json!({
        "base": base, "unresolved_entities": unresolved, "score_flatness": flatness,
        "conflict": conflict,
    });
    (a.clamp(0.0, 1.0), detail)
}

#[cfg(test)]
mod tests;
