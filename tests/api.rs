//! Bad input gets a 4xx JSON error naming the problem and writes nothing;
//! a tenant sees only its own jobs.

use crate::util::{Harness, Opts};

fn assert_error(status: u16, body: &serde_json::Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], want_code, "{body}");
    assert!(!body["error"]["message"].as_str().unwrap_or("").is_empty(), "{body}");
}

#[tokio::test]
async fn bad_requests_get_json_errors_and_write_nothing() {
    let mut h = Harness::new(Opts::default()).await;
    let _orch = h.orchestrator().await;
    let post = |b: &'static str| {
        let h = &h;
        async move { h.post_raw("/v1/jobs", b.as_bytes(), &[]).await }
    };
    let (s, b) = post("{not json").await;
    assert_error(s, &b, 400, "malformed_json");
    let (s, b) =
        post(r#"{"kind":"steps","blast_radius":"low","steps":[{"name":"a","task":"poem","input":"x"}]}"#).await;
    assert_error(s, &b, 422, "invalid_field");
    assert_eq!(b["error"]["field"], "steps[0].task", "{b}");
    let (s, b) = post(r#"{"kind":"steps","steps":[{"name":"a","task":"answer","input":"x"}]}"#).await;
    assert_error(s, &b, 422, "invalid_field");
    assert!(b["error"]["message"].as_str().unwrap().contains("blast_radius"), "{b}");
    let (s, b) =
        post(r#"{"kind":"steps","blast_radius":"huge","steps":[{"name":"a","task":"answer","input":"x"}]}"#).await;
    assert_error(s, &b, 422, "invalid_field");
    assert_eq!(b["error"]["field"], "blast_radius");
    let (s, b) = post(r#"{"kind":"steps","blast_radius":"low","colour":1,"steps":[]}"#).await;
    assert_error(s, &b, 422, "invalid_field");
    assert!(b["error"]["message"].as_str().unwrap().contains("colour"), "{b}");
    let (s, b) = post(
        r#"{"kind":"steps","blast_radius":"low","steps":[{"name":"a","task":"answer","input":"x","ambiguity":7}]}"#,
    )
    .await;
    assert_error(s, &b, 422, "invalid_field");
    assert_eq!(b["error"]["field"], "steps[0].ambiguity");
    let (s, b) = post(
        r#"{"kind":"steps","blast_radius":"low","budget_usd":-3,"steps":[{"name":"a","task":"answer","input":"x"}]}"#,
    )
    .await;
    assert_error(s, &b, 422, "invalid_field");
    assert_eq!(b["error"]["field"], "budget_usd");
    // A valid first step and an invalid second one: nothing may be written.
    let (s, b) = post(r#"{"kind":"steps","blast_radius":"low","steps":[{"name":"a","task":"answer","input":"x"},{"name":"b","task":"answer","input":"y","depends_on":["nope"]}]}"#).await;
    assert_error(s, &b, 422, "invalid_field");
    assert_eq!(b["error"]["field"], "steps[1].depends_on");
    let big = format!(
        r#"{{"kind":"steps","blast_radius":"low","steps":[{{"name":"a","task":"answer","input":"{}"}}]}}"#,
        "x".repeat(70_000)
    );
    let (s, b) = h.post_raw("/v1/jobs", big.as_bytes(), &[]).await;
    assert_error(s, &b, 413, "payload_too_large");

    let (s, b) = h.get("/v1/jobs/0190f0c2-0000-7000-8000-000000000000", None).await;
    assert_error(s, &b, 404, "not_found");
    let (s, b) = h.get("/v1/jobs/not-a-uuid/route", None).await;
    assert_error(s, &b, 400, "invalid_id");
    let (s, b) = h.get("/v1/jobs?status=weird", None).await;
    assert_error(s, &b, 422, "invalid_field");

    for table in ["jobs", "steps", "attempts", "route_events"] {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&h.pool)
            .await
            .unwrap();
        assert_eq!(n, 0, "{table} must stay empty after rejected requests");
    }
    h.finish().await;
}

#[tokio::test]
async fn tenants_see_only_their_own_jobs() {
    let a = sha256_hex("key-a");
    let b = sha256_hex("key-b");
    let extra = format!(
        "[[api.keys]]\ntenant = \"a\"\nkey_sha256 = \"{a}\"\n[[api.keys]]\ntenant = \"b\"\nkey_sha256 = \"{b}\"\n"
    );
    let mut h = Harness::new(Opts {
        extra,
        ..Opts::default()
    })
    .await;
    let _orch = h.orchestrator().await;
    let body =
        br#"{"kind":"steps","blast_radius":"low","steps":[{"name":"a","task":"answer","input":"What is 1 + 1?"}]}"#;
    let (s, v) = h.post_raw("/v1/jobs", body, &[]).await;
    assert_error(s, &v, 401, "unauthorized");
    let (s, v) = h.post_raw("/v1/jobs", body, &[("authorization", "Bearer wrong")]).await;
    assert_error(s, &v, 401, "unauthorized");
    let (s, v) = h.post_raw("/v1/jobs", body, &[("authorization", "Bearer key-a")]).await;
    assert_eq!(s, 202, "{v}");
    let id = v["id"].as_str().unwrap();
    let (s, v) = h.get(&format!("/v1/jobs/{id}"), Some("key-a")).await;
    assert_eq!((s, v["tenant"].as_str()), (200, Some("a")));
    let (s, v) = h.get(&format!("/v1/jobs/{id}"), Some("key-b")).await;
    assert_error(s, &v, 404, "not_found");
    let (s, v) = h.get(&format!("/v1/jobs/{id}/route"), Some("key-b")).await;
    assert_error(s, &v, 404, "not_found");
    // An event stream's first read checks the tenant before it starts.
    let (s, v) = h.get(&format!("/v1/jobs/{id}/events"), Some("key-b")).await;
    assert_error(s, &v, 404, "not_found");
    let (_, v) = h.get("/v1/jobs", Some("key-b")).await;
    assert_eq!(v["jobs"].as_array().unwrap().len(), 0);
    let (_, v) = h.get("/v1/jobs", Some("key-a")).await;
    assert_eq!(v["jobs"].as_array().unwrap().len(), 1);
    h.finish().await;
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn an_invalid_config_stops_every_process_at_start_naming_the_key() {
    let h = Harness::new(Opts::default()).await;
    let bad = h.dir.join("bad.toml");
    for (toml, key) in [
        ("[tiers]\nsmall = \"nope\"\n", "tiers.small"),
        ("[nats]\nack_wait_secs = \"soon\"\n", "nats.ack_wait_secs"),
        ("[worker]\ncolour = 1\n", "colour"),
        ("[routing]\nat_top_tier = \"maybe\"\n", "routing.at_top_tier"),
    ] {
        std::fs::write(&bad, toml).unwrap();
        for args in [&["orchestrator"][..], &["worker", "--tier", "small"][..]] {
            let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_upshift"))
                .arg("--config")
                .arg(&bad)
                .args(args)
                .env_remove("UPSHIFT_CONFIG")
                .output()
                .await
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} started with {toml}");
            assert!(
                err.contains("invalid configuration") && err.contains(key),
                "{args:?}: {err}"
            );
        }
    }
    h.finish().await;
}

#[tokio::test]
async fn job_progress_streams_as_server_sent_events() {
    let mut h = Harness::new(Opts::default()).await;
    let _orch = h.orchestrator().await;
    h.workers();
    // Bob's small answer has an arithmetic slip: start, dispatch, escalate, dispatch, accept.
    let id = h
        .submit_answer("Bob packs 5 boxes with 6 pens each. How many pens does he pack?", "low")
        .await;
    let url = format!("{}/v1/jobs/{id}/events", h.api());
    let body = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        reqwest::get(&url).await.unwrap().text().await.unwrap()
    })
    .await
    .expect("the stream ends once the job is done");
    let names: Vec<&str> = body.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(
        names,
        ["start", "dispatch", "escalate", "dispatch", "accept", "done"],
        "{body}"
    );
    assert!(
        body.contains("arithmetic_mismatch") && body.contains("\"status\":\"succeeded\""),
        "{body}"
    );
    // Resuming with Last-Event-ID sends only what came after it.
    let ids: Vec<&str> = body.lines().filter_map(|l| l.strip_prefix("id: ")).collect();
    let resumed = reqwest::Client::new()
        .get(&url)
        .header("last-event-id", ids[2])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let names: Vec<&str> = resumed.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(names, ["dispatch", "accept", "done"], "{resumed}");
    let (code, _) = h.get(&format!("/v1/jobs/{}/events", uuid::Uuid::now_v7()), None).await;
    assert_eq!(code, 404);
    // `upshift submit --wait` follows the same stream.
    let file = h.dir.join("job.json");
    std::fs::write(
        &file,
        r#"{"kind":"steps","blast_radius":"low","steps":[{"name":"solve","task":"answer","input":"Ann has 3 apples and buys 4 more. How many apples does she have now?"}]}"#,
    )
    .unwrap();
    let (ok, out, err) = h.cli(&["submit", "--wait", "--file", file.to_str().unwrap()]).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("solve start") && out.contains("solve accept") && out.contains("\"succeeded\""),
        "{out}"
    );
}
