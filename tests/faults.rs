//! Faults: a task that crashes its worker every time is dead-lettered and
//! escalated, unreadable messages are set aside with a reason, SIGTERM
//! drains a worker without losing its in-flight attempt, a result the
//! stream cannot take for a while is published later, not run again, and a
//! dead letter raised while no orchestrator runs waits for the next.

use crate::util::{Harness, Opts, eventually, sigterm_and_wait};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const ANN: &str = "Ann has 3 apples and buys 4 more. How many apples does she have now?";

/// Runs `ANN` with a small worker that aborts on it (restarted each time
/// it dies) and a sound medium one, until the job ends; returns the job.
/// The orchestrator must already run.
async fn crash_until_dead_lettered(h: &mut Harness) -> uuid::Uuid {
    h.worker("medium");
    let stop = CancellationToken::new();
    let supervisor = {
        let stop = stop.clone();
        let h = &*h;
        let mut child = h.spawn_worker("small", &[("UPSHIFT_FAULT_CRASH_ON", "Ann has")]);
        async move {
            let mut crashes = 0;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => { let _ = child.kill().await; return crashes; }
                    _ = child.wait() => {
                        crashes += 1;
                        assert!(crashes < 50, "the worker keeps dying; see its logs");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        child = h.spawn_worker("small", &[("UPSHIFT_FAULT_CRASH_ON", "Ann has")]);
                    }
                }
            }
        }
    };
    let job = h.submit_answer(ANN, "low").await;
    let wait = async {
        h.wait_all(&[job], Duration::from_secs(90)).await;
        stop.cancel();
    };
    let (crashes, ()) = tokio::join!(supervisor, wait);
    assert!(crashes >= 2, "the worker crashed on each delivery ({crashes})");
    job
}

fn dead_letter_opts() -> Opts {
    Opts {
        ack_wait_secs: 2,
        progress_secs: 1,
        max_deliver: 2,
        ..Opts::default()
    }
}

#[tokio::test]
async fn a_task_that_crashes_every_worker_is_dead_lettered_then_escalated() {
    let mut h = Harness::new(dead_letter_opts()).await;
    let _orch = h.orchestrator().await;
    let job = crash_until_dead_lettered(&mut h).await;
    let events: Vec<(String, Option<String>, Vec<String>)> = sqlx::query_as(
        "SELECT event, from_tier, reasons FROM route_events WHERE job_id = $1 AND event IN ('escalate', 'accept') ORDER BY id",
    )
    .bind(job)
    .fetch_all(&h.pool)
    .await
    .unwrap();
    assert_eq!(
        events,
        [
            (
                "escalate".into(),
                Some("small".into()),
                vec!["dead_lettered".to_string()]
            ),
            ("accept".into(), Some("medium".into()), vec![])
        ]
    );
    let (source, reason): (String, String) =
        sqlx::query_as("SELECT source, reason FROM dead_letters WHERE attempt_id IS NOT NULL")
            .fetch_one(&h.pool)
            .await
            .unwrap();
    assert_eq!(source, "max_deliveries");
    assert!(reason.contains("2 deliveries"), "{reason}");
    h.finish().await;
}

#[tokio::test]
async fn unreadable_messages_are_set_aside_with_a_reason() {
    let mut h = Harness::new(Opts::default()).await;
    let _orch = h.orchestrator().await;
    h.worker("small");
    let js = async_nats::jetstream::new(h.nats.clone());
    for (subject, body) in [
        (format!("{}.tasks.small", h.prefix), &b"{not json"[..]),
        (format!("{}.results", h.prefix), &br#"{"version":99}"#[..]),
    ] {
        js.publish(subject, body.to_vec().into()).await.unwrap().await.unwrap();
    }
    let pool = h.pool.clone();
    let rows: Vec<(String, String)> = eventually(Duration::from_secs(20), || {
        let pool = pool.clone();
        async move {
            let rows: Vec<(String, String)> = sqlx::query_as("SELECT source, reason FROM dead_letters ORDER BY source")
                .fetch_all(&pool)
                .await
                .ok()?;
            (rows.len() == 2).then_some(rows)
        }
    })
    .await;
    assert_eq!(rows[0].0, "orchestrator");
    assert!(rows[0].1.contains("unsupported message version 99"), "{rows:?}");
    assert_eq!(rows[1].0, "worker");
    assert!(rows[1].1.contains("malformed"), "{rows:?}");
    // Both processes are still up and working.
    let job = h.submit_answer(ANN, "low").await;
    h.wait_all(&[job], Duration::from_secs(20)).await;
    h.finish().await;
}

#[tokio::test]
async fn sigterm_drains_a_worker_without_losing_its_attempt() {
    let mut h = Harness::new(Opts {
        latency_ms: [1500, 0, 0],
        ..Opts::default()
    })
    .await;
    let mut orch = h.orchestrator().await;
    let mut worker = h.spawn_worker("small", &[]);
    let job = h.submit_answer(ANN, "low").await;
    // Once the attempt is published, give the worker a moment to pull it, then stop it.
    h.published_attempt(job, "small").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    sigterm_and_wait(&mut worker, Duration::from_secs(25)).await;
    // The in-flight call finished and its result was published before exit.
    h.wait_all(&[job], Duration::from_secs(20)).await;
    let (status, tier): (String, String) =
        sqlx::query_as("SELECT j.status, s.current_tier FROM jobs j JOIN steps s ON s.job_id = j.id WHERE j.id = $1")
            .bind(job)
            .fetch_one(&h.pool)
            .await
            .unwrap();
    assert_eq!((status.as_str(), tier.as_str()), ("succeeded", "small"));
    // The orchestrator stops promptly on SIGTERM too.
    sigterm_and_wait(&mut orch.child, Duration::from_secs(15)).await;
    h.finish().await;
}

/// A stopped service is named before anything starts: the URL tried and
/// the command that starts it; a NATS without JetStream gets its own word.
#[tokio::test]
async fn a_stopped_service_is_named_with_the_command_that_starts_it() {
    let run = |env: &[(&str, String)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_upshift"));
        cmd.arg("run-local").env_remove("UPSHIFT_CONFIG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let closed = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let out = run(&[("UPSHIFT_NATS__URL", format!("nats://127.0.0.1:{}", closed()))]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("NATS is not reachable at nats://127.0.0.1:"),
        "{err}"
    );
    assert!(err.contains("nats-server -- -a 127.0.0.1 -p 4222 -js"), "{err}");
    let out = run(&[(
        "UPSHIFT_DATABASE__URL",
        format!("postgres://postgres@127.0.0.1:{}/x", closed()),
    )]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("Postgres is not reachable"),
        "{err}"
    );
    assert!(err.contains("pg_ctlcluster --skip-systemctl-redirect"), "{err}");
    // A NATS server of its own with JetStream off.
    let port = closed();
    let mut server = crate::util::own_nats(port, &[], &[], None).await;
    let out = run(&[("UPSHIFT_NATS__URL", format!("nats://127.0.0.1:{port}"))]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("JetStream is not available"),
        "{err}"
    );
    let _ = server.kill().await;
}

/// A dead letter whose handling fails (here: Postgres refuses its record
/// twice, a fault injected at that exact statement) is retried, not acked
/// away: the attempt is decided once, recorded once, and its task removed.
#[tokio::test]
async fn a_dead_letter_whose_handling_fails_is_retried_until_it_is_recorded() {
    let mut h = Harness::new(dead_letter_opts()).await;
    let _orch = h.orchestrator().await;
    // A sequence counts the refusals: nextval is not rolled back with them.
    sqlx::raw_sql(
        "CREATE SEQUENCE refusals;
         CREATE FUNCTION refuse_twice() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.source = 'max_deliveries' AND nextval('refusals') <= 2 THEN
             RAISE EXCEPTION 'injected: dead letter refused';
         END IF; RETURN NEW; END $$;
         CREATE TRIGGER refuse_twice BEFORE INSERT ON dead_letters FOR EACH ROW EXECUTE FUNCTION refuse_twice();",
    )
    .execute(&h.pool)
    .await
    .unwrap();
    let job = crash_until_dead_lettered(&mut h).await;
    let pool = h.pool.clone();
    // Refused twice, then recorded: once.
    let recorded: i64 = eventually(Duration::from_secs(60), || {
        let pool = pool.clone();
        async move {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters WHERE source = 'max_deliveries'")
                .fetch_one(&pool)
                .await
                .ok()?;
            (n > 0).then_some(n)
        }
    })
    .await;
    assert_eq!(recorded, 1);
    let decisions: Vec<(String, Vec<String>)> = sqlx::query_as(
        "SELECT event, reasons FROM route_events WHERE job_id = $1 AND event IN ('escalate', 'accept', 'fail') ORDER BY id",
    )
    .bind(job)
    .fetch_all(&h.pool)
    .await
    .unwrap();
    assert_eq!(
        decisions,
        [
            ("escalate".to_string(), vec!["dead_lettered".to_string()]),
            ("accept".to_string(), vec![])
        ],
        "decided once"
    );
    let log = std::fs::read_to_string(h.dir.join("orchestrator-0.log")).unwrap_or_default();
    assert!(
        log.contains("handling a dead letter failed; retrying later"),
        "the failure was retried"
    );
    // The task message is gone from the work queue.
    let js = async_nats::jetstream::new(h.nats.clone());
    let mut stream = js
        .get_stream(format!("{}_TASKS", h.prefix.to_ascii_uppercase()))
        .await
        .unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 0);
    h.finish().await;
}

/// A result the results stream cannot take for a while (as while a NATS
/// cluster elects a stream leader after a node died) is published once it
/// can: the worker retries the publish and keeps its task, so the model is
/// not run again and the step does not escalate.
#[tokio::test]
async fn a_result_the_stream_cannot_take_for_a_while_is_published_later_not_run_again() {
    let mut h = Harness::new(Opts::default()).await;
    let _orch = h.orchestrator().await;
    let subjects = upshift_shared::subjects::Subjects::new(h.prefix.clone());
    let js = async_nats::jetstream::new(h.nats.clone());
    let mut results = js.get_stream(subjects.results_stream()).await.unwrap();
    let config = results.info().await.unwrap().config.clone();
    // Results have nowhere to go: every publish fails (no stream answers).
    let detached = async_nats::jetstream::stream::Config {
        subjects: vec![format!("{}.detached", h.prefix)],
        ..config.clone()
    };
    js.update_stream(detached).await.unwrap();
    h.workers();
    let job = h.submit_answer(ANN, "low").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    js.update_stream(config).await.unwrap();
    h.wait_all(&[job], Duration::from_secs(60)).await;

    let (status, attempts): (String, i64) = sqlx::query_as(
        "SELECT j.status, (SELECT count(*) FROM attempts a WHERE a.job_id = j.id) FROM jobs j WHERE j.id = $1",
    )
    .bind(job)
    .fetch_one(&h.pool)
    .await
    .unwrap();
    let escalations: Vec<Vec<String>> =
        sqlx::query_scalar("SELECT reasons FROM route_events WHERE job_id = $1 AND event = 'escalate'")
            .bind(job)
            .fetch_all(&h.pool)
            .await
            .unwrap();
    assert!(
        escalations
            .iter()
            .flatten()
            .all(|r| r != "dead_lettered" && r != "timeout"),
        "no escalation caused by the outage: {escalations:?}"
    );
    assert_eq!(status, "succeeded");
    // Each attempt's task was delivered once: the model ran once per attempt.
    let tasks = js.get_stream(subjects.tasks_stream()).await.unwrap();
    let mut delivered = 0;
    for tier in upshift_shared::Tier::ALL {
        let mut c: async_nats::jetstream::consumer::PullConsumer =
            tasks.get_consumer(&subjects.worker_consumer(*tier)).await.unwrap();
        delivered += c.info().await.unwrap().delivered.consumer_sequence;
    }
    assert_eq!(delivered, attempts as u64, "no task redelivered");
    h.finish().await;
}

/// The `_DEAD` stream keeps a max-deliveries advisory raised while no
/// orchestrator runs: the next one to start decides the attempt from it
/// (`dead_lettered`, escalated once) and removes the task.
#[tokio::test]
async fn a_dead_letter_raised_while_no_orchestrator_runs_is_decided_when_one_starts() {
    let mut h = Harness::new(dead_letter_opts()).await;
    let mut orch = h.orchestrator().await;
    let job = h.submit_answer(ANN, "low").await;
    h.published_attempt(job, "small").await;
    orch.child.kill().await.unwrap();
    let subjects = upshift_shared::subjects::Subjects::new(h.prefix.clone());
    let js = async_nats::jetstream::new(h.nats.clone());
    let mut dead = js.get_stream(subjects.dead_stream()).await.unwrap();
    // A small worker dies on the task each time it gets it; after
    // `max_deliver` (2) deliveries JetStream raises the advisory.
    let mut kept = 0;
    for _ in 0..10 {
        let mut child = h.spawn_worker("small", &[("UPSHIFT_FAULT_CRASH_ON", "Ann has")]);
        if tokio::time::timeout(Duration::from_secs(6), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
        kept = dead.info().await.unwrap().state.messages;
        if kept > 0 {
            break;
        }
    }
    assert_eq!(kept, 1, "the advisory waits in the dead-letter stream");
    h.worker("medium");
    let _orch = h.orchestrator().await;
    h.wait_all(&[job], Duration::from_secs(60)).await;
    let events: Vec<(String, Option<String>, Vec<String>)> = sqlx::query_as(
        "SELECT event, from_tier, reasons FROM route_events WHERE job_id = $1 AND event IN ('escalate', 'accept') ORDER BY id",
    )
    .bind(job)
    .fetch_all(&h.pool)
    .await
    .unwrap();
    assert_eq!(
        events,
        [
            (
                "escalate".into(),
                Some("small".into()),
                vec!["dead_lettered".to_string()]
            ),
            ("accept".into(), Some("medium".into()), vec![])
        ]
    );
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters WHERE source = 'max_deliveries'")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(recorded, 1);
    let mut tasks = js.get_stream(subjects.tasks_stream()).await.unwrap();
    assert_eq!(tasks.info().await.unwrap().state.messages, 0, "the task is removed");
    h.finish().await;
}
