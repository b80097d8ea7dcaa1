//! Crash and redelivery: an orchestrator killed mid-flight loses nothing, a
//! result delivered twice is decided once, a decision whose commit fails is
//! redelivered and decided once, a failed batch is settled result by
//! result, an attempt that never answers times out
//! and escalates, and its late result changes nothing.

use crate::util::{Harness, Opts, answered_result, duplicate_decisions, eventually};
use std::time::Duration;
use upshift_shared::Tier;
use uuid::Uuid;

const ANN: &str = "Ann has 3 apples and buys 4 more. How many apples does she have now?";

async fn answer(h: &Harness, job: Uuid, step: Uuid, attempt: Uuid, tier: Tier, text: &str) -> Vec<u8> {
    serde_json::to_vec(&answered_result(&h.pool, job, step, attempt, tier, text).await).unwrap()
}

async fn publish_result(h: &Harness, body: Vec<u8>) {
    let js = async_nats::jetstream::new(h.nats.clone());
    let mut headers = async_nats::HeaderMap::new();
    // A fresh message id each time, so JetStream does not deduplicate: the
    // orchestrator itself must recognise the repeat.
    headers.insert("Nats-Msg-Id", Uuid::now_v7().to_string().as_str());
    js.publish_with_headers(format!("{}.results", h.prefix), headers, body.into())
        .await
        .unwrap()
        .await
        .unwrap();
}

#[tokio::test]
async fn the_same_result_delivered_twice_is_decided_once() {
    let mut h = Harness::new(Opts::default()).await;
    let _orch = h.orchestrator().await;
    let job = h.submit_answer(ANN, "low").await;
    let (attempt, step) = h.published_attempt(job, "small").await;
    let body = answer(&h, job, step, attempt, Tier::Small, "3 + 4 = <<3+4=7>>7\n#### 7").await;
    publish_result(&h, body.clone()).await;
    publish_result(&h, body).await;
    h.wait_all(&[job], Duration::from_secs(20)).await;
    // Both copies consumed: nothing pending on the orchestrator's consumer.
    let js = async_nats::jetstream::new(h.nats.clone());
    let stream = format!("{}_RESULTS", h.prefix.to_ascii_uppercase());
    eventually(Duration::from_secs(20), || {
        let js = js.clone();
        let stream = stream.clone();
        async move {
            let mut c: async_nats::jetstream::consumer::PullConsumer =
                js.get_consumer_from_stream("orchestrator", &stream).await.ok()?;
            let info = c.info().await.ok()?;
            (info.num_pending == 0 && info.num_ack_pending == 0 && info.delivered.stream_sequence >= 2).then_some(())
        }
    })
    .await;
    let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM attempts WHERE job_id = $1")
        .bind(job)
        .fetch_one(&h.pool)
        .await
        .unwrap();
    let decisions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM route_events WHERE job_id = $1 AND event IN ('accept', 'unresolved', 'escalate', 'fail')",
    )
    .bind(job)
    .fetch_one(&h.pool)
    .await
    .unwrap();
    let cost: f64 = sqlx::query_scalar("SELECT cost_usd FROM jobs WHERE id = $1")
        .bind(job)
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!((attempts, decisions), (1, 1));
    // Once, at fx-small's own price (the result claims $0.25 and 50 tokens
    // out; a replay writes at most its answer's bytes).
    let text = "3 + 4 = <<3+4=7>>7\n#### 7";
    let once = upshift_shared::cost::call_cost(100, 50.min(text.len() as u32 + 1), 0.2, 0.2);
    assert!((cost - once).abs() < 1e-12, "cost counted once: {cost}");
    h.finish().await;
}

/// A decision whose transaction fails is not acknowledged: its result is
/// redelivered and decided once it commits. The partial unique index on
/// decisions refuses a second one for the same attempt, even written
/// outside the router.
#[tokio::test]
async fn a_decision_whose_commit_fails_is_redelivered_and_decided_once() {
    let mut h = Harness::new(Opts::default()).await;
    let _orch = h.orchestrator().await;
    // A sequence counts the refusals: nextval is not rolled back with them.
    sqlx::raw_sql(
        "CREATE SEQUENCE refusals;
         CREATE FUNCTION refuse_twice() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.event IN ('accept', 'unresolved', 'escalate', 'fail') AND nextval('refusals') <= 2 THEN
             RAISE EXCEPTION 'injected: decision refused';
         END IF; RETURN NEW; END $$;
         CREATE TRIGGER refuse_twice BEFORE INSERT ON route_events FOR EACH ROW EXECUTE FUNCTION refuse_twice();",
    )
    .execute(&h.pool)
    .await
    .unwrap();
    let job = h.submit_answer(ANN, "low").await;
    let (attempt, step) = h.published_attempt(job, "small").await;
    publish_result(
        &h,
        answer(&h, job, step, attempt, Tier::Small, "3 + 4 = <<3+4=7>>7\n#### 7").await,
    )
    .await;
    h.wait_all(&[job], Duration::from_secs(30)).await;
    let refusals: i64 = sqlx::query_scalar("SELECT last_value FROM refusals")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert!(refusals >= 3, "refused twice, then committed: {refusals}");
    let decisions: Vec<String> = sqlx::query_scalar(
        "SELECT event FROM route_events WHERE attempt_id = $1 AND event IN ('accept', 'unresolved', 'escalate', 'fail')",
    )
    .bind(attempt)
    .fetch_all(&h.pool)
    .await
    .unwrap();
    assert_eq!(decisions, ["accept"], "decided once");
    // The one result was delivered three times: acked only after the commit.
    let js = async_nats::jetstream::new(h.nats.clone());
    let stream = format!("{}_RESULTS", h.prefix.to_ascii_uppercase());
    let mut c: async_nats::jetstream::consumer::PullConsumer =
        js.get_consumer_from_stream("orchestrator", &stream).await.unwrap();
    let info = c.info().await.unwrap();
    assert_eq!(info.delivered.stream_sequence, 1, "one result message");
    assert!(info.delivered.consumer_sequence >= 3, "redelivered: {info:?}");
    assert_eq!((info.num_pending, info.num_ack_pending), (0, 0));
    // The database refuses a second decision for the attempt.
    let second = sqlx::query(
        "INSERT INTO route_events (job_id, step_id, attempt_id, event, policy_version) VALUES ($1, $2, $3, 'escalate', 'x')",
    )
    .bind(job)
    .bind(step)
    .bind(attempt)
    .execute(&h.pool)
    .await
    .unwrap_err();
    let code = second.as_database_error().and_then(|e| e.code()).map(|c| c.to_string());
    assert_eq!(code.as_deref(), Some("23505"), "{second}");
    h.finish().await;
}

/// A batch whose transaction fails is settled one result at a time, so
/// one bad result holds up only itself: here Postgres refuses any
/// statement that records more than one decision, and the results that
/// waited together are still decided, once each.
#[tokio::test]
async fn a_batch_that_fails_is_settled_one_result_at_a_time() {
    let mut h = Harness::new(Opts::default()).await;
    let mut orch = h.orchestrator().await;
    // Six results waiting at once: the consumer hands over what is ready
    // together, and with six some arrive in the same chunk.
    let mut jobs = Vec::new();
    for _ in 0..6 {
        jobs.push(h.submit_answer(ANN, "low").await);
    }
    let mut bodies = Vec::new();
    for &job in &jobs {
        let (attempt, step) = h.published_attempt(job, "small").await;
        bodies.push(answer(&h, job, step, attempt, Tier::Small, "3 + 4 = <<3+4=7>>7\n#### 7").await);
    }
    // The orchestrator is down while the results arrive: they wait
    // together and are fetched in batches.
    orch.child.kill().await.unwrap();
    for b in bodies {
        publish_result(&h, b).await;
    }
    sqlx::raw_sql(
        "CREATE FUNCTION one_at_a_time() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF (SELECT count(*) FROM new_rows WHERE event IN ('accept', 'unresolved', 'escalate', 'fail')) > 1 THEN
             RAISE EXCEPTION 'injected: a batch refused';
         END IF; RETURN NULL; END $$;
         CREATE TRIGGER one_at_a_time AFTER INSERT ON route_events REFERENCING NEW TABLE AS new_rows
             FOR EACH STATEMENT EXECUTE FUNCTION one_at_a_time();",
    )
    .execute(&h.pool)
    .await
    .unwrap();
    let _orch = h.orchestrator().await;
    h.wait_all(&jobs, Duration::from_secs(30)).await;
    let decided: Vec<(String, i64)> = sqlx::query_as(
        "SELECT j.status, (SELECT count(*) FROM route_events e WHERE e.job_id = j.id
                           AND e.event IN ('accept', 'unresolved', 'escalate', 'fail'))
         FROM jobs j WHERE j.id = ANY($1)",
    )
    .bind(&jobs[..])
    .fetch_all(&h.pool)
    .await
    .unwrap();
    assert_eq!(decided, vec![("succeeded".to_string(), 1); 6], "each decided once");
    let log = std::fs::read_to_string(h.dir.join("orchestrator-0.log")).unwrap_or_default();
    assert!(
        log.contains("settling a batch failed; settling its results one by one"),
        "results fetched together were split: {}",
        h.dir.display()
    );
    h.finish().await;
}

#[tokio::test]
async fn a_silent_attempt_times_out_escalates_and_its_late_result_changes_nothing() {
    let mut h = Harness::new(Opts {
        deadline_secs: 2,
        ..Opts::default()
    })
    .await;
    let _orch = h.orchestrator().await;
    h.worker("medium"); // no small worker: the small attempt never answers
    let job = h.submit_answer(ANN, "low").await;
    let (small, step) = h.published_attempt(job, "small").await;
    h.wait_all(&[job], Duration::from_secs(30)).await;
    let events: Vec<(String, Vec<String>)> = sqlx::query_as(
        "SELECT event, reasons FROM route_events WHERE job_id = $1 AND event IN ('escalate', 'accept') ORDER BY id",
    )
    .bind(job)
    .fetch_all(&h.pool)
    .await
    .unwrap();
    assert_eq!(
        events,
        [
            ("escalate".into(), vec!["timeout".to_string()]),
            ("accept".into(), vec![])
        ]
    );

    publish_result(&h, answer(&h, job, step, small, Tier::Small, "#### 7").await).await;
    let pool = h.pool.clone();
    eventually(Duration::from_secs(20), || {
        let pool = pool.clone();
        async move {
            let n: i64 =
                sqlx::query_scalar("SELECT count(*) FROM route_events WHERE attempt_id = $1 AND event = 'late_result'")
                    .bind(small)
                    .fetch_one(&pool)
                    .await
                    .ok()?;
            (n == 1).then_some(())
        }
    })
    .await;
    let (status, tier): (String, String) =
        sqlx::query_as("SELECT j.status, s.current_tier FROM jobs j JOIN steps s ON s.job_id = j.id WHERE j.id = $1")
            .bind(job)
            .fetch_one(&h.pool)
            .await
            .unwrap();
    assert_eq!((status.as_str(), tier.as_str()), ("succeeded", "medium"));
    assert!(duplicate_decisions(&h.pool).await.is_empty());
    h.finish().await;
}

#[tokio::test]
async fn an_orchestrator_killed_mid_flight_finishes_every_job_after_restart() {
    let mut h = Harness::new(Opts {
        latency_ms: [200, 100, 50],
        concurrency: 2,
        ..Opts::default()
    })
    .await;
    let mut orch = h.orchestrator().await;
    h.workers();
    let mut ids = Vec::new();
    for i in 1..=24 {
        let input = format!(
            "Load item {i}: a crate holds {} jars and {} more are added. How many jars are in the crate?",
            i + 10,
            i + 3
        );
        ids.push(h.submit_answer(&input, "low").await);
    }
    ids.push(
        h.submit_answer("A train travels 60 km per hour for 3 hours. How far does it go?", "low")
            .await,
    );
    // Let some work finish, then kill -9 while the rest is in flight.
    let pool = h.pool.clone();
    eventually(Duration::from_secs(30), || {
        let pool = pool.clone();
        async move {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE status <> 'running'")
                .fetch_one(&pool)
                .await
                .ok()?;
            (n >= 3).then_some(())
        }
    })
    .await;
    orch.child.start_kill().unwrap();
    orch.child.wait().await.unwrap();
    let unfinished: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE status = 'running'")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert!(unfinished > 0, "the kill should leave work in flight");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _orch2 = h.orchestrator().await;
    h.wait_all(&ids, Duration::from_secs(90)).await;

    let failed: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE status <> 'succeeded'")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(failed, 0);
    assert!(
        duplicate_decisions(&h.pool).await.is_empty(),
        "a decision was recorded twice"
    );
    let multi_dispatch: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT attempt_id FROM route_events WHERE event = 'dispatch' GROUP BY 1 HAVING count(*) > 1) d",
    )
    .fetch_one(&h.pool)
    .await
    .unwrap();
    assert_eq!(multi_dispatch, 0);
    let bad_steps: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM steps s WHERE (SELECT count(*) FROM attempts a WHERE a.step_id = s.id AND a.outcome = 'accepted') <> 1",
    )
    .fetch_one(&h.pool)
    .await
    .unwrap();
    assert_eq!(bad_steps, 0, "every step has exactly one accepted attempt");
    h.finish().await;
}

#[tokio::test]
async fn two_orchestrator_replicas_decide_each_attempt_once() {
    let mut h = Harness::new(Opts {
        latency_ms: [20, 20, 20],
        ..Opts::default()
    })
    .await;
    let first = h.orchestrator().await;
    let second = h.orchestrator().await;
    h.workers();
    let mut ids = Vec::new();
    for i in 1..=30 {
        // Alternate the replica that takes the request.
        h.api = Some(if i % 2 == 0 {
            first.api.clone()
        } else {
            second.api.clone()
        });
        let input = if i % 5 == 0 {
            "Bob packs 5 boxes with 6 pens each. How many pens does he pack?".to_string()
        } else {
            format!(
                "Load item {i}: a crate holds {} jars and {} more are added. How many jars are in the crate?",
                i + 10,
                i + 3
            )
        };
        ids.push(h.submit_answer(&input, "low").await);
    }
    h.wait_all(&ids, Duration::from_secs(60)).await;
    assert!(
        duplicate_decisions(&h.pool).await.is_empty(),
        "a decision was recorded twice"
    );
    let (attempts, decided): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(*) FILTER (WHERE outcome IS NOT NULL) FROM attempts")
            .fetch_one(&h.pool)
            .await
            .unwrap();
    assert_eq!(attempts, decided, "every attempt decided exactly once");
    assert_eq!(attempts, 36, "24 accepted on small, 6 escalated small→medium");
    h.finish().await;
}

/// The outbox: an attempt is committed before it is published, so a
/// publish lost to a NATS outage (injected: the server is down at that
/// moment) loses nothing; the sweeper publishes it once NATS is back, and
/// the job finishes with one attempt and one decision.
#[tokio::test]
async fn an_attempt_whose_publish_was_lost_is_published_by_the_sweeper() {
    let mut h = Harness::new(Opts::default()).await;
    let port = crate::util::free_port();
    let store = h.dir.join("nats-js");
    let js = ["-js", "-sd", store.to_str().unwrap()];
    let url = format!("nats://127.0.0.1:{port}");
    let mut first = crate::util::own_nats(port, &js, &[], None).await;
    let env = [("UPSHIFT_NATS__URL", url.as_str())];
    let _orch = h.orchestrator_with(&env).await;
    // NATS goes down; the job is still accepted and its attempt committed.
    let _ = first.kill().await;
    let job = h.submit_answer(ANN, "low").await;
    let pool = h.pool.clone();
    let attempt: Uuid = eventually(Duration::from_secs(10), || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar("SELECT id FROM attempts WHERE job_id = $1 AND published_at IS NULL")
                .bind(job)
                .fetch_optional(&pool)
                .await
                .ok()
                .flatten()
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let unpublished: bool = sqlx::query_scalar("SELECT published_at IS NULL FROM attempts WHERE id = $1")
        .bind(attempt)
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert!(unpublished, "committed, not published while NATS is down");
    // NATS is back (same storage); a worker on it answers what the sweeper publishes.
    let _again = crate::util::own_nats(port, &js, &[], None).await;
    let worker = h.spawn_worker("small", &env);
    h.wait_all(&[job], Duration::from_secs(60)).await;
    let (attempts, decisions): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM attempts WHERE job_id = $1),
                (SELECT count(*) FROM route_events WHERE job_id = $1 AND event IN ('accept', 'unresolved', 'escalate', 'fail'))",
    )
    .bind(job)
    .fetch_one(&h.pool)
    .await
    .unwrap();
    assert_eq!(
        (attempts, decisions),
        (1, 1),
        "the same attempt, published late, decided once"
    );
    let status: String = sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1")
        .bind(job)
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(status, "succeeded");
    drop(worker);
    h.finish().await;
}
