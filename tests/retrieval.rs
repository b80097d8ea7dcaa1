//! Hybrid retrieval over HTTP: the dense ranking finds a paraphrase that
//! full-text search cannot, fusing the two keeps an exact name first, and
//! a name the results only mention is looked up where it is defined.

use crate::collections::urlencode;
use crate::rag::{ZERO_TRUSTED, check_shape, ingest, submit, widgets, widgets_stack};
use crate::util::{Harness, Opts};
use serde_json::json;
use std::time::Duration;

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

/// A setting the guide only mentions; the settings page defines it.
const RETRY_Q: &str = "My gadget gives up too early when nobody answers. Which setting decides how many times a gadget resends a request that got no reply?";

#[tokio::test]
async fn a_name_the_results_only_mention_is_looked_up_where_it_is_defined() {
    // One passage retrieved: the guide, which names `gadget_retries` in passing.
    let extra =
        format!("[rag]\npassages = 1\nmin_passages = 1\nmin_similarity = 0.0\nmin_relevance = 0.0\n{ZERO_TRUSTED}");
    let (h, _orch) = widgets_stack(&extra).await;
    let docs = json!([
        {"id": "gadget-guide.html", "title": "Troubleshooting gadgets", "text": "My gadget gives up too early when nobody answers: a gadget that got no reply resends its request, up to gadget_retries times, then gives up. Raise gadget_timeout first if replies are merely slow."},
        {"id": "gadget-settings.html", "title": "Gadget settings", "text": "`gadget_colour` (`string`)\n\nThe colour of the casing.\n\n`gadget_retries` (`integer`)\n\nSets how many times a gadget resends a request that got no reply. The default is 3."}
    ]);
    ingest(&h, "gadgets", docs).await;
    let job = submit(&h, "gadgets", RETRY_Q).await;
    h.wait_all(&[job], Duration::from_secs(60)).await;
    let v = check_shape(&h, job, "gadgets").await;
    let r = &v["result"];
    assert_eq!(r["retrieved"], json!(["gadget-guide.html#0"]), "{r:#}");
    // Fetched as the definition of the candidate the guide only mentions;
    // a definition is no search result, so the retrieval's hit figures stay the search's.
    assert_eq!(r["definitions"], json!(["gadget-settings.html#0"]), "{r:#}");
    assert_eq!(r["short_answer"], "gadget_retries", "{r:#}");
    let retrieve = v["steps"][0]["output"].as_str().unwrap_or_default();
    let retrieval: serde_json::Value = serde_json::from_str(retrieve).unwrap_or_default();
    assert_eq!(retrieval["passages"][1]["defines"], "gadget_retries", "{retrieve}");
    // Its definition is scored like the rest: the sentence that says what it is.
    assert!(
        retrieval["sentences"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["passage_id"] == "gadget-settings.html#0"
                && s["text"].as_str().unwrap().starts_with("Sets how many")),
        "{retrieve}"
    );
    h.finish().await;
}
