//! Decisions in batches: results of one job decided in one transaction,
//! duplicates in the same batch ignored, route events in order, and jobs
//! submitted together written together.

use crate::util::{Harness, Opts, answered_result, duplicate_decisions, route};
use std::time::Duration;
use upshift_orchestrator::collections::Retriever;
use upshift_orchestrator::router::{Evidence, Item, settle_batch};
use upshift_orchestrator::store::PgStore;
use upshift_shared::Tier;
use upshift_shared::config::Config;
use upshift_shared::messages::ResultMessage;
use uuid::Uuid;

const ANN: &str = "Ann has 3 apples and buys 4 more. How many apples does she have now?";
const SEVEN: &str = "3 + 4 = <<3+4=7>>7\n#### 7";

fn item(r: &ResultMessage) -> Item<'_> {
    Item {
        attempt: r.attempt_id,
        evidence: Evidence::Result(r),
        span: tracing::Span::none(),
    }
}

#[tokio::test]
async fn results_of_one_job_in_one_batch_are_decided_once_each_in_route_order() {
    let mut h = Harness::new(Opts::default()).await;
    let _orch = h.orchestrator().await;
    // Two independent steps and a third that needs both.
    let body = serde_json::json!({"kind": "steps", "blast_radius": "low", "steps": [
        {"name": "a", "task": "answer", "input": ANN},
        {"name": "b", "task": "answer", "input": ANN},
        {"name": "c", "task": "answer", "input": ANN, "depends_on": ["a", "b"]},
    ]});
    let (status, v) = h.post_raw("/v1/jobs", body.to_string().as_bytes(), &[]).await;
    assert_eq!(status, 202, "{v}");
    let job: Uuid = v["id"].as_str().unwrap().parse().unwrap();
    let first: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT a.id, a.step_id FROM attempts a JOIN steps s ON s.id = a.step_id WHERE a.job_id = $1 ORDER BY s.idx",
    )
    .bind(job)
    .fetch_all(&h.pool)
    .await
    .unwrap();
    assert_eq!(first.len(), 2, "a and b start at once");

    // No workers run: decide both results, and a copy of the first, in one batch.
    let cfg = Config::load(Some(&h.config)).unwrap();
    let store = PgStore::connect(&cfg).await.unwrap();
    let retriever = Retriever::with(None, cfg.rag.clone());
    let ra = answered_result(&h.pool, job, first[0].1, first[0].0, Tier::Small, SEVEN).await;
    let rb = answered_result(&h.pool, job, first[1].1, first[1].0, Tier::Small, SEVEN).await;
    let next = settle_batch(&store, &cfg, &retriever, &[item(&ra), item(&rb), item(&ra)])
        .await
        .unwrap();
    assert_eq!(next.len(), 1, "c starts once");
    let c = &next[0].msg;
    let steps: Vec<&str> = c.context.iter().map(|x| x.step.as_str()).collect();
    assert_eq!(steps, ["a", "b"], "c's task carries both outputs");
    assert!(c.context.iter().all(|x| x.output == SEVEN));

    // The same batch again (a redelivery): nothing changes.
    let again = settle_batch(&store, &cfg, &retriever, &[item(&ra), item(&rb)])
        .await
        .unwrap();
    assert!(again.is_empty());

    let events: Vec<(String, Option<String>)> = route(&h.pool, job)
        .await
        .into_iter()
        .map(|(e, _, to, _)| (e, to))
        .collect();
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(
        names,
        [
            "start", "dispatch", "start", "dispatch", "accept", "accept", "start", "dispatch"
        ],
        "{events:?}"
    );
    assert!(duplicate_decisions(&h.pool).await.is_empty());
    let (cost, state): (f64, String) = sqlx::query_as("SELECT cost_usd, status FROM jobs WHERE id = $1")
        .bind(job)
        .fetch_one(&h.pool)
        .await
        .unwrap();
    // Booked at the orchestrator's own price for fx-small ($0.2/M), not the
    // $0.25 each result claims; a replay writes at most its answer's bytes.
    let one = upshift_shared::cost::call_cost(100, 50.min(SEVEN.len() as u32 + 1), 0.2, 0.2);
    assert!(
        (cost - 2.0 * one).abs() < 1e-12,
        "each call counted once, at its own price: {cost}"
    );
    assert_eq!(state, "running");
    // Both decisions were one transaction: one commit time.
    let times: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT at) FROM route_events WHERE job_id = $1 AND event = 'accept'")
            .bind(job)
            .fetch_one(&h.pool)
            .await
            .unwrap();
    assert_eq!(times, 1);
    store.close().await;
    h.finish().await;
}

#[tokio::test]
async fn jobs_submitted_together_are_all_written_with_their_first_attempts() {
    let mut h = Harness::new(Opts::default()).await;
    let _orch = h.orchestrator().await;
    h.workers();
    let submits = (0..40).map(|i| {
        let h = &h;
        async move { h.submit_answer(&format!("{ANN} (copy {i})"), "low").await }
    });
    let ids: Vec<Uuid> = futures::future::join_all(submits).await;
    h.wait_all(&ids, Duration::from_secs(60)).await;
    let (jobs, steps, dispatched): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM steps),
                (SELECT count(DISTINCT job_id) FROM route_events WHERE event = 'dispatch')",
    )
    .fetch_one(&h.pool)
    .await
    .unwrap();
    assert_eq!((jobs, steps, dispatched), (40, 40, 40));
    // Concurrent submissions shared commits (a job's `created_at` is its
    // transaction's start): fewer distinct creation times than jobs.
    let commits: i64 = sqlx::query_scalar("SELECT count(DISTINCT created_at) FROM jobs")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert!(commits < 40, "40 jobs in {commits} transactions");
    h.finish().await;
}
