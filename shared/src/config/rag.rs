//! The `[rag]` section: how rag jobs retrieve, answer and defend.

use super::{ConfigError, bad};
use serde::{Deserialize, Serialize};

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
    /// The evidence's own first choice (the span of the sentence ranked
    /// first) is accepted without a model when its sentence is at least
    /// this similar to the question; below it, a model must agree. 1 = never.
    pub zero_min_relevance: f32,
    /// Tier zero's answer is not defended when a rival candidate's sentence
    /// scores within this much of its own and holds more of the question's
    /// words: the two signals disagree on which one the question describes.
    pub rival_window: f32,
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
            ("rag.zero_min_relevance", self.zero_min_relevance),
            ("rag.rival_window", self.rival_window),
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
        if self.embedding_model.contains("..") || self.embedding_model.starts_with('/') {
            return Err(bad("rag.embedding_model", "a directory name under the model directory"));
        }
        Ok(())
    }
}
