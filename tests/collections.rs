//! Collections: the PostgreSQL 15 documentation (Debian's postgresql-doc-15)
//! ingested through the CLI, searched with questions written from the docs,
//! and bad input refused without writing anything.

use crate::util::{Harness, Opts};
use serde_json::json;

const PG_DOCS: &str = "/usr/share/doc/postgresql-doc-15/html";

/// (question, the page that answers it).
const LABELLED: &[(&str, &str)] = &[
    (
        "which setting controls how much information is written to the write-ahead log",
        "runtime-config-wal.html",
    ),
    (
        "how do I build an index without locking out writes",
        "sql-createindex.html",
    ),
    ("reclaim storage occupied by dead tuples", "sql-vacuum.html"),
    (
        "how much memory the server uses for shared memory buffers",
        "runtime-config-resource.html",
    ),
    (
        "which TCP/IP addresses does the server listen on",
        "runtime-config-connection.html",
    ),
];

async fn count(h: &Harness, table: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM {table}");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(&h.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn postgres_docs_are_ingested_and_questions_find_their_page() {
    assert!(
        std::path::Path::new(PG_DOCS).is_dir(),
        "{PG_DOCS} is missing: apt-get install postgresql-doc-15 (scripts/deps.sh --test does)"
    );
    let mut h = Harness::new(Opts::default()).await;
    let _orch = h.orchestrator().await;
    let (ok, out, err) = h
        .cli(&["ingest", "--batch-kib", "48", "--collection", "pg", PG_DOCS])
        .await;
    assert!(ok, "{out}\n{err}");
    let docs = count(&h, "documents").await;
    assert!(docs > 1000, "{docs} documents: {out}");
    assert!(count(&h, "passages").await > 5 * docs);
    for (q, page) in LABELLED {
        let (code, hits) = h
            .get(&format!("/v1/collections/pg/search?limit=5&q={}", urlencode(q)), None)
            .await;
        assert_eq!(code, 200, "{hits}");
        let docs: Vec<&str> = hits
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["document_id"].as_str().unwrap())
            .collect();
        assert!(
            docs.contains(page),
            "`{q}` should find {page} in the top 5, got {docs:?}"
        );
    }
    // Re-ingesting a document replaces it (and its passages) instead of adding to it.
    let before = count(&h, "passages").await;
    let (ok, out, err) = h
        .cli(&["ingest", "--collection", "pg", &format!("{PG_DOCS}/sql-vacuum.html")])
        .await;
    assert!(ok, "{out}\n{err}");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM documents WHERE id = 'sql-vacuum.html'")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!((n, count(&h, "passages").await), (1, before));
}

/// `s` percent-encoded for a query string.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn bad_ingest_and_search_input_is_refused_and_writes_nothing() {
    let mut h = Harness::new(Opts::default()).await;
    let _orch = h.orchestrator().await;
    let jsonl = [("content-type", "application/x-ndjson")];
    let good = json!({"id": "a", "title": "A", "text": "Vacuum reclaims storage."}).to_string();
    // An invalid third line: 422 naming the line, and the first two lines are not written.
    let body = format!(
        "{good}\n{}\n{{\"id\": \"c\"}}\n",
        json!({"id": "b", "text": "More text."})
    );
    let (code, v) = h
        .post_raw("/v1/collections/docs/documents", body.as_bytes(), &jsonl)
        .await;
    assert_eq!(code, 422, "{v}");
    assert_eq!(v["error"]["field"], "line 3", "{v}");
    assert_eq!(count(&h, "documents").await, 0);
    assert_eq!(count(&h, "collections").await, 0);
    // Empty text, duplicate ids and bad names name their field.
    let (code, v) = h
        .post_raw(
            "/v1/collections/docs/documents",
            json!([{"id": "a", "text": " "}]).to_string().as_bytes(),
            &[],
        )
        .await;
    assert_eq!(
        (code, v["error"]["field"].as_str()),
        (422, Some("documents[0].text")),
        "{v}"
    );
    let dup = json!({"documents": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]});
    let (code, v) = h
        .post_raw("/v1/collections/docs/documents", dup.to_string().as_bytes(), &[])
        .await;
    assert_eq!(
        (code, v["error"]["field"].as_str()),
        (422, Some("documents[1].id")),
        "{v}"
    );
    let (code, v) = h
        .post_raw("/v1/collections/Bad%20Name/documents", good.as_bytes(), &jsonl)
        .await;
    assert_eq!((code, v["error"]["field"].as_str()), (422, Some("collection")), "{v}");
    // A body over api.max_body_bytes (64 KiB in tests): 413 as JSON.
    let big = json!([{"id": "big", "text": "x".repeat(100_000)}]).to_string();
    let (code, v) = h.post_raw("/v1/collections/docs/documents", big.as_bytes(), &[]).await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (413, Some("payload_too_large")),
        "{v}"
    );
    assert_eq!(count(&h, "documents").await, 0);
    // Searching: unknown collection 404, empty query 422.
    let (code, v) = h.get("/v1/collections/nope/search?q=vacuum", None).await;
    assert_eq!((code, v["error"]["code"].as_str()), (404, Some("not_found")), "{v}");
    let (code, _) = h
        .post_raw("/v1/collections/docs/documents", good.as_bytes(), &jsonl)
        .await;
    assert_eq!(code, 200);
    let (code, v) = h.get("/v1/collections/docs/search?q=%20", None).await;
    assert_eq!((code, v["error"]["field"].as_str()), (422, Some("q")), "{v}");
    let (code, v) = h.get("/v1/collections/docs/search?q=vacuum", None).await;
    assert_eq!(code, 200);
    assert_eq!(v[0]["passage_id"], "a#0", "{v}");
}
