//! The HTTP server's limits against slow and greedy clients: a client that
//! dribbles its headers is cut off, one that dribbles its body gets 408
//! JSON, and requests beyond the in-flight cap get 503 with Retry-After.

use crate::util::{Harness, Opts, eventually, key_of};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads what the server sends until it closes the connection (at most 10 s).
async fn read_to_close(sock: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut out))
        .await
        .expect("the server kept the connection open");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn slow_clients_are_cut_off_and_excess_requests_refused() {
    let mut h = Harness::new(Opts {
        api_extra: "header_read_timeout_secs = 1\nrequest_timeout_secs = 2\nmax_concurrent_requests = 1".into(),
        ..Opts::default()
    })
    .await;
    let orch = h.orchestrator().await;
    let addr = orch.api.trim_start_matches("http://").to_string();

    // Headers dribbled one line a second, for ever: closed after ~1 s.
    let mut sock = TcpStream::connect(&addr).await.unwrap();
    sock.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = Instant::now();
    let dribble = async {
        for i in 0.. {
            if sock.write_all(format!("X-Slow-{i}: y\r\n").as_bytes()).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            if started.elapsed() > Duration::from_secs(10) {
                panic!("the server still reads headers after 10 s");
            }
        }
    };
    dribble.await;
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

    // A body that never completes: 408 JSON once the request timeout passes,
    // and meanwhile it holds the only slot, so another request gets 503.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(
        b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"kind\":",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, body) = h.get("/v1/jobs", None).await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["error"]["code"], "overloaded");
    // The probes are outside the cap: a held slot never fails a health check.
    for probe in ["/healthz", "/readyz"] {
        let (code, body) = h.get(probe, None).await;
        assert_eq!(code, 200, "{probe}: {body}");
    }
    let started = Instant::now();
    let reply = async {
        let mut buf = vec![0u8; 4096];
        let n = slow.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let reply = tokio::time::timeout(Duration::from_secs(10), reply)
        .await
        .expect("no answer to the slow body");
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("\"request_timeout\""), "{reply}");
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(slow);

    // The slot is free again; a plain request is served, and nothing was
    // written by the cut-off submit.
    let (code, body) = h.get("/v1/jobs", None).await;
    assert_eq!(code, 200, "{body}");
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(jobs, 0);
    let mut sock = TcpStream::connect(&addr).await.unwrap();
    sock.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert!(read_to_close(&mut sock).await.starts_with("HTTP/1.1 200"));
    h.finish().await;
}

/// One tenant cannot flood the tiers: past its submit rate (checked before
/// the body is read) or its jobs in flight it gets 429 JSON with
/// Retry-After and nothing is written; a job
/// that names no budget gets the default one.
#[tokio::test]
async fn a_tenant_past_its_rate_or_jobs_in_flight_gets_429() {
    let mut h = Harness::new(Opts {
        extra: "[limits]\nsubmit_per_sec = 1\nsubmit_burst = 2\nmax_jobs_in_flight = 3\n".into(),
        ..Opts::default()
    })
    .await;
    let orch = h.orchestrator().await;
    // No workers: every accepted job stays running.
    let job = serde_json::json!({"kind": "steps", "blast_radius": "low",
        "steps": [{"name": "a", "task": "answer", "input": "What is 2 + 2?"}]})
    .to_string();
    let submit = || async {
        let resp = reqwest::Client::new()
            .post(format!("{}/v1/jobs", orch.api))
            .header("content-type", "application/json")
            .body(job.clone())
            .send()
            .await
            .unwrap();
        let retry = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.json().await.unwrap();
        (status, body["error"]["code"].as_str().map(str::to_string), retry)
    };
    // The burst of two, then the rate.
    assert_eq!(submit().await.0, 202);
    assert_eq!(submit().await.0, 202);
    let (status, code, retry) = submit().await;
    assert_eq!((status, code.as_deref()), (429, Some("rate_limited")));
    assert!(retry.is_some_and(|r| r.parse::<u64>().unwrap() >= 1));
    // The rate is checked before the body is read: a submission whose body
    // never arrives is refused at once, not after the request timeout.
    let mut sock = TcpStream::connect(orch.api.trim_start_matches("http://"))
        .await
        .unwrap();
    sock.write_all(
        b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
    )
    .await
    .unwrap();
    let mut head = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(3), sock.read(&mut head))
        .await
        .expect("refused before its body arrived")
        .unwrap();
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 429"), "{head}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(submit().await.0, 202);
    // Three running: the fourth waits for one to finish, whatever the rate.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, code, retry) = submit().await;
    assert_eq!(
        (status, code.as_deref(), retry.as_deref()),
        (429, Some("too_many_jobs"), Some("1"))
    );
    let (jobs, budgets): (i64, Vec<f64>) = (
        sqlx::query_scalar("SELECT count(*) FROM jobs")
            .fetch_one(&h.pool)
            .await
            .unwrap(),
        sqlx::query_scalar("SELECT budget_usd FROM jobs")
            .fetch_all(&h.pool)
            .await
            .unwrap(),
    );
    assert_eq!(jobs, 3, "refused submits write nothing");
    assert!(budgets.iter().all(|b| *b == 1.0), "the default budget: {budgets:?}");
    // Once the jobs finish, the tenant may submit again.
    h.workers();
    let pool = h.pool.clone();
    crate::util::eventually(Duration::from_secs(30), || {
        let pool = pool.clone();
        async move {
            let running: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE status = 'running'")
                .fetch_one(&pool)
                .await
                .ok()?;
            (running == 0).then_some(())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(submit().await.0, 202);
    h.finish().await;
}

/// Event streams are capped per tenant and end after their lifetime; a
/// client resumes with Last-Event-ID and loses nothing.
#[tokio::test]
async fn event_streams_are_capped_per_tenant_and_end_after_their_lifetime() {
    let mut h = Harness::new(Opts {
        api_extra: "max_streams_per_tenant = 1\nstream_max_secs = 2".into(),
        ..Opts::default()
    })
    .await;
    let orch = h.orchestrator().await;
    // No workers: the job keeps running, so its stream stays open.
    let job = h.submit_answer("What is 2 + 2?", "low").await;
    let url = format!("{}/v1/jobs/{job}/events", orch.api);
    let first = reqwest::get(&url).await.unwrap();
    assert_eq!(first.status(), 200);
    // It reads through the streams' own pool, never the decisions' one.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let readers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'upshift-streams'",
    )
    .fetch_one(&h.pool)
    .await
    .unwrap();
    assert!((1..=2).contains(&readers), "{readers} stream connections");
    let second = reqwest::get(&url).await.unwrap();
    assert_eq!(second.status(), 429);
    assert!(second.headers().contains_key("retry-after"));
    let body: serde_json::Value = second.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_streams");
    // The cap comes first: at it, even an unknown job costs no read.
    let unknown = format!("{}/v1/jobs/{}/events", h.api(), uuid::Uuid::now_v7());
    assert_eq!(reqwest::get(&unknown).await.unwrap().status(), 429);
    // The first ends after its lifetime, without `done`, having sent the
    // route so far (each event with its id, to resume from).
    let started = Instant::now();
    let text = tokio::time::timeout(Duration::from_secs(10), first.text())
        .await
        .expect("the stream outlived its lifetime")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        text.contains("event: start") && text.contains("id: ") && !text.contains("event: done"),
        "{text}"
    );
    // Its place is free again; the job finishes and a new stream says so.
    h.workers();
    h.wait_all(&[job], Duration::from_secs(30)).await;
    let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
    assert!(text.contains("event: done"), "{text}");
    h.finish().await;
}

/// Every section of the configuration is settable from the environment
/// (the sections are the config's own fields, so none is forgotten, [limits]
/// included), and a variable naming no section is refused with its name.
#[tokio::test]
async fn every_config_section_is_settable_from_the_environment() {
    let run = |env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_upshift"));
        cmd.arg("config").env_remove("UPSHIFT_CONFIG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let env = [
        ("UPSHIFT_NATS__PREFIX", "fromenv"),
        ("UPSHIFT_DATABASE__MAX_CONNECTIONS", "3"),
        ("UPSHIFT_API__MAX_STREAMS_PER_TENANT", "7"),
        ("UPSHIFT_ORCHESTRATOR__RESULT_BATCH", "9"),
        ("UPSHIFT_WORKER__CONCURRENCY", "5"),
        ("UPSHIFT_TIERS__SMALL", "gemma3-270m"),
        ("UPSHIFT_ROUTING__POLICY_VERSION", "env-1"),
        ("UPSHIFT_RAG__PASSAGES", "6"),
        ("UPSHIFT_LIMITS__MAX_JOBS_IN_FLIGHT", "255"),
    ];
    let out = run(&env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["nats"]["prefix"], "fromenv");
    assert_eq!(v["database"]["max_connections"], 3);
    assert_eq!(v["api"]["max_streams_per_tenant"], 7);
    assert_eq!(v["orchestrator"]["result_batch"], 9);
    assert_eq!(v["worker"]["concurrency"], 5);
    assert_eq!(v["tiers"]["small"], "gemma3-270m");
    assert_eq!(v["routing"]["policy_version"], "env-1");
    assert_eq!(v["rag"]["passages"], 6);
    assert_eq!(v["limits"]["max_jobs_in_flight"], 255);
    let out = run(&[("UPSHIFT_LIMIT__MAX_JOBS_IN_FLIGHT", "255")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("UPSHIFT_LIMIT__MAX_JOBS_IN_FLIGHT") && err.contains("no configuration section"),
        "{err}"
    );
}

/// One credential cannot take the whole request cap: past its share it gets
/// 429, while another credential is still served.
#[tokio::test]
async fn one_key_holds_at_most_its_share_of_the_request_cap() {
    let mut h = Harness::new(Opts {
        api_extra: "request_timeout_secs = 3\nmax_concurrent_requests = 8\nmax_concurrent_per_key = 1".into(),
        ..Opts::default()
    })
    .await;
    let orch = h.orchestrator().await;
    let addr = orch.api.trim_start_matches("http://").to_string();
    // A key-less body that never completes holds the key-less share. On a
    // loaded machine the probe below can reach the server first (then the
    // slow one is the one refused): try again until the slow one holds it.
    let mut held = None;
    for _ in 0..20 {
        let mut slow = TcpStream::connect(&addr).await.unwrap();
        slow.write_all(
            b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"kind\":",
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (code, body) = h.get("/v1/jobs", None).await;
        if code == 429 {
            held = Some((slow, body));
            break;
        }
    }
    let (slow, body) = held.expect("a slow key-less request held the key-less share");
    assert_eq!(body["error"]["code"], "too_many_in_flight");
    // Another credential has its own share (what it is then told is the
    // key check's business, not the cap's).
    let (code, body) = h.get("/v1/jobs", Some("another-key")).await;
    assert_ne!(code, 429, "{body}");
    drop(slow);
    h.finish().await;
}

/// Decisions never wait for streams: with every stream stuck in Postgres
/// (twenty streams' key lookups held by a lock on `api_keys`, which no
/// decision reads), jobs are still decided. Streams read through a pool of
/// their own; on the decisions' pool (5 connections here) the stuck streams
/// would hold every connection and no result could be decided.
#[tokio::test]
async fn decisions_never_wait_for_streams_stuck_in_postgres() {
    let mut h = Harness::new(Opts {
        api_extra: "stream_db_connections = 1\nmax_streams_per_tenant = 64".into(),
        ..Opts::default()
    })
    .await;
    let (ok, out, err) = h.cli(&["keys", "create", "--tenant", "acme"]).await;
    assert!(ok, "{err}");
    let (_, key) = key_of(&out);
    let bearer = format!("Bearer {key}");
    let orch = h.orchestrator().await;
    let body = r#"{"kind":"steps","blast_radius":"low","steps":[{"name":"a","task":"answer","input":"Bob packs 5 boxes with 6 pens each. How many pens does he pack?"}]}"#;
    let mut jobs = Vec::new();
    for _ in 0..3 {
        let (s, v) = h
            .post_raw("/v1/jobs", body.as_bytes(), &[("authorization", &bearer)])
            .await;
        assert_eq!(s, 202, "{v}");
        jobs.push(v["id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap());
    }

    // Every key lookup now waits for the lock.
    let mut lock = h.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let streams: Vec<_> = (0..20)
        .map(|i| {
            let req = client
                .get(format!("{}/v1/jobs/{}/events", orch.api, jobs[i % jobs.len()]))
                .bearer_auth(&key);
            tokio::spawn(async move { req.send().await.unwrap().text().await.unwrap() })
        })
        .collect();
    // The connections waiting for the lock, by application name.
    let stuck = "SELECT application_name FROM pg_stat_activity WHERE datname = current_database() \
                 AND wait_event_type = 'Lock' AND query LIKE '%api_keys%'";
    let pool = h.pool.clone();
    eventually(Duration::from_secs(10), || {
        let pool = pool.clone();
        async move {
            let names: Vec<String> = sqlx::query_scalar(stuck).fetch_all(&pool).await.ok()?;
            (!names.is_empty()).then_some(())
        }
    })
    .await;

    // The workers start; the three jobs are decided while the streams wait.
    h.workers();
    h.wait_all(&jobs, Duration::from_secs(30)).await;
    let done: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE id = ANY($1) AND status = 'succeeded'")
        .bind(&jobs)
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(done, 3);
    let stuck: Vec<String> = sqlx::query_scalar(stuck).fetch_all(&h.pool).await.unwrap();
    assert!(
        !stuck.is_empty() && stuck.iter().all(|a| a == "upshift-streams"),
        "the streams were still stuck, on their own pool, while the jobs were decided: {stuck:?}"
    );

    // Released, every stream is served, each to its job's end.
    lock.rollback().await.unwrap();
    for s in streams {
        let text = tokio::time::timeout(Duration::from_secs(20), s)
            .await
            .expect("a stream never finished")
            .unwrap();
        assert!(text.contains("event: done"), "{text}");
    }
    h.finish().await;
}
