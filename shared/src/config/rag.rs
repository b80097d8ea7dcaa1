//! The `[rag]` section: how rag jobs retrieve, answer and defend.

use super::{ConfigError, bad};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The evidence features tier zero's score weighs, by name (computed in
/// `verify::rag::judge`; each in [0, 1] unless said):
///
/// - `similarity`: the answer's sentence's similarity to the question;
/// - `margin`: how far that leads the best rival candidate's sentence
///   (in [-1, 1]; 0 without a rival) and `no_rival`: 1 without one;
/// - `closer_gap`: how far a sentence that does not hold the answer is
///   closer to the question than the answer's, and `closer`: 1 when one is;
/// - `defined`: the retrieval defines the answer (a definition line, a
///   definition list's term, a reference row, a page titled by it);
/// - `presented`: the answer's sentence presents it as what the question
///   asks for (a default stated as one, a program called one, a means
///   for "how do I");
/// - `coverage`: share of the asking sentence's content words that the
///   answer and its sentence hold, and `rival_coverage`: how much more
///   the best rival's hold;
/// - `elsewhere`: share of the asking sentence's content words that the
///   answer's sentence lacks and another retrieved sentence holds (a
///   sentence that fits the question better exists);
/// - `rank`: 1 / (1 + the rank of the answer's passage);
/// - `close_alternative`: another candidate names almost the same thing;
/// - `candidates`: ln(1 + the number of candidates) / ln(25);
/// - `free`, `value`: the question asks for a sentence, or a value;
/// - `best_similarity`: the retrieval's best sentence similarity;
/// - `order`: 1 / (1 + the answer's place in the evidence order, the
///   order candidates are drawn in: what the question names first, then
///   the sentences most similar to it);
/// - `proximity`: 1 / (1 + the words between the answer and the nearest of
///   the asking sentence's words in its sentence; 0: none there);
/// - `shape`: the answer has the shape of the kind asked (an option's `-`,
///   an environment variable's capitals, a class's CamelCase, a module's
///   lower case): 1, it has not: -1, no such kind asked: 0;
/// - `subject`: for a question not asking for a name, the definition the
///   answer's sentence falls under (the nearest definition line at or
///   before it in its passage) is one the asking sentence names: 1,
///   another's (a default stated for a neighbour): -1, none, or the
///   question names nothing: 0;
/// - `governs`: for a question asking for a name, the answer is the term
///   whose definition its sentence falls under: 1, another term's: -1,
///   none (or no name asked): 0;
/// - `name_parts`: for a question asking for a name, the share of the
///   answer's own words (its parts at `_`, `.`, `-`, `:` and case changes:
///   `walfile`, `name`, `offset`) the question holds, over one more than
///   the parts, the kind noun asked for (`which error`) not counted; 0
///   otherwise. Two names a part apart are told apart by the part the
///   question asks for;
/// - `share`: the candidate's share of the ranking's softmax over the
///   candidates that pass the hard checks (1: no rival), and `lead`: how
///   far its ranking value leads the best other's (clamped to [-5, 5]; 5:
///   no rival); 0 and -5 for a candidate failing the hard checks. Both
///   read the ranking, so its fit leaves them out ([`RANKING_READS`]):
///   they tell the score how clearly the answer won.
pub const ZERO_FEATURES: [&str; 25] = [
    "similarity",
    "margin",
    "no_rival",
    "closer_gap",
    "closer",
    "rival_close",
    "defined",
    "presented",
    "coverage",
    "rival_coverage",
    "elsewhere",
    "rank",
    "close_alternative",
    "candidates",
    "free",
    "value",
    "best_similarity",
    "order",
    "proximity",
    "shape",
    "subject",
    "governs",
    "name_parts",
    "share",
    "lead",
];

/// The features computed from `rag.zero_rank` itself: the ranking's fit
/// gives them no weight.
pub const RANKING_READS: [&str; 2] = ["share", "lead"];

/// Tier zero's evidence score: a logistic model over [`ZERO_FEATURES`],
/// and the score from which its answer is defended. Fitted on labelled
/// questions by `upshift eval rag --replay RECORDS --fit-zero FILE`, which
/// writes this table (docs/rag.md, "Calibrating on your own documents").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZeroScore {
    /// The model's intercept.
    pub bias: f64,
    /// One weight per feature name; a missing feature weighs 0.
    pub weights: BTreeMap<String, f64>,
    /// A name or value answer is defended when its score is at least this
    /// (above 1: never).
    pub threshold: f64,
    /// A sentence answer (to a free-form question) is defended when its
    /// score is at least this (above 1: never, the default): each kind of
    /// answer is held to the bound on its own, so sentences are never
    /// trusted on the strength of names.
    #[serde(default = "never_defended")]
    pub sentence_threshold: f64,
    /// What it was fitted on and the bound it met, shown with the findings.
    #[serde(default)]
    pub fitted: String,
}

/// A threshold no score reaches.
fn never_defended() -> f64 {
    2.0
}

/// Which candidate tier zero answers with: a linear ranking over
/// [`ZERO_FEATURES`], fitted as a conditional logit (a softmax over each
/// calibration question's candidates) by `upshift eval rag --replay
/// RECORDS --fit-zero FILE`. No weights: the evidence order (those that
/// pass the hard checks first).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZeroRank {
    /// One weight per feature name; a missing feature weighs 0.
    #[serde(default)]
    pub weights: BTreeMap<String, f64>,
    /// What it was fitted on.
    #[serde(default)]
    pub fitted: String,
}

/// How a rag job's answer is produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerMode {
    /// The model chooses among spans of the retrieved passages (scored as
    /// labels); the answer is composed from the chosen span and its cited
    /// sentence without a model.
    Extractive,
    /// The model extracts facts and writes the answer itself.
    Generative,
}

/// When the critique step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CritiqueMode {
    /// Only when some tier's critic is trusted (a `rag_critique` threshold
    /// under 1 in `routing.accept.<tier>.by_class`): it starts on the
    /// lowest such tier at or above the one below the answering model. A
    /// critic measured to be no better than chance adds nothing to defend.
    Trusted,
    /// Always, from the small tier up, whatever its trust (calibration
    /// runs use this to measure every tier's critic).
    Always,
}

/// The `[rag]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RagConfig {
    /// How answers are produced.
    pub answer: AnswerMode,
    /// When the critique runs.
    pub critique: CritiqueMode,
    /// Passages a retrieval keeps for the later steps.
    pub passages: u32,
    /// Retrieval floor: fewest passages.
    pub min_passages: u32,
    /// Retrieval floor with embeddings: the best sentence's similarity to
    /// the question.
    pub min_similarity: f32,
    /// Retrieval floor without embeddings: the full-text rank two passages need.
    pub min_lexical_score: f32,
    /// Lowest similarity to the question of the sentence an extractive
    /// answer's span comes from.
    pub min_relevance: f32,
    /// A chosen span's sentence must be at least this much more similar to
    /// the question than the best rival candidate's (`ambiguous_evidence`).
    pub min_margin: f32,
    /// The sentence-embedding model: a directory under the model directory
    /// holding `model.safetensors`, `config.json` and `tokenizer.json`.
    /// Empty: no embeddings (full-text retrieval only).
    pub embedding_model: String,
    /// Tokens of a passage the embedding model reads (the rest is cut).
    pub embed_max_tokens: u32,
    /// Keep computed vectors in a file under the model directory too, so no
    /// text is embedded twice on one machine (vectors only, never text).
    pub embedding_cache: bool,
    /// Candidates each ranking contributes before fusion.
    pub fusion_depth: u32,
    /// `k` of reciprocal rank fusion: score = Σ 1 / (k + rank).
    pub rrf_k: u32,
    /// Which candidate tier zero answers with.
    #[serde(default)]
    pub zero_rank: ZeroRank,
    /// Tier zero's calibrated evidence score.
    pub zero_score: ZeroScore,
}

impl RagConfig {
    /// Checks ranges; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=16).contains(&self.passages) {
            return Err(bad("rag.passages", "must be between 1 and 16"));
        }
        if self.min_passages > self.passages {
            return Err(bad("rag.min_passages", "must not exceed rag.passages"));
        }
        for (key, v) in [
            ("rag.min_similarity", self.min_similarity),
            ("rag.min_relevance", self.min_relevance),
            ("rag.min_lexical_score", self.min_lexical_score),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(bad(key, "must be in [0, 1]"));
            }
        }
        if !(0.0..=1.0).contains(&self.min_margin) {
            return Err(bad("rag.min_margin", "must be in [0, 1]"));
        }
        if !(16..=512).contains(&self.embed_max_tokens) {
            return Err(bad("rag.embed_max_tokens", "must be between 16 and 512"));
        }
        if self.fusion_depth < self.passages || self.fusion_depth > 200 {
            return Err(bad("rag.fusion_depth", "must be between rag.passages and 200"));
        }
        if self.rrf_k == 0 {
            return Err(bad("rag.rrf_k", "must be greater than 0"));
        }
        for (table, weights) in [
            ("rag.zero_score", &self.zero_score.weights),
            ("rag.zero_rank", &self.zero_rank.weights),
        ] {
            if let Some(k) = weights.keys().find(|k| !ZERO_FEATURES.contains(&k.as_str())) {
                return Err(bad(
                    format!("{table}.weights.{k}"),
                    format!("not a feature; one of {}", ZERO_FEATURES.join(", ")),
                ));
            }
            if weights.values().any(|w| !w.is_finite()) {
                return Err(bad(table, "weights must be finite numbers"));
            }
        }
        if !self.zero_score.threshold.is_finite() || !self.zero_score.sentence_threshold.is_finite() {
            return Err(bad("rag.zero_score", "the threshold must be a finite number"));
        }
        if self.embedding_model.contains("..") || self.embedding_model.starts_with('/') {
            return Err(bad("rag.embedding_model", "a directory name under the model directory"));
        }
        Ok(())
    }
}
