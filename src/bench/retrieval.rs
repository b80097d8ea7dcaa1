//! `upshift bench retrieval`: search latency over a collection through the
//! API (p50/p90/p99 of end-to-end request time), with questions about the
//! PostgreSQL documentation by default or one query per line of a file;
//! with `--labelled FILE` (the question set of `upshift eval rag`) also how
//! often the page that holds each answer ranks first and within `--limit`.

use crate::client::Client;
use anyhow::Context;
use std::path::PathBuf;
use std::time::Instant;

/// Questions about the PostgreSQL 15 documentation.
const PG_QUESTIONS: &[&str] = &[
    "which setting controls how much information is written to the write-ahead log",
    "how do I build an index without locking out writes",
    "reclaim storage occupied by dead tuples",
    "how much memory the server uses for shared memory buffers",
    "which TCP/IP addresses does the server listen on",
    "how to grant select on all tables in a schema",
    "difference between varchar and text",
    "how does autovacuum decide when to run",
    "what isolation levels are supported",
    "create a materialized view and refresh it",
    "how to list the settings changed from their defaults",
    "json operators to extract a field",
    "partitioning a table by range",
    "logical replication publication and subscription",
    "explain analyze output buffers",
    "point in time recovery from a base backup",
    "row level security policies",
    "how to kill a running query",
    "generated columns stored",
    "full text search ranking functions",
];

/// Options of `upshift bench retrieval`.
#[derive(clap::Args)]
pub struct RetrievalArgs {
    /// The collection (e.g. the PostgreSQL docs ingested with `upshift ingest`).
    #[arg(long)]
    collection: String,
    /// Queries, one per line (default: 20 questions about the PostgreSQL docs).
    #[arg(long)]
    queries: Option<PathBuf>,
    /// Passes over the queries.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Passages per search.
    #[arg(long, default_value_t = 10)]
    limit: u32,
    /// A labelled question set (JSON Lines, see `upshift eval rag`): its
    /// answerable questions are the queries, and hit@1 / hit@limit of the
    /// pages holding their answers are reported per split.
    #[arg(long, conflicts_with = "queries")]
    labelled: Option<PathBuf>,
}

/// Runs the benchmark against the API at `client`.
pub async fn run(client: &Client, args: RetrievalArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.labelled {
        return hits(client, &args, path).await;
    }
    let queries: Vec<String> = match &args.queries {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("reading {}", p.display()))?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect(),
        None => PG_QUESTIONS.iter().map(|q| q.to_string()).collect(),
    };
    let path = format!("/v1/collections/{}/search", args.collection);
    let limit = args.limit.to_string();
    client
        .get(&path, &[("q", queries[0].as_str()), ("limit", &limit)])
        .await?; // warm-up
    let mut ms = Vec::new();
    let mut hits = 0usize;
    for _ in 0..args.rounds {
        for q in &queries {
            let t = Instant::now();
            let v = client.get(&path, &[("q", q.as_str()), ("limit", &limit)]).await?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            hits += v.as_array().map_or(0, Vec::len);
        }
    }
    let (p50, p90, p99) = (
        upshift_shared::stats::quantile(&mut ms, 0.5),
        upshift_shared::stats::quantile(&mut ms, 0.9),
        upshift_shared::stats::quantile(&mut ms, 0.99),
    );
    println!(
        "upshift bench retrieval: {} searches of `{}` (limit {}), {:.1} passages each",
        ms.len(),
        args.collection,
        args.limit,
        hits as f64 / ms.len() as f64
    );
    println!(
        "latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        p50,
        p90,
        p99,
        ms[ms.len() - 1]
    );
    Ok(())
}

/// hit@1 and hit@limit of the answer pages of a labelled question set.
async fn hits(client: &Client, args: &RetrievalArgs, path: &std::path::Path) -> anyhow::Result<()> {
    let questions = crate::eval::rag::load_questions(path)?;
    let search = format!("/v1/collections/{}/search", args.collection);
    let limit = args.limit.to_string();
    let mut by_split: std::collections::BTreeMap<String, (usize, usize, usize)> = Default::default();
    for q in questions.iter().filter(|q| q.answerable()) {
        let v = client
            .get(&search, &[("q", q.question.as_str()), ("limit", &limit)])
            .await?;
        let docs: Vec<&str> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| h["document_id"].as_str())
            .collect();
        let e = by_split.entry(q.split.clone()).or_default();
        e.0 += 1;
        e.1 += usize::from(docs.first().is_some_and(|d| q.pages.iter().any(|p| p == d)));
        e.2 += usize::from(docs.iter().any(|d| q.pages.iter().any(|p| p == d)));
    }
    let status = client.get(&format!("/v1/collections/{}", args.collection), &[]).await?;
    println!(
        "upshift bench retrieval: answer pages of {} (`{}`: {} passages, {} embedded)",
        path.display(),
        args.collection,
        status["passages"],
        status["embedded"]
    );
    for (split, (n, h1, hk)) in by_split {
        println!(
            "{split:<5} {n} questions  hit@1 {:.1}%  hit@{} {:.1}%",
            100.0 * h1 as f64 / n as f64,
            args.limit,
            100.0 * hk as f64 / n as f64
        );
    }
    Ok(())
}
