//! Dense search: a collection's passage vectors held in memory and scanned
//! by brute force.
//!
//! A scan is one dot product per passage: 9,631 passages of the PostgreSQL
//! docs × 384 dimensions take about 2 ms here, and hold 15 MB. Indexes are
//! loaded from Postgres on first use and reloaded when the collection's
//! `version` moves (an ingest, or a batch of new embeddings), so every
//! replica serves the same data without talking to the others. Past a few
//! hundred thousand passages per collection a brute-force scan and its
//! memory stop being cheap: that is where pgvector's HNSW index takes over
//! (docs/rag.md has the figures and the migration).

use crate::embed::{cosine, from_bytes};
use crate::error::Result;
use crate::store::Conn;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Most collections kept in memory; the least recently used goes first.
const MAX_LOADED: usize = 16;

/// One collection's vectors.
pub struct DenseIndex {
    version: i64,
    /// Passages still waiting for their vector.
    pending: usize,
    ids: Vec<String>,
    at: HashMap<String, usize>,
    vectors: Vec<Vec<f32>>,
}

impl DenseIndex {
    /// An index of `vectors` (unit length, [`crate::embed::DIMS`] each)
    /// named by `ids`, with `pending` passages of the collection still
    /// waiting for theirs.
    pub fn new(version: i64, pending: usize, ids: Vec<String>, vectors: Vec<Vec<f32>>) -> DenseIndex {
        let at = ids.iter().enumerate().map(|(i, id)| (id.clone(), i)).collect();
        DenseIndex {
            version,
            pending,
            ids,
            at,
            vectors,
        }
    }

    /// Whether no passage has a vector yet.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether no passage is still waiting for its vector, so a scan ranks
    /// the whole collection. While embeddings are still being made a scan
    /// ranks only the passages embedded so far — a subset chosen by queue
    /// order, not by relevance — and fusing that ranking would favour
    /// whatever happened to be embedded first. (A stored vector that does
    /// not decode is not waiting: it is left out, and the rest still rank.)
    pub fn is_complete(&self) -> bool {
        self.pending == 0
    }

    /// The `k` passages most similar to `query`, best first: (id, similarity).
    pub fn top(&self, query: &[f32], k: usize) -> Vec<(&str, f32)> {
        let mut scored: Vec<(usize, f32)> = self
            .vectors
            .iter()
            .enumerate()
            .map(|(i, v)| (i, cosine(query, v)))
            .collect();
        let k = k.min(scored.len());
        if k < scored.len() {
            scored.select_nth_unstable_by(k, |a, b| b.1.total_cmp(&a.1));
            scored.truncate(k);
        }
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(self.ids[a.0].cmp(&self.ids[b.0])));
        scored.into_iter().map(|(i, s)| (self.ids[i].as_str(), s)).collect()
    }

    /// Similarity of passage `id` to `query`, when it has a vector.
    pub fn similarity(&self, id: &str, query: &[f32]) -> Option<f32> {
        self.at.get(id).map(|&i| cosine(query, &self.vectors[i]))
    }
}

/// Loaded indexes by (tenant, collection), with when each was last used.
type Loaded = HashMap<(String, String), (Arc<DenseIndex>, Instant)>;

/// The loaded indexes of this process.
#[derive(Default)]
pub struct DenseIndexes {
    loaded: Mutex<Loaded>,
}

impl DenseIndexes {
    /// The index of `tenant`'s `collection` for `model` at `version`,
    /// loaded on `conn` when the one in memory is missing or older.
    pub async fn get(
        &self,
        conn: &mut Conn,
        tenant: &str,
        collection: &str,
        model: &str,
        version: i64,
    ) -> Result<Arc<DenseIndex>> {
        let key = (tenant.to_string(), collection.to_string());
        if let Some((index, used)) = self.lock().get_mut(&key)
            && index.version == version
        {
            *used = Instant::now();
            return Ok(index.clone());
        }
        let rows = crate::store::dense_vectors(conn, tenant, collection, model).await?;
        let pending = rows.iter().filter(|(_, bytes)| bytes.is_none()).count();
        let (mut ids, mut vectors) = (Vec::with_capacity(rows.len()), Vec::with_capacity(rows.len()));
        for (id, bytes) in rows {
            if let Some(v) = bytes.as_deref().and_then(from_bytes) {
                ids.push(id);
                vectors.push(v);
            }
        }
        let index = Arc::new(DenseIndex::new(version, pending, ids, vectors));
        let mut loaded = self.lock();
        if loaded.len() >= MAX_LOADED
            && !loaded.contains_key(&key)
            && let Some(oldest) = loaded.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| k.clone())
        {
            loaded.remove(&oldest);
        }
        loaded.insert(key, (index.clone(), Instant::now()));
        Ok(index)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Loaded> {
        // A panic while holding the lock cannot leave the map inconsistent.
        self.loaded.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_ranks_by_similarity() {
        let unit = |a: f32| vec![a.cos(), a.sin()];
        let ids: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let index = DenseIndex::new(1, 0, ids.clone(), vec![unit(0.0), unit(1.0), unit(0.2)]);
        assert!(index.is_complete());
        assert!(!DenseIndex::new(1, 1, ids, vec![unit(0.0), unit(1.0), unit(0.2)]).is_complete());
        // Closer to `a` (0.05 away) than to `c` (0.15 away): no tie to round.
        let top = index.top(&unit(0.05), 2);
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), ["a", "c"]);
        assert!((index.similarity("b", &unit(1.0)).unwrap() - 1.0).abs() < 1e-6);
        assert!(index.similarity("zz", &unit(1.0)).is_none());
    }
}
