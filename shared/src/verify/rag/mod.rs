//! The `rag` job's pure logic: what retrieval found ([`Retrieval`]), what a
//! question asks for ([`question`]), the spans that can answer it
//! ([`spans`], [`extractive`]), and the verifiers of each step ([`checks`]):
//!
//! - **retrieval**: enough passages, and evidence similar enough to the
//!   question (or, without embeddings, ranked above the lexical floor)
//!   (`retrieval_empty`);
//! - **facts** (extract, generative): every fact cites a retrieved passage
//!   (`citation_missing`) and at least [`MIN_SUPPORT`] of its content words
//!   occur in that passage (`unsupported_claims`); named things of the query
//!   appear in some fact (`unresolved_entities`);
//! - **span** (extract, extractive): the chosen span is a candidate of a
//!   retrieved passage of the right type, not "none of these" (`no_answer`),
//!   whose passage names the question's entities and whose sentence is
//!   about the question (`low_relevance`);
//! - **answer** (synthesise): every sentence that states something cites a
//!   retrieved passage (`citation_missing`); every cited sentence is
//!   supported by what it cites, numbers and names included
//!   (`unsupported_claims`); cited passages agree (`conflicting_evidence`);
//!   the answer names something of the type asked for
//!   (`answer_type_mismatch`).

mod checks;
pub mod extractive;
pub mod question;
pub mod spans;
pub mod text;

pub use checks::{
    SpanFloors, ambiguity, check_answer, check_answer_type, check_facts, check_retrieval, check_span, check_span_hard,
    conflicts, presents_program,
};

use serde::{Deserialize, Serialize};

/// The verifiers of a rag job's synthesis step: every stated sentence
/// cited and supported, the answer of the type asked for, not degenerate.
pub const SYNTHESISE_VERIFIERS: [crate::verify::VerifierKind; 3] = [
    crate::verify::VerifierKind::AnswerCitations,
    crate::verify::VerifierKind::AnswerType,
    crate::verify::VerifierKind::Degenerate,
];

/// A claim is supported when at least this share of its content words occur
/// in the passages it cites.
pub const MIN_SUPPORT: f64 = 0.6;
/// Most unsupported cited sentences an answer may have, as a share: none.
/// (It was a quarter; an answer of three sentences could then carry one made
/// up, and a small model's made-up sentence is exactly what must not pass.)
pub const MAX_UNSUPPORTED_SHARE: f64 = 0.0;
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
    /// Its score in the ranking that chose it (fused, or full-text rank).
    pub score: f32,
    /// The passage text.
    pub text: String,
    /// Full-text rank (`ts_rank`), when full-text search found it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lexical: Option<f32>,
    /// Cosine similarity of the passage's embedding to the question's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f32>,
    /// The name it was fetched to define, when it is no search result but
    /// the definition of a candidate the results only mention
    /// ([`extractive::lookup`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defines: Option<String>,
}

/// A sentence of a retrieved passage and its similarity to the question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sentence {
    /// The passage it belongs to.
    pub passage_id: String,
    /// The sentence, as the passage has it.
    pub text: String,
    /// Cosine similarity of its embedding to the question's.
    pub similarity: f32,
}

/// The retrieve step's accepted output: what was searched for and what
/// the search returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retrieval {
    /// What was searched for: the question, and after an escalation a
    /// model's rewrite of it too.
    pub terms: String,
    /// `hybrid` (full-text and dense rankings fused) or `lexical`.
    #[serde(default = "lexical_mode")]
    pub mode: String,
    /// The passages found, best first.
    pub passages: Vec<Passage>,
    /// The passages' sentences with their similarity to the question, most
    /// similar first (empty without an embedding model).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sentences: Vec<Sentence>,
}

fn lexical_mode() -> String {
    "lexical".into()
}

impl Retrieval {
    /// Parses a retrieve step's stored output.
    pub fn parse(output: &str) -> Option<Retrieval> {
        serde_json::from_str(output).ok()
    }

    /// The search's own passages, best first: without the definitions
    /// looked up for its candidates ([`Passage::defines`]).
    pub fn results(&self) -> impl Iterator<Item = &Passage> {
        self.passages.iter().filter(|p| p.defines.is_none())
    }

    /// The passages looked up as the definition of a candidate.
    pub fn definitions(&self) -> impl Iterator<Item = &Passage> {
        self.passages.iter().filter(|p| p.defines.is_some())
    }

    /// The similarity to the question of the search's sentence most similar
    /// to it (a definition looked up is not the search's); `None` without
    /// embeddings.
    pub fn best_similarity(&self) -> Option<f32> {
        let looked_up: Vec<&str> = self.definitions().map(|p| p.passage_id.as_str()).collect();
        self.sentences
            .iter()
            .filter(|s| !looked_up.contains(&s.passage_id.as_str()))
            .map(|s| s.similarity)
            .reduce(f32::max)
    }

    /// The passage `id`, if it was retrieved.
    pub fn get(&self, id: &str) -> Option<&Passage> {
        self.passages.iter().find(|p| p.passage_id == id)
    }

    /// The sentences to judge evidence by: the scored ones, or (without
    /// embeddings) every sentence of the passages in ranking order.
    pub fn scored_sentences(&self) -> Vec<(String, String, Option<f32>)> {
        if !self.sentences.is_empty() {
            return self
                .sentences
                .iter()
                .map(|s| (s.passage_id.clone(), s.text.clone(), Some(s.similarity)))
                .collect();
        }
        self.passages
            .iter()
            .flat_map(|p| {
                text::sentences(&p.text)
                    .into_iter()
                    .map(|s| (p.passage_id.clone(), s, None))
            })
            .collect()
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

crate::types::text_enum! {
    /// What a critique says of an answer.
    CritiqueVerdict {
        /// The answer is supported by its evidence.
        Supported => "supported",
        /// It is not.
        Unsupported => "unsupported",
    }
}

/// The JSON schema of the critique step's verdict.
pub fn verdict_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "verdict": {"enum": VERDICTS},
            "reason": {"type": "string", "maxLength": 200}
        },
        "required": ["verdict", "reason"],
        "additionalProperties": false
    })
}

/// The labels a critique chooses between when it is scored as a label
/// task: the answer is supported by its evidence, or it is not.
pub const VERDICTS: [&str; 2] = ["supported", "unsupported"];

/// A critique's verdict, when its output parses.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Supported or not.
    pub verdict: CritiqueVerdict,
    /// Why.
    pub reason: String,
}

impl Verdict {
    /// Parses a critique output: JSON (fenced tolerated) or a bare label.
    /// A JSON verdict that is not `supported` counts as a rejection: only
    /// an explicit "supported" supports an answer.
    pub fn parse(output: &str) -> Option<Verdict> {
        if let Some(v) = super::match_label(output, &VERDICTS.map(String::from)) {
            return Some(Verdict {
                verdict: v.parse().ok()?,
                reason: String::new(),
            });
        }
        #[derive(Deserialize)]
        struct Said {
            verdict: String,
            #[serde(default)]
            reason: String,
        }
        let said: Said = serde_json::from_str(super::schema::strip_fence(output)).ok()?;
        Some(Verdict {
            verdict: said.verdict.parse().unwrap_or(CritiqueVerdict::Unsupported),
            reason: said.reason,
        })
    }

    /// Whether the critic rejected the answer.
    pub fn rejects(&self) -> bool {
        self.verdict != CritiqueVerdict::Supported
    }
}

/// The retrieval floor: enough passages, and evidence similar enough to
/// the question; without embeddings, enough passages ranked at or above a
/// full-text score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetrievalFloor {
    /// Fewest passages.
    pub min_passages: usize,
    /// Lowest full-text rank that counts (lexical retrieval only).
    pub min_score: f32,
    /// Lowest similarity of the best sentence to the question (hybrid).
    pub min_similarity: f32,
}

impl From<&crate::config::RagConfig> for RetrievalFloor {
    fn from(cfg: &crate::config::RagConfig) -> RetrievalFloor {
        RetrievalFloor {
            min_passages: cfg.min_passages as usize,
            min_score: cfg.min_lexical_score,
            min_similarity: cfg.min_similarity,
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
#[test]
fn the_critique_labels_are_the_verdicts() {
    let names: Vec<&str> = CritiqueVerdict::ALL.iter().map(|v| v.as_str()).collect();
    assert_eq!(names, VERDICTS);
    // Only an explicit "supported" supports.
    let odd = Verdict::parse(r#"{"verdict": "maybe", "reason": "unsure"}"#).unwrap();
    assert!(odd.rejects() && odd.reason == "unsure");
    assert!(
        !Verdict::parse(r#"{"verdict": "supported", "reason": ""}"#)
            .unwrap()
            .rejects()
    );
}
