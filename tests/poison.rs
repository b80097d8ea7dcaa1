//! Results that cannot be stored as sent: a hostile worker's NUL bytes and
//! out-of-range numbers are decided as failures at once, and a result that
//! keeps failing to settle is decided without its output after
//! `orchestrator.result_max_deliver` deliveries. Neither is redelivered
//! forever, and the step escalates like after any failure.

use crate::util::{Harness, Opts, answered_result, eventually};
use sqlx::PgPool;
use std::time::Duration;
use upshift_shared::Tier;
use upshift_shared::messages::{AttemptOutcome, ResultMessage};
use uuid::Uuid;

const ANN: &str = "Ann has 3 apples and buys 4 more. How many apples does she have now?";

/// Publishes `result` on the results subject, as a worker would.
async fn publish(h: &Harness, result: &ResultMessage) {
    let js = async_nats::jetstream::new(h.nats.clone());
    let body = serde_json::to_vec(result).unwrap();
    js.publish(format!("{}.results", h.prefix), body.into())
        .await
        .unwrap()
        .await
        .unwrap();
}

/// The attempt's (status, error) once it is decided.
async fn decided(pool: &PgPool, attempt: Uuid) -> (String, String) {
    let pool = pool.clone();
    eventually(Duration::from_secs(30), move || {
        let pool = pool.clone();
        async move {
            let row: (String, Option<String>) = sqlx::query_as("SELECT status, error FROM attempts WHERE id = $1")
                .bind(attempt)
                .fetch_one(&pool)
                .await
                .ok()?;
            (row.0 != "dispatched").then(|| (row.0, row.1.unwrap_or_default()))
        }
    })
    .await
}

/// The reasons of the job's first escalation from small.
async fn escalation(pool: &PgPool, job: Uuid) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT reasons FROM route_events WHERE job_id = $1 AND event = 'escalate' AND from_tier = 'small' ORDER BY id LIMIT 1",
    )
    .bind(job)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn hostile_results_are_decided_as_failures_and_escalated() {
    let mut h = Harness::new(Opts::default()).await;
    let _orch = h.orchestrator().await;
    // No workers yet: the hostile results below are the only ones.
    let nul = h.submit_answer(ANN, "low").await;
    let wild = h.submit_answer(ANN, "low").await;
    let (a_nul, s_nul) = h.published_attempt(nul, "small").await;
    let (a_wild, s_wild) = h.published_attempt(wild, "small").await;
    publish(
        &h,
        &answered_result(&h.pool, nul, s_nul, a_nul, Tier::Small, "7\u{0}\u{0}").await,
    )
    .await;
    let mut r = answered_result(&h.pool, wild, s_wild, a_wild, Tier::Small, "7").await;
    if let AttemptOutcome::Answered { confidence, .. } = &mut r.outcome {
        *confidence = Some(1e300);
    }
    r.worker_id = "evil\u{0}worker".into();
    publish(&h, &r).await;

    let (status, error) = decided(&h.pool, a_nul).await;
    assert_eq!(status, "failed");
    assert_eq!(error, "fatal: unstorable result: the output holds NUL characters");
    let (status, error) = decided(&h.pool, a_wild).await;
    assert_eq!(status, "failed");
    assert!(error.starts_with("fatal: unstorable result: confidence"), "{error}");
    let worker: String = sqlx::query_scalar("SELECT worker_id FROM attempts WHERE id = $1")
        .bind(a_wild)
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(worker, "evil\u{FFFD}worker");
    for job in [nul, wild] {
        assert_eq!(escalation(&h.pool, job).await, ["provider_error"]);
    }
    // The escalated steps finish on real workers; the orchestrator is fine.
    h.workers();
    h.wait_all(&[nul, wild], Duration::from_secs(30)).await;
    h.finish().await;
}

#[tokio::test]
async fn a_result_that_never_settles_is_decided_without_its_output() {
    let mut h = Harness::new(Opts {
        result_max_deliver: 3,
        ..Opts::default()
    })
    .await;
    let _orch = h.orchestrator().await;
    // A deterministic fault no cleaning can foresee: Postgres refuses to
    // store this one output, on every delivery.
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.output = 'poison' THEN RAISE EXCEPTION 'this output cannot be stored'; END IF; RETURN NEW; END $$;
         CREATE TRIGGER refuse_poison BEFORE UPDATE ON attempts FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
    )
    .execute(&h.pool)
    .await
    .unwrap();
    let job = h.submit_answer(ANN, "low").await;
    let (attempt, step) = h.published_attempt(job, "small").await;
    publish(
        &h,
        &answered_result(&h.pool, job, step, attempt, Tier::Small, "poison").await,
    )
    .await;

    let (status, error) = decided(&h.pool, attempt).await;
    assert_eq!(status, "failed");
    assert!(
        error.starts_with("fatal: unsettled result: settling failed on 3 deliveries")
            && error.contains("this output cannot be stored"),
        "{error}"
    );
    assert_eq!(escalation(&h.pool, job).await, ["provider_error"]);
    let dead = || async {
        sqlx::query_as::<_, (String, Option<Uuid>)>("SELECT source, attempt_id FROM dead_letters")
            .fetch_all(&h.pool)
            .await
            .unwrap()
    };
    assert_eq!(dead().await, [("orchestrator".to_string(), Some(attempt))]);
    // Dropped, not redelivered: nothing more arrives.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(dead().await.len(), 1);
    h.workers();
    h.wait_all(&[job], Duration::from_secs(30)).await;
    h.finish().await;
}

/// Publishes raw bytes on the results subject.
async fn publish_raw(h: &Harness, body: Vec<u8>) {
    let js = async_nats::jetstream::new(h.nats.clone());
    js.publish(format!("{}.results", h.prefix), body.into())
        .await
        .unwrap()
        .await
        .unwrap();
}

#[tokio::test]
async fn hostile_messages_are_set_aside_and_decide_nothing() {
    let mut h = Harness::new(Opts::default()).await;
    let _orch = h.orchestrator().await;
    // No workers yet: every result below is forged.
    let mine = h.submit_answer(ANN, "low").await;
    let other = h.submit_answer(ANN, "low").await;
    let (attempt, step) = h.published_attempt(mine, "small").await;
    let (other_attempt, other_step) = h.published_attempt(other, "small").await;
    let valid =
        serde_json::to_vec(&answered_result(&h.pool, mine, step, attempt, Tier::Small, "#### 7").await).unwrap();
    // Unreadable: truncated JSON, a wrong version, an oversized body, garbage.
    publish_raw(&h, valid[..valid.len() / 2].to_vec()).await;
    let mut v: serde_json::Value = serde_json::from_slice(&valid).unwrap();
    v["version"] = 7.into();
    publish_raw(&h, v.to_string().into_bytes()).await;
    publish_raw(&h, vec![b'['; 900 * 1024]).await;
    publish_raw(&h, vec![0xff, 0xfe, 0x00, 0x01]).await;
    // Readable but not an answer to decide: an attempt that does not
    // exist, and one job's attempt answered in the name of another job.
    let ghost = Uuid::now_v7();
    publish(
        &h,
        &answered_result(&h.pool, mine, step, ghost, Tier::Small, "#### 7").await,
    )
    .await;
    publish(
        &h,
        &answered_result(&h.pool, other, other_step, attempt, Tier::Small, "#### 7").await,
    )
    .await;
    publish(
        &h,
        &answered_result(&h.pool, mine, step, other_attempt, Tier::Medium, "#### 7").await,
    )
    .await;
    // Every id right but the token guessed: ids are visible to tenants, the
    // token only to readers of the tier's tasks.
    let third = h.submit_answer(ANN, "low").await;
    let (third_attempt, third_step) = h.published_attempt(third, "small").await;
    let mut guessed = answered_result(&h.pool, third, third_step, third_attempt, Tier::Small, "#### 7").await;
    guessed.attempt_token = Uuid::new_v4();
    publish(&h, &guessed).await;
    let pool = h.pool.clone();
    let reasons: Vec<(String, Option<Uuid>)> = eventually(Duration::from_secs(30), || {
        let pool = pool.clone();
        async move {
            let rows: Vec<(String, Option<Uuid>)> =
                sqlx::query_as("SELECT reason, attempt_id FROM dead_letters ORDER BY id")
                    .fetch_all(&pool)
                    .await
                    .ok()?;
            (rows.len() >= 8).then_some(rows)
        }
    })
    .await;
    assert_eq!(reasons.len(), 8, "{reasons:?}");
    let unreadable = reasons.iter().filter(|(_, a)| a.is_none()).count();
    assert_eq!(unreadable, 4, "{reasons:?}");
    let with = |id: Uuid| reasons.iter().find(|(_, a)| *a == Some(id)).map(|(r, _)| r.as_str());
    assert!(with(ghost).is_some_and(|r| r.contains("does not exist")), "{reasons:?}");
    assert!(
        with(attempt).is_some_and(|r| r.contains("not its attempt's")),
        "{reasons:?}"
    );
    assert!(
        with(other_attempt).is_some_and(|r| r.contains("not its attempt's")),
        "{reasons:?}"
    );
    assert!(
        with(third_attempt).is_some_and(|r| r.contains("without its attempt's token")),
        "{reasons:?}"
    );
    // Nothing was decided: both attempts are still out, with no route event after dispatch.
    let open: i64 = sqlx::query_scalar("SELECT count(*) FROM attempts WHERE status = 'dispatched' AND id = ANY($1)")
        .bind(vec![attempt, other_attempt, third_attempt])
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(open, 3);
    let decided: i64 = sqlx::query_scalar("SELECT count(*) FROM route_events WHERE event NOT IN ('start', 'dispatch')")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(decided, 0);
    // The orchestrator is still deciding: the real worker answers both.
    h.worker("small");
    h.wait_all(&[mine, other, third], Duration::from_secs(30)).await;
    h.finish().await;
}

/// A result carrying its token (an insider on the tier's subject) that
/// claims $500 and billions of tokens is booked at the orchestrator's own
/// price for what the call could use, and never past the job's budget.
#[tokio::test]
async fn a_forged_cost_is_booked_at_the_orchestrators_price_within_the_budget() {
    let mut h = Harness::new(Opts::default()).await;
    let _orch = h.orchestrator().await;
    let body = serde_json::json!({"kind": "steps", "blast_radius": "low", "budget_usd": 0.001,
        "steps": [{"name": "solve", "task": "answer", "input": ANN}]});
    let (status, v) = h.post_raw("/v1/jobs", body.to_string().as_bytes(), &[]).await;
    assert_eq!(status, 202, "{v}");
    let job: Uuid = v["id"].as_str().unwrap().parse().unwrap();
    let (attempt, step) = h.published_attempt(job, "small").await;
    let mut r = answered_result(&h.pool, job, step, attempt, Tier::Small, "#### 7").await;
    if let AttemptOutcome::Answered {
        tokens_in,
        tokens_out,
        cost_usd,
        ..
    } = &mut r.outcome
    {
        (*tokens_in, *tokens_out, *cost_usd) = (2_000_000_000, 2_000_000_000, 500.0);
    }
    publish(&h, &r).await;
    let _ = decided(&h.pool, attempt).await;
    let (tin, tout, cost): (i32, i32, f64) =
        sqlx::query_as("SELECT tokens_in, tokens_out, cost_usd FROM attempts WHERE id = $1")
            .bind(attempt)
            .fetch_one(&h.pool)
            .await
            .unwrap();
    // fx-small is a replay model: it reads at most the prompt's bytes plus
    // the templates' allowance, and writes at most its answer's bytes.
    let cap_in = (ANN.len() + upshift_shared::cost::TEMPLATE_ALLOWANCE_BYTES) as i32;
    assert_eq!((tin, tout), (cap_in, "#### 7".len() as i32 + 1));
    let (spent, budget): (f64, f64) = sqlx::query_as("SELECT cost_usd, budget_usd FROM jobs WHERE id = $1")
        .bind(job)
        .fetch_one(&h.pool)
        .await
        .unwrap();
    // The capped tokens at $0.2/M would cost more than the budget: the budget bounds it.
    assert!(upshift_shared::cost::call_cost(tin as u32, tout as u32, 0.2, 0.2) > budget);
    assert_eq!(cost, budget, "booked at most the budget");
    assert!(spent <= budget, "spent {spent} of {budget}");
    h.finish().await;
}
