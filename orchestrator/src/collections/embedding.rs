//! The embedding worker: takes queued texts in batches, embeds them, stores
//! the vectors and bumps the versions of the collections they belong to.
//!
//! - Batches are claimed with `FOR UPDATE SKIP LOCKED` inside a transaction
//!   that also writes the vectors and deletes the queue rows, so replicas
//!   share the queue, and a crash gives the batch back untouched.
//! - Full-text search keeps serving while the queue drains; dense search
//!   covers each passage as soon as its vector is committed.
//! - Vectors are also kept in a file under the model directory, keyed by the
//!   text's SHA-256, so the same text is never embedded twice on one machine
//!   (a second database, a re-run of a benchmark). The file holds vectors,
//!   never text; `rag.embedding_cache = false` turns it off.

use super::retrieve::Retriever;
use crate::embed::{DIMS, from_bytes, to_bytes};
use crate::error::Result;
use crate::store::{PgStore, queued_texts, save_embeddings};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Texts embedded per transaction.
const BATCH: i64 = 16;
/// How long an idle worker waits before looking at the queue again.
const IDLE: Duration = Duration::from_millis(500);
/// One record of the cache file: the key, then the vector.
const RECORD: usize = 32 + DIMS * 4;

/// Vectors already computed on this machine, by text key.
pub struct DiskCache {
    path: PathBuf,
    known: Mutex<HashMap<Vec<u8>, Vec<f32>>>,
}

impl DiskCache {
    /// Opens (or starts) the cache file of `model` under `model_dir`. A torn
    /// last record (a crash mid-write) is ignored.
    pub fn open(model_dir: &Path, model: &str) -> DiskCache {
        let path = crate::embed::model_path(model_dir, model).join("vectors.cache");
        let mut known = HashMap::new();
        if let Ok(bytes) = std::fs::read(&path) {
            for rec in bytes.chunks_exact(RECORD) {
                if let Some(v) = from_bytes(&rec[32..]) {
                    known.insert(rec[..32].to_vec(), v);
                }
            }
        }
        DiskCache {
            path,
            known: Mutex::new(known),
        }
    }

    fn get(&self, key: &[u8]) -> Option<Vec<f32>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned()
    }

    /// Appends new vectors; each record is one `write` on an append-only
    /// file, so concurrent processes never interleave within a record.
    fn put(&self, entries: &[(Vec<u8>, Vec<f32>)]) {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path);
        let Ok(mut file) = file else {
            return; // a read-only model directory: the cache is an optimisation
        };
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        for (key, v) in entries {
            if key.len() != 32 || known.contains_key(key) {
                continue;
            }
            let mut rec = key.clone();
            rec.extend(to_bytes(v));
            if file.write_all(&rec).is_err() {
                return;
            }
            known.insert(key.clone(), v.clone());
        }
    }
}

/// Runs the embedding worker until `cancel`.
pub async fn run(store: PgStore, retriever: Retriever, cache: Option<DiskCache>, cancel: CancellationToken) {
    let Some(model) = retriever.model().map(str::to_string) else {
        return;
    };
    loop {
        let done = tokio::select! {
            _ = cancel.cancelled() => return,
            r = embed_batch(&store, &retriever, cache.as_ref(), &model) => r,
        };
        let wait = match done {
            Ok(0) => IDLE,
            Ok(_) => Duration::ZERO,
            Err(e) => {
                tracing::warn!(error = %e, "embedding a batch failed; retrying");
                Duration::from_secs(2)
            }
        };
        if !wait.is_zero() {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// Embeds one batch of the queue; returns how many texts it took.
async fn embed_batch(store: &PgStore, retriever: &Retriever, cache: Option<&DiskCache>, model: &str) -> Result<usize> {
    let mut tx = store.begin().await?;
    let rows = queued_texts(&mut tx, model, BATCH).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let cached: Vec<Option<Vec<f32>>> = rows.iter().map(|r| cache.and_then(|c| c.get(&r.1))).collect();
    let todo: Vec<String> = rows
        .iter()
        .zip(&cached)
        .filter(|(_, c)| c.is_none())
        .map(|(r, _)| r.2.clone())
        .collect();
    let mut fresh = retriever.embed(todo).await?.into_iter();
    let (mut tenants, mut keys, mut vectors) = (Vec::new(), Vec::new(), Vec::new());
    let mut new_entries = Vec::new();
    for (row, c) in rows.iter().zip(cached) {
        let v = match c {
            Some(v) => v,
            None => {
                let v = fresh.next().unwrap_or_default();
                new_entries.push((row.1.clone(), v.clone()));
                v
            }
        };
        tenants.push(row.0.clone());
        keys.push(row.1.clone());
        vectors.push(to_bytes(&v));
    }
    save_embeddings(&mut tx, model, &tenants, &keys, &vectors).await?;
    tx.commit().await?;
    if let Some(c) = cache {
        c.put(&new_entries);
    }
    metrics::counter!("upshift_embedded_texts_total").increment(rows.len() as u64);
    Ok(rows.len())
}
