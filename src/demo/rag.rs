//! The demo's RAG part: the PostgreSQL 15 documentation (Debian's
//! `postgresql-doc-15`, installed when missing) is ingested into a
//! collection with progress, a question is asked as a `rag` job whose
//! progress streams live, and the cited answer is printed with its route.

use crate::client::Client;
use crate::ingest::{IngestArgs, run as ingest};
use crate::rag::{AskArgs, ask, print_answer};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

/// Where Debian's postgresql-doc-15 puts the HTML manual.
pub const PG_DOCS: &str = "/usr/share/doc/postgresql-doc-15/html";
/// The demo's collection.
pub const COLLECTION: &str = "pg-docs";
/// The demo's question.
pub const QUESTION: &str = "Which setting controls how much information is written to the write-ahead log?";

/// Installs the docs when missing (needs root and apt-get).
pub fn ensure_docs() -> anyhow::Result<PathBuf> {
    let dir = PathBuf::from(PG_DOCS);
    if dir.is_dir() {
        return Ok(dir);
    }
    println!("{PG_DOCS} is missing: installing Debian's postgresql-doc-15");
    let apt = |args: &[&str]| {
        std::process::Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get (install postgresql-doc-15 yourself, as root)")
    };
    // A fresh machine may have no package lists yet.
    let status = match apt(&["install", "-y", "-qq", "postgresql-doc-15"])? {
        s if s.success() => s,
        _ => {
            apt(&["update", "-qq"])?;
            apt(&["install", "-y", "-qq", "postgresql-doc-15"])?
        }
    };
    if !status.success() || !Path::new(PG_DOCS).is_dir() {
        bail!("could not install postgresql-doc-15: run `apt-get install postgresql-doc-15` as root");
    }
    Ok(dir)
}

/// Runs the RAG part against the API at `api`.
pub async fn run(api: &str, question: &str) -> anyhow::Result<()> {
    let docs = ensure_docs()?;
    let client = Client::new(api, None)?;
    println!("\n== RAG: ingesting the PostgreSQL 15 documentation into `{COLLECTION}` ==");
    ingest(&client, IngestArgs::new(COLLECTION, vec![docs]).without_waiting()).await?;
    // The question does not wait for every passage's embedding (about 15
    // minutes the first time on this machine kind): full-text and identifier
    // search cover every passage at once and rank them, and the sentences
    // of the passages found are embedded with the question; the dense
    // ranking joins once every passage is embedded (a ranking of the part
    // embedded so far would favour whatever was embedded first). The rest
    // embeds while the stack runs and is kept for the next run.
    let status = client.get(&format!("/v1/collections/{COLLECTION}"), &[]).await?;
    let (embedded, passages) = (
        status["embedded"].as_i64().unwrap_or(0),
        status["passages"].as_i64().unwrap_or(0),
    );
    if embedded < passages {
        println!(
            "{embedded} of {passages} passages embedded so far: full-text search ranks, embeddings score the sentences found, and dense ranking joins once all are embedded (the rest embeds in the background and is kept for the next run)"
        );
    }
    println!("\n== RAG: {question} ==");
    let args = AskArgs {
        collection: COLLECTION.into(),
        blast_radius: "low".into(),
        budget_usd: None,
        query: question.into(),
    };
    let (id, job) = ask(&client, &args, true).await?;
    print_answer(&job, &client.route(id).await?);
    // An undefended answer said plainly is the demo working; a failed job is not.
    if job["status"] == "failed" {
        bail!("the RAG job {id} failed: {}", job["result"]);
    }
    Ok(())
}
