//! Hybrid retrieval: full-text search and dense (embedding) search, each
//! asked for its best `rag.fusion_depth` passages, fused by reciprocal rank
//! fusion (score = Σ 1 / (k + rank), k = `rag.rrf_k`).
//!
//! A question that names something by its identifier (`work_mem`) also
//! ranks the passages that contain the identifier verbatim, those naming it
//! earliest first. A rag job searches with its question itself first: no
//! model can spoil that. When the retrieval misses its floor, a model's rewrite of the
//! question is searched too, and all four rankings are fused. The passages
//! kept are then split into sentences, each scored by its similarity to
//! the question: that is what the verifiers and the extractive answerer
//! judge evidence by. Without an embedding model (or before a collection's
//! embeddings exist) retrieval is full-text only, as it was.

use super::dense::{DenseIndex, DenseIndexes};
use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::store::Conn;
use crate::store::{Hit, collection_version, defining, naming, passages_by_id, search_in};
use std::collections::HashMap;
use std::sync::Arc;
use upshift_shared::config::{Config, RagConfig};
use upshift_shared::verify::rag::extractive::lookup::{MAX_DEFINITIONS, definition_block, undefined_candidates};
use upshift_shared::verify::rag::text::{keywords, sentences};
use upshift_shared::verify::rag::{Passage, Retrieval, Sentence};

/// Most keywords of a model's rewrite a full-text search runs with:
/// Postgres divides an OR query's rank by its number of terms.
pub const MAX_TERMS: usize = 8;
/// Most scored sentences a retrieval keeps of its passages (a definition
/// looked up adds its own).
const MAX_SENTENCES: usize = 48;
/// Most passages read for the definition of one name.
const FETCHED_DEFINITIONS: i64 = 16;

/// Searches collections; cheap to clone (one embedding model per process).
#[derive(Clone)]
pub struct Retriever {
    inner: Arc<Inner>,
}

struct Inner {
    embedder: Option<Embedder>,
    cfg: RagConfig,
    dense: DenseIndexes,
}

/// The fused ranking of one search.
struct Ranked {
    hits: Vec<Hit>,
    /// The question's embedding, when dense search ran.
    question: Option<Vec<f32>>,
    /// The collection's vectors, when it has any.
    index: Option<Arc<DenseIndex>>,
    hybrid: bool,
}

impl Retriever {
    /// A retriever with the configured embedding model, loaded from the
    /// model directory (blocking: call it before serving). A model that
    /// cannot be loaded leaves retrieval full-text only, with a warning.
    pub fn load(cfg: &Config) -> Retriever {
        let name = cfg.rag.embedding_model.trim();
        let embedder = if name.is_empty() {
            None
        } else {
            match Embedder::load(&cfg.worker.model_dir(), name, cfg.rag.embed_max_tokens as usize) {
                Ok(e) => Some(e),
                Err(e) => {
                    tracing::warn!(error = %e, "no embedding model: retrieval is full-text only");
                    None
                }
            }
        };
        Retriever::with(embedder, cfg.rag.clone())
    }

    /// A retriever around `embedder` (none: full-text only).
    pub fn with(embedder: Option<Embedder>, cfg: RagConfig) -> Retriever {
        Retriever {
            inner: Arc::new(Inner {
                embedder,
                cfg,
                dense: DenseIndexes::default(),
            }),
        }
    }

    /// The embedding model's name, when dense retrieval is on.
    pub fn model(&self) -> Option<&str> {
        self.inner.embedder.as_ref().map(Embedder::name)
    }

    /// Embeds `texts` on a blocking thread (empty without a model).
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
        if self.inner.embedder.is_none() || texts.is_empty() {
            return Ok(Vec::new());
        }
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            inner.embedder.as_ref().map_or(Ok(Vec::new()), |e| e.embed(&refs))
        })
        .await
        .map_err(|e| Error::Embedding(format!("the embedding thread failed: {e}")))?
    }

    /// The best `limit` passages for `query` (the search API).
    pub async fn search(
        &self,
        conn: &mut Conn,
        tenant: &str,
        collection: &str,
        query: &str,
        limit: usize,
    ) -> Result<Vec<Hit>> {
        let depth = (self.inner.cfg.fusion_depth as usize).max(limit);
        let mut ranked = self.rank(conn, tenant, collection, &[query.to_string()], depth).await?;
        ranked.hits.truncate(limit);
        Ok(ranked.hits)
    }

    /// What a rag job retrieves for `question` (and a model's `rewrite` of
    /// it, after an escalation): the best `rag.passages` passages and their
    /// sentences scored against the question. A collection that has gone
    /// missing retrieves nothing, which the retrieval floor then reports.
    pub async fn retrieve(
        &self,
        conn: &mut Conn,
        tenant: &str,
        collection: &str,
        question: &str,
        rewrite: Option<&str>,
    ) -> Result<Retrieval> {
        let mut queries = vec![question.to_string()];
        if let Some(r) = rewrite.map(|r| keywords(r, MAX_TERMS)).filter(|r| !r.is_empty()) {
            queries.push(r);
        }
        let terms = queries.join(" | ");
        let depth = self.inner.cfg.fusion_depth as usize;
        let ranked = match self.rank(conn, tenant, collection, &queries, depth).await {
            Ok(r) => r,
            Err(Error::NotFound(_)) => Ranked {
                hits: Vec::new(),
                question: None,
                index: None,
                hybrid: false,
            },
            Err(e) => return Err(e),
        };
        let passages: Vec<Passage> = ranked
            .hits
            .into_iter()
            .take(self.inner.cfg.passages as usize)
            .map(|h| passage(h, None))
            .collect();
        let sentences = match &ranked.question {
            Some(q) => self.score_sentences(&passages, q).await?,
            None => Vec::new(),
        };
        let mut retrieval = Retrieval {
            terms,
            mode: if ranked.hybrid { "hybrid" } else { "lexical" }.into(),
            passages,
            sentences,
        };
        if let Some(q) = &ranked.question {
            self.add_definitions(
                conn,
                tenant,
                collection,
                question,
                q,
                ranked.index.as_deref(),
                &mut retrieval,
            )
            .await?;
        }
        Ok(retrieval)
    }

    /// Adds to `r` the passages defining the candidates it only mentions
    /// (`extractive::lookup`), at most [`MAX_DEFINITIONS`]: for each name,
    /// of the passages defining it the one most similar to the question,
    /// with its definition's sentences scored like the rest.
    #[allow(clippy::too_many_arguments)]
    async fn add_definitions(
        &self,
        conn: &mut Conn,
        tenant: &str,
        collection: &str,
        question: &str,
        vector: &[f32],
        index: Option<&DenseIndex>,
        r: &mut Retrieval,
    ) -> Result<()> {
        let names = undefined_candidates(question, r);
        if names.is_empty() {
            return Ok(());
        }
        let found = defining(conn, tenant, collection, &names, FETCHED_DEFINITIONS).await?;
        let similarity = |id: &str| index.and_then(|d| d.similarity(id, vector));
        let mut blocks: Vec<Sentence> = Vec::new();
        for name in &names {
            if r.definitions().count() == MAX_DEFINITIONS {
                break;
            }
            // The most similar to the question; of equals, the first found.
            let best = found
                .iter()
                .filter(|h| r.get(&h.passage_id).is_none())
                .filter_map(|h| {
                    let opens = h.passage_id.ends_with("#0");
                    definition_block(&h.title, &h.text, opens, name).map(|b| (h, b))
                })
                .rev()
                .max_by(|a, b| {
                    let sim = |h: &Hit| similarity(&h.passage_id).unwrap_or(f32::NEG_INFINITY);
                    sim(a.0).total_cmp(&sim(b.0))
                });
            let Some((h, block)) = best else { continue };
            blocks.extend(block.into_iter().map(|text| Sentence {
                passage_id: h.passage_id.clone(),
                text,
                similarity: 0.0,
            }));
            let mut h = h.clone();
            h.similarity = similarity(&h.passage_id);
            r.passages.push(passage(h, Some(name.clone())));
        }
        let vectors = self.embed(blocks.iter().map(|s| s.text.clone()).collect()).await?;
        for (s, v) in blocks.iter_mut().zip(&vectors) {
            s.similarity = crate::embed::cosine(vector, v);
        }
        r.sentences.extend(blocks);
        r.sentences.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
        Ok(())
    }

    /// Every sentence of `passages` with its similarity to `question`, most
    /// similar first.
    async fn score_sentences(&self, passages: &[Passage], question: &[f32]) -> Result<Vec<Sentence>> {
        let mut out: Vec<Sentence> = passages
            .iter()
            .flat_map(|p| {
                sentences(&p.text).into_iter().map(|s| Sentence {
                    passage_id: p.passage_id.clone(),
                    text: s,
                    similarity: 0.0,
                })
            })
            .collect();
        let vectors = self.embed(out.iter().map(|s| s.text.clone()).collect()).await?;
        for (s, v) in out.iter_mut().zip(&vectors) {
            s.similarity = crate::embed::cosine(question, v);
        }
        out.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
        out.truncate(MAX_SENTENCES);
        Ok(out)
    }

    /// Full-text and dense rankings of every query, fused; 404 without the
    /// collection.
    async fn rank(
        &self,
        conn: &mut Conn,
        tenant: &str,
        collection: &str,
        queries: &[String],
        depth: usize,
    ) -> Result<Ranked> {
        let version = collection_version(conn, tenant, collection).await?;
        let Some(version) = version else {
            return Err(Error::NotFound(format!("collection `{collection}`")));
        };
        let mut rankings: Vec<Vec<String>> = Vec::new();
        let mut found: HashMap<String, Hit> = HashMap::new();
        for q in queries {
            let hits = search_in(conn, tenant, collection, q, depth as i64).await?;
            rankings.push(hits.iter().map(|h| h.passage_id.clone()).collect());
            for h in hits {
                found.entry(h.passage_id.clone()).or_insert(h);
            }
        }
        for name in identifiers(&queries[0]) {
            rankings.push(naming(conn, tenant, collection, &name, depth as i64).await?);
        }
        let (mut question, mut index, mut hybrid) = (None, None, false);
        if let Some(model) = self.model() {
            let dense = self.inner.dense.get(conn, tenant, collection, model, version).await?;
            if !dense.is_empty() {
                let vectors = self.embed(queries.to_vec()).await?;
                // Only a complete index ranks the collection; a partial one
                // still gives the embedded passages their similarity, and
                // the question's vector scores every retrieved sentence.
                if dense.is_complete() {
                    for v in &vectors {
                        rankings.push(dense.top(v, depth).into_iter().map(|(id, _)| id.to_string()).collect());
                    }
                    hybrid = true;
                }
                question = vectors.into_iter().next();
                index = Some(dense);
            }
        }
        let k = self.inner.cfg.rrf_k as f32;
        let mut fused: HashMap<&str, f32> = HashMap::new();
        for ranking in &rankings {
            for (rank, id) in ranking.iter().enumerate() {
                *fused.entry(id.as_str()).or_default() += 1.0 / (k + rank as f32 + 1.0);
            }
        }
        let mut order: Vec<(&str, f32)> = fused.into_iter().collect();
        order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        order.truncate(depth);
        let missing: Vec<String> = order
            .iter()
            .filter(|(id, _)| !found.contains_key(*id))
            .map(|(id, _)| id.to_string())
            .collect();
        for h in passages_by_id(conn, tenant, collection, &missing).await? {
            found.insert(h.passage_id.clone(), h);
        }
        let hits = order
            .iter()
            .filter_map(|(id, score)| {
                let mut h = found.get(*id)?.clone();
                h.score = *score;
                h.similarity = index
                    .as_ref()
                    .zip(question.as_ref())
                    .and_then(|(d, q)| d.similarity(id, q));
                Some(h)
            })
            .collect();
        Ok(Ranked {
            hits,
            hybrid,
            question,
            index,
        })
    }
}

/// A search hit as the retrieval carries it; `defines`: the name it was
/// looked up for, when it is no search result.
fn passage(h: Hit, defines: Option<String>) -> Passage {
    Passage {
        passage_id: h.passage_id,
        document_id: h.document_id,
        title: h.title,
        score: h.score,
        text: h.text,
        lexical: h.lexical,
        similarity: h.similarity,
        defines,
    }
}

/// The identifiers a question names (`work_mem`, `pg_hba.conf`): words with
/// an underscore or a dot inside, which prose does not use.
fn identifiers(question: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in question.split(|c: char| c.is_whitespace() || matches!(c, '`' | '"' | '\'' | ',' | '?' | '(' | ')')) {
        let w = w.trim_end_matches(['.', ':', ';']);
        // Between the first and the last character (never a byte index:
        // a question may hold any character).
        let mut middle = w.chars();
        let inner = middle.next().is_some() && middle.next_back().is_some() && middle.as_str().contains(['_', '.']);
        let number = w.chars().all(|c| c.is_ascii_digit() || c == '.');
        if inner
            && !number
            && w.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-'))
            && !out.iter().any(|o| o == w)
        {
            out.push(w.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_the_names_prose_does_not_use() {
        assert_eq!(identifiers("What is the default value of work_mem?"), ["work_mem"]);
        assert_eq!(
            identifiers("Which file, pg_hba.conf or `postgresql.conf`, is read first?"),
            ["pg_hba.conf", "postgresql.conf"]
        );
        assert!(identifiers("Which setting controls the write-ahead log? Is it 4.0?").is_empty());
        // Multi-byte characters at either end (the API fuzzer found this).
        assert!(identifiers("GÇ¶w\u{BBD6C}ypù").is_empty());
        assert_eq!(identifiers("ù_ù é.é"), ["ù_ù", "é.é"]);
    }
}
