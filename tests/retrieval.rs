//! Hybrid retrieval over HTTP: the dense ranking finds a paraphrase that
//! full-text search cannot, and fusing the two keeps an exact name first.

use crate::collections::urlencode;
use crate::rag::{ingest, widgets};
use crate::util::{Harness, Opts};
use serde_json::json;

/// A paraphrase of the gardening document sharing none of its words.
const PARAPHRASE: &str = "How should I look after vegetable plants?";

/// The document ids `/search` ranks for `q`, best first.
async fn ranked(h: &Harness, collection: &str, q: &str) -> Vec<String> {
    let (code, hits) = h
        .get(
            &format!("/v1/collections/{collection}/search?limit=4&q={}", urlencode(q)),
            None,
        )
        .await;
    assert_eq!(code, 200, "{hits}");
    hits.as_array()
        .unwrap()
        .iter()
        .map(|h| h["document_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn dense_ranking_finds_what_full_text_search_cannot() {
    // Full-text search alone (no embedding model): the paraphrase matches nothing.
    let mut lexical = Harness::new(Opts {
        extra: "[rag]\nembedding_model = \"\"\n".into(),
        ..Opts::default()
    })
    .await;
    let _orch = lexical.orchestrator().await;
    let (code, body) = lexical
        .post_raw(
            "/v1/collections/widgets/documents",
            json!({ "documents": widgets() }).to_string().as_bytes(),
            &[],
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let (_, st) = lexical.get("/v1/collections/widgets", None).await;
    assert!(st["embedding_model"].is_null(), "{st}");
    assert!(
        !ranked(&lexical, "widgets", PARAPHRASE)
            .await
            .contains(&"garden.html".to_string())
    );
    lexical.finish().await;

    // Hybrid: the same documents, embedded; the paraphrase finds its page first.
    let mut h = Harness::new(Opts::default()).await;
    let _orch = h.orchestrator().await;
    ingest(&h, "widgets", widgets()).await;
    assert_eq!(
        ranked(&h, "widgets", PARAPHRASE).await.first().map(String::as_str),
        Some("garden.html")
    );
    // An exact setting name still ranks its defining page first.
    assert_eq!(
        ranked(&h, "widgets", "gadget_timeout")
            .await
            .first()
            .map(String::as_str),
        Some("gadgets.html")
    );
    h.finish().await;
}
