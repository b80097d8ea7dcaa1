//! The `rag` job end to end: the four routed steps on the local models over
//! the PostgreSQL docs, escalations with the right reason codes driven by
//! recorded (replayed) outputs over small collections, and bad input.

use crate::util::{Harness, Opts};
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

const PG_DOCS: &str = "/usr/share/doc/postgresql-doc-15/html";

/// Writes documents into `collection` over HTTP.
async fn ingest(h: &Harness, collection: &str, docs: serde_json::Value) {
    let (code, body) = h
        .post_raw(
            &format!("/v1/collections/{collection}/documents"),
            json!({ "documents": docs }).to_string().as_bytes(),
            &[],
        )
        .await;
    assert_eq!(code, 200, "{body}");
}

/// Submits a rag job; returns its id.
async fn submit(h: &Harness, collection: &str, query: &str) -> Uuid {
    let body = json!({"kind": "rag", "collection": collection, "query": query, "blast_radius": "low"});
    let (code, v) = h.post_raw("/v1/jobs", body.to_string().as_bytes(), &[]).await;
    assert_eq!(code, 202, "{v}");
    v["id"].as_str().unwrap().parse().unwrap()
}

/// (step, event, from, to, reasons).
type StepEvent = (String, String, Option<String>, Option<String>, Vec<String>);

/// The route of a job by step name, in order.
async fn step_route(h: &Harness, job: Uuid) -> Vec<StepEvent> {
    sqlx::query_as(
        "SELECT s.name, e.event, e.from_tier, e.to_tier, e.reasons FROM route_events e JOIN steps s ON s.id = e.step_id
         WHERE e.job_id = $1 ORDER BY e.id",
    )
    .bind(job)
    .fetch_all(&h.pool)
    .await
    .unwrap()
}

/// Checks what every finished rag job must hold: four steps started in
/// order, citations that resolve to retrieved passages of the collection,
/// and decisions with reasons.
async fn check_shape(h: &Harness, job: Uuid, collection: &str) -> serde_json::Value {
    let (code, v) = h.get(&format!("/v1/jobs/{job}"), None).await;
    assert_eq!(code, 200);
    assert_eq!(v["status"], "succeeded", "{v:#}");
    let r = step_route(h, job).await;
    let starts: Vec<&str> = r.iter().filter(|e| e.1 == "start").map(|e| e.0.as_str()).collect();
    assert_eq!(starts[..4], ["retrieve", "extract", "synthesise", "critique"], "{r:?}");
    for e in r.iter().filter(|e| ["start", "escalate"].contains(&e.1.as_str())) {
        assert!(!e.4.is_empty(), "every start and escalation has reasons: {e:?}");
    }
    let result = &v["result"];
    assert!(!result["answer"].as_str().unwrap().is_empty(), "{result:#}");
    let retrieved: Vec<&str> = result["retrieved"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    for c in result["citations"].as_array().unwrap() {
        let id = c["passage_id"].as_str().unwrap();
        assert!(retrieved.contains(&id), "{id} was retrieved: {result:#}");
        let doc: String = sqlx::query_scalar("SELECT doc_id FROM passages WHERE collection = $1 AND id = $2")
            .bind(collection)
            .bind(id)
            .fetch_one(&h.pool)
            .await
            .unwrap();
        assert_eq!(c["document_id"].as_str(), Some(doc.as_str()));
        assert!(!c["snippet"].as_str().unwrap().is_empty());
    }
    assert!(result["always_strong_cost_usd"].as_f64().unwrap() > 0.0, "{result:#}");
    result.clone()
}

fn widgets() -> serde_json::Value {
    json!([
        {"id": "widgets-a.html", "title": "Widget limits", "text": "The max_widgets setting limits how many widgets one session may open at the same time. The default value of max_widgets is 10. Raising it costs shared memory."},
        {"id": "widgets-b.html", "title": "Widget configuration", "text": "Widgets are configured in widgets.conf. Each session opens widgets on demand; when max_widgets widgets are open, further requests wait for one to close."},
        {"id": "gadgets.html", "title": "Gadgets", "text": "Gadgets are unrelated to widgets. The gadget_timeout setting controls how long a gadget waits for a reply."},
        {"id": "garden.html", "title": "Gardening", "text": "Water tomatoes in the morning and keep the soil moist."}
    ])
}

#[tokio::test]
async fn rag_steps_escalate_with_the_reason_their_verifier_found() {
    let fixture = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rag_replay.csv");
    let model = |name: &str, price: f64| {
        format!(
            "[[models]]\nname = \"{name}\"\nusd_per_m_in = {price}\nusd_per_m_out = {price}\n\
             provider = {{ kind = \"replay\", datasets = [\"{}\"], column = \"{name}\" }}\n",
            fixture.display()
        )
    };
    let mut h = Harness::new(Opts {
        models: Some(format!(
            "{}{}{}\n[tiers]\nsmall = \"fx-small\"\nmedium = \"fx-medium\"\nstrong = \"fx-strong\"\n",
            model("fx-small", 0.2),
            model("fx-medium", 2.0),
            model("fx-strong", 20.0)
        )),
        ..Opts::default()
    })
    .await;
    let _orch = h.orchestrator().await;
    h.workers();
    ingest(&h, "widgets", widgets()).await;
    let mut conflicting = widgets();
    conflicting.as_array_mut().unwrap().push(
        json!({"id": "widgets-old.html", "title": "Widget limits (old releases)",
        "text": "In older releases the default value of max_widgets is 25. Sessions could open more widgets then."}),
    );
    ingest(&h, "widgets-old", conflicting).await;

    // Bad input: unknown collection, empty query, steps on a rag job.
    for (body, field) in [
        (
            json!({"kind":"rag","collection":"nope","query":"q","blast_radius":"low"}),
            "collection",
        ),
        (
            json!({"kind":"rag","collection":"widgets","query":" ","blast_radius":"low"}),
            "query",
        ),
        (
            json!({"kind":"rag","collection":"widgets","query":"q","blast_radius":"low",
                "steps":[{"name":"a","task":"answer","input":"x"}]}),
            "steps",
        ),
    ] {
        let (code, v) = h.post_raw("/v1/jobs", body.to_string().as_bytes(), &[]).await;
        assert_eq!((code, v["error"]["field"].as_str()), (422, Some(field)), "{v}");
    }
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(jobs, 0, "refused jobs write nothing");

    let q1 = submit(&h, "widgets", "What is the default value of max_widgets?").await;
    let q2 = submit(&h, "widgets-old", "How many widgets may one session open by default?").await;
    h.wait_all(&[q1, q2], Duration::from_secs(60)).await;

    let r1 = check_shape(&h, q1, "widgets").await;
    let escalations = |r: &[StepEvent], step: &str| {
        r.iter()
            .filter(|e| e.0 == step && e.1 == "escalate")
            .map(|e| (e.2.clone().unwrap(), e.3.clone().unwrap(), e.4.join(",")))
            .collect::<Vec<_>>()
    };
    let route1 = step_route(&h, q1).await;
    let s = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    assert_eq!(
        escalations(&route1, "retrieve"),
        vec![s("small", "medium", "retrieval_empty")]
    );
    assert_eq!(
        escalations(&route1, "extract"),
        vec![
            s("small", "medium", "citation_missing"),
            s("medium", "strong", "schema_invalid")
        ]
    );
    // The small critic rejected the medium draft: synthesis re-ran on strong
    // and the critique ran again, one tier below it.
    assert_eq!(
        escalations(&route1, "synthesise"),
        vec![s("medium", "strong", "critique_rejected")]
    );
    let critiques: Vec<&str> = route1
        .iter()
        .filter(|e| e.0 == "critique" && e.1 == "dispatch")
        .map(|e| e.3.as_deref().unwrap())
        .collect();
    assert_eq!(critiques, ["small", "medium"]);
    assert_eq!(r1["verdict"]["verdict"], "supported");
    assert!(r1["answer"].as_str().unwrap().contains("at most 10 widgets"), "{r1:#}");
    assert_eq!(r1["citations"][0]["document_id"], "widgets-a.html");

    check_shape(&h, q2, "widgets-old").await;
    let route2 = step_route(&h, q2).await;
    assert_eq!(
        escalations(&route2, "synthesise"),
        vec![s("medium", "strong", "conflicting_evidence")],
        "{route2:?}"
    );
    // Conflicting passages made the later steps more ambiguous, and the route says why.
    let parts: serde_json::Value = sqlx::query_scalar(
        "SELECT e.detail->'ambiguity_parts' FROM route_events e JOIN steps s ON s.id = e.step_id
         WHERE e.job_id = $1 AND s.name = 'extract' AND e.event = 'start'",
    )
    .bind(q2)
    .fetch_one(&h.pool)
    .await
    .unwrap();
    assert!(parts["conflict"].is_string(), "{parts}");
    assert!(crate::util::duplicate_decisions(&h.pool).await.is_empty());
    h.finish().await;
}

#[tokio::test]
async fn rag_job_on_the_local_models_answers_from_the_postgres_docs() {
    assert!(
        std::path::Path::new(PG_DOCS).is_dir(),
        "{PG_DOCS} is missing: apt-get install postgresql-doc-15 (scripts/deps.sh --test does)"
    );
    // The embedded default catalog: SmolLM2 small/medium, Gemma 3 strong.
    let mut h = Harness::new(Opts {
        models: Some(String::new()),
        concurrency: 2,
        ..Opts::default()
    })
    .await;
    let _orch = h.orchestrator().await;
    h.workers();
    let (ok, out, err) = h
        .cli(&["ingest", "--batch-kib", "48", "--collection", "pg", PG_DOCS])
        .await;
    assert!(ok, "{out}\n{err}");
    let q = "Which setting controls how much information is written to the write-ahead log?";
    let job = submit(&h, "pg", q).await;
    h.wait_all(&[job], Duration::from_secs(600)).await;
    let result = check_shape(&h, job, "pg").await;
    // The decisions and their reasons are in the route; print them for the log.
    for e in step_route(&h, job).await {
        eprintln!("{e:?}");
    }
    eprintln!("{result:#}");
    let models: Vec<String> = sqlx::query_scalar("SELECT DISTINCT provider FROM attempts WHERE job_id = $1")
        .bind(job)
        .fetch_all(&h.pool)
        .await
        .unwrap();
    assert_eq!(models, ["local"], "the local models ran every step");
    h.finish().await;
}
