//! The cascade on real NATS + Postgres: start tier from risk, verified
//! escalation with reasons, acceptance, and capacity from extra workers.

use crate::util::{Event, Harness, Opts, duplicate_decisions, route};
use std::time::Duration;

const ANN: &str = "Ann has 3 apples and buys 4 more. How many apples does she have now?";
const BOB: &str = "Bob packs 5 boxes with 6 pens each. How many pens does he pack?";
const TRAIN: &str = "A train travels 60 km per hour for 3 hours. How far does it go?";
const CARA: &str = "Cara reads 12 pages a day for 5 days. How many pages does she read?";

fn events(r: &[Event]) -> Vec<String> {
    r.iter()
        .map(|(e, f, t, rs)| {
            format!(
                "{e}:{}>{}:{}",
                f.as_deref().unwrap_or(""),
                t.as_deref().unwrap_or(""),
                rs.join(",")
            )
        })
        .collect()
}

#[tokio::test]
async fn small_accepts_mismatch_escalates_and_high_blast_radius_starts_strong() {
    let mut h = Harness::new(Opts::default()).await;
    let _orch = h.orchestrator().await;
    h.workers();
    let ann = h.submit_answer(ANN, "low").await;
    let bob = h.submit_answer(BOB, "low").await;
    let train = h.submit_answer(TRAIN, "medium").await;
    let cara = h.submit_answer(CARA, "low").await;
    let high = h.submit_answer(ANN, "high").await;
    h.wait_all(&[ann, bob, train, cara, high], Duration::from_secs(60))
        .await;

    assert_eq!(
        events(&route(&h.pool, ann).await),
        ["start:>small:risk_rule", "dispatch:>small:", "accept:small>:"]
    );
    assert_eq!(
        events(&route(&h.pool, bob).await),
        [
            "start:>small:risk_rule",
            "dispatch:>small:",
            "escalate:small>medium:arithmetic_mismatch",
            "dispatch:small>medium:",
            "accept:medium>:"
        ]
    );
    let t = events(&route(&h.pool, train).await);
    assert_eq!(t[2], "escalate:small>medium:arithmetic_mismatch");
    assert_eq!(t[4], "escalate:medium>strong:arithmetic_mismatch");
    assert_eq!(t.last().unwrap(), "accept:strong>:");
    assert!(events(&route(&h.pool, cara).await).contains(&"escalate:small>medium:answer_format".to_string()));
    assert_eq!(
        events(&route(&h.pool, high).await)[..2],
        [
            "start:>strong:high_blast_radius".to_string(),
            "dispatch:>strong:".to_string()
        ]
    );

    // The API shows the same story, with costs.
    let (status, job) = h.get(&format!("/v1/jobs/{bob}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["steps"][0]["tier"], "medium");
    assert_eq!(job["steps"][0]["attempts"], 2);
    assert!(job["result"]["answer"].as_str().unwrap().contains("#### 30"));
    let cost = job["cost_usd"].as_f64().unwrap();
    let strong = job["always_strong_cost_usd"].as_f64().unwrap();
    assert!(cost > 0.0 && strong > cost, "cost {cost} vs always-strong {strong}");
    let (_, r) = h.get(&format!("/v1/jobs/{bob}/route"), None).await;
    let ev = r["events"].as_array().unwrap();
    assert_eq!(ev[2]["event"], "escalate");
    assert_eq!(ev[2]["reasons"][0], "arithmetic_mismatch");
    assert_eq!(ev[2]["model"], "fx-small");
    assert!(
        ev[2]["detail"]["findings"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("<<5*6=35>>")
    );
    assert!(duplicate_decisions(&h.pool).await.is_empty());

    // The CLI shows the same route: `watch` (which returns once the job is done) and `history --json`.
    let (ok, out, err) = h.cli(&["watch", &bob.to_string()]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("escalate") && out.contains("arithmetic_mismatch") && out.contains("succeeded"),
        "{out}"
    );
    let (ok, out, _) = h.cli(&["history", &bob.to_string(), "--json"]).await;
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["events"].as_array().unwrap().len(), 5);
    h.finish().await;
}

#[tokio::test]
async fn two_workers_on_one_tier_share_one_consumer() {
    let mut h = Harness::new(Opts {
        latency_ms: [150, 0, 0],
        concurrency: 1,
        ..Opts::default()
    })
    .await;
    let _orch = h.orchestrator().await;
    h.worker("small");
    h.worker("small");
    let mut ids = Vec::new();
    for i in 1..=16 {
        let input = format!(
            "Load item {i}: a crate holds {} jars and {} more are added. How many jars are in the crate?",
            i + 10,
            i + 3
        );
        ids.push(h.submit_answer(&input, "low").await);
    }
    h.wait_all(&ids, Duration::from_secs(60)).await;
    let per_worker: Vec<(String, i64)> =
        sqlx::query_as("SELECT worker_id, count(*) FROM attempts WHERE tier = 'small' GROUP BY 1 ORDER BY 1")
            .fetch_all(&h.pool)
            .await
            .unwrap();
    assert_eq!(
        per_worker.len(),
        2,
        "both workers should have run attempts: {per_worker:?}"
    );
    assert!(per_worker.iter().all(|(_, n)| *n >= 2), "{per_worker:?}");
    assert_eq!(per_worker.iter().map(|(_, n)| n).sum::<i64>(), 16);
    h.finish().await;
}

/// A worker pulls only as many tasks as it has free slots, and a call that
/// outlasts the ack wait keeps its task with in-progress acks: no task is
/// redelivered, none runs twice.
#[tokio::test]
async fn a_busy_worker_pulls_only_its_free_slots_and_keeps_long_calls_with_progress_acks() {
    let mut h = Harness::new(Opts {
        latency_ms: [4000, 0, 0],
        concurrency: 1,
        ack_wait_secs: 2,
        progress_secs: 1,
        ..Opts::default()
    })
    .await;
    let _orch = h.orchestrator().await;
    h.workers();
    let jobs = [
        h.submit_answer(ANN, "low").await,
        h.submit_answer(CARA, "low").await,
        h.submit_answer(TRAIN, "low").await,
    ];
    let js = async_nats::jetstream::new(h.nats.clone());
    let subjects = upshift_shared::subjects::Subjects::new(h.prefix.clone());
    let tasks = js.get_stream(subjects.tasks_stream()).await.unwrap();
    let mut small: async_nats::jetstream::consumer::PullConsumer = tasks
        .get_consumer(&subjects.worker_consumer(upshift_shared::Tier::Small))
        .await
        .unwrap();
    // Each small call takes 4 s, twice the ack wait: sampled while they run,
    // the one small worker never holds more than its one slot.
    let mut most = 0;
    for _ in 0..20 {
        most = most.max(small.info().await.unwrap().num_ack_pending);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(most <= 1, "a worker of concurrency 1 held {most} tasks");
    h.wait_all(&jobs, Duration::from_secs(90)).await;
    let on_small: i64 = sqlx::query_scalar("SELECT count(*) FROM attempts WHERE tier = 'small'")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    let info = small.info().await.unwrap();
    assert_eq!(
        info.delivered.consumer_sequence, on_small as u64,
        "each small task delivered once, none redelivered: {info:?}"
    );
    assert_eq!(on_small, 3);
    h.finish().await;
}

/// A step's generation limits reach the workers: with `stop: ["####"]`
/// every answer is cut before its final-answer marker (and then judged as
/// cut: here the last computation still gives the final number), and the
/// limits are stored with the step.
#[tokio::test]
async fn a_steps_stop_sequences_cut_its_answers() {
    let mut h = Harness::new(Opts::default()).await;
    let _orch = h.orchestrator().await;
    h.workers();
    let body = serde_json::json!({"kind": "steps", "blast_radius": "low", "steps": [
        {"name": "s", "task": "answer", "input": ANN, "stop": ["####"], "max_tokens": 64}
    ]});
    let (code, v) = h.post_raw("/v1/jobs", body.to_string().as_bytes(), &[]).await;
    assert_eq!(code, 202, "{v}");
    let job: uuid::Uuid = v["id"].as_str().unwrap().parse().unwrap();
    h.wait_all(&[job], Duration::from_secs(30)).await;
    let outputs: Vec<Option<String>> = sqlx::query_scalar("SELECT output FROM attempts WHERE job_id = $1")
        .bind(job)
        .fetch_all(&h.pool)
        .await
        .unwrap();
    assert!(!outputs.is_empty());
    assert!(
        outputs.iter().flatten().all(|o| !o.contains("####") && !o.is_empty()),
        "every answer cut at the stop sequence: {outputs:?}"
    );
    let (_, v) = h.get(&format!("/v1/jobs/{job}"), None).await;
    let answer = v["result"]["answer"].as_str().unwrap_or_default();
    assert!(answer.contains("7") && !answer.contains("####"), "{v:#}");
    let (max_tokens, stop): (Option<i32>, Vec<String>) =
        sqlx::query_as("SELECT max_tokens, stop FROM steps WHERE job_id = $1")
            .bind(job)
            .fetch_one(&h.pool)
            .await
            .unwrap();
    assert_eq!((max_tokens, stop), (Some(64), vec!["####".to_string()]));
    h.finish().await;
}
