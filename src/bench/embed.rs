//! `upshift bench embed`: what dense retrieval costs on this machine —
//! passages embedded per second (as the ingest's worker embeds them), a
//! question's embedding, and a brute-force scan of 10 thousand to 1 million
//! vectors (time and memory), the figures behind docs/rag.md's note on
//! scaling past one machine.

use anyhow::Context;
use std::time::Instant;
use upshift_orchestrator::collections::dense::DenseIndex;
use upshift_orchestrator::embed::{DIMS, Embedder};
use upshift_shared::config::Config;

/// Options of `upshift bench embed`.
#[derive(clap::Args)]
pub struct EmbedArgs {
    /// Passages of the PostgreSQL docs to embed.
    #[arg(long, default_value_t = 256)]
    passages: usize,
    /// Largest synthetic index scanned (10×, 100× … up to this).
    #[arg(long, default_value_t = 1_000_000)]
    max_vectors: usize,
}

/// Runs the benchmark.
pub fn run(cfg: &Config, args: EmbedArgs) -> anyhow::Result<()> {
    let name = cfg.rag.embedding_model.trim();
    anyhow::ensure!(!name.is_empty(), "rag.embedding_model is empty: nothing to measure");
    let t = Instant::now();
    let e = Embedder::load(&cfg.worker.model_dir(), name, cfg.rag.embed_max_tokens as usize)
        .context("loading the embedding model (run `upshift models fetch`)")?;
    println!("model {name}: loaded in {:.2}s", t.elapsed().as_secs_f64());
    let docs = crate::demo::rag::ensure_docs()?;
    let mut texts: Vec<String> = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&docs)?
        .filter_map(|f| f.ok().map(|f| f.path()))
        .collect();
    files.sort();
    for f in files {
        let raw = std::fs::read_to_string(&f).unwrap_or_default();
        let (title, text) = crate::ingest::html_to_text(&raw);
        for p in upshift_orchestrator::collections::chunk(&text) {
            texts.push(upshift_orchestrator::collections::embed_input(
                title.as_deref().unwrap_or(""),
                &p,
            ));
        }
        if texts.len() >= args.passages {
            break;
        }
    }
    texts.truncate(args.passages);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let t = Instant::now();
    for batch in refs.chunks(16) {
        e.embed(batch)?;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "passages: {} embedded in {secs:.1}s = {:.1}/s (batches of 16, cut at {} tokens)",
        refs.len(),
        refs.len() as f64 / secs,
        cfg.rag.embed_max_tokens
    );
    let q = "Which setting controls how much information is written to the write-ahead log?";
    e.embed(&[q])?;
    let t = Instant::now();
    for _ in 0..20 {
        e.embed(&[q])?;
    }
    println!("question: {:.1} ms", t.elapsed().as_secs_f64() * 1000.0 / 20.0);
    let query = e.embed(&[q])?.remove(0);
    let mut n = 10_000;
    let mut rng = fastrand::Rng::with_seed(7);
    while n <= args.max_vectors {
        let vectors: Vec<Vec<f32>> = (0..n)
            .map(|_| {
                let v: Vec<f32> = (0..DIMS).map(|_| rng.f32() - 0.5).collect();
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.into_iter().map(|x| x / norm).collect()
            })
            .collect();
        let index = DenseIndex::new(0, 0, (0..n).map(|i| format!("p#{i}")).collect(), vectors);
        let t = Instant::now();
        let rounds = 5;
        for _ in 0..rounds {
            std::hint::black_box(index.top(&query, 40));
        }
        println!(
            "scan of {n:>9} vectors: {:>8.1} ms, {:>6} MiB of vectors",
            t.elapsed().as_secs_f64() * 1000.0 / rounds as f64,
            n * DIMS * 4 / (1 << 20)
        );
        n *= 10;
    }
    Ok(())
}
