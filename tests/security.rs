//! Security: keys issued by `upshift keys create` are stored hashed and map
//! to tenants; secrets never reach logs or error bodies; a budget stops an
//! escalation it cannot pay for.

use crate::util::{Harness, Opts, key_of};
use std::time::Duration;

const BOB: &str = "Bob packs 5 boxes with 6 pens each. How many pens does he pack?";

#[tokio::test]
async fn issued_keys_are_hashed_scoped_revocable_and_never_logged() {
    let mut h = Harness::new(Opts {
        log: "debug,hyper=info,h2=info",
        ..Opts::default()
    })
    .await;
    // A database password in the URL: it must not show up in any log.
    let password = "s3cret-db-pass";
    let config = std::fs::read_to_string(&h.config).unwrap();
    let with_password = config.replace("postgres://postgres@", &format!("postgres://postgres:{password}@"));
    std::fs::write(&h.config, with_password).unwrap();

    let (ok, out, err) = h.cli(&["keys", "create", "--tenant", "acme"]).await;
    assert!(ok, "{err}");
    let (key_id, key) = key_of(&out);
    assert!(key.starts_with("ups_") && key.len() > 60, "{key}");
    let (ok, out, _) = h.cli(&["keys", "create", "--tenant", "globex"]).await;
    assert!(ok);
    let (_, other) = key_of(&out);
    let stored: Vec<String> = sqlx::query_scalar("SELECT key_sha256 FROM api_keys")
        .fetch_all(&h.pool)
        .await
        .unwrap();
    assert_eq!(stored.len(), 2);
    assert!(
        stored.iter().all(|s| s.len() == 64 && !s.contains(&key)),
        "only digests are stored"
    );

    h.worker("small");
    h.worker("medium");
    let _orch = h.orchestrator().await;
    let body =
        format!(r#"{{"kind":"steps","blast_radius":"low","steps":[{{"name":"a","task":"answer","input":"{BOB}"}}]}}"#);
    let (s, v) = h.post_raw("/v1/jobs", body.as_bytes(), &[]).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("unauthorized")),
        "keys exist, so auth is required"
    );
    let bearer = format!("Bearer {key}");
    let (s, v) = h
        .post_raw("/v1/jobs", body.as_bytes(), &[("authorization", &bearer)])
        .await;
    assert_eq!(s, 202, "{v}");
    let id: uuid::Uuid = v["id"].as_str().unwrap().parse().unwrap();
    h.wait_all(&[id], Duration::from_secs(30)).await;
    let (s, v) = h.get(&format!("/v1/jobs/{id}"), Some(&key)).await;
    assert_eq!((s, v["tenant"].as_str()), (200, Some("acme")));
    let (s, v) = h.get(&format!("/v1/jobs/{id}/route"), Some(&other)).await;
    assert_eq!(s, 404, "another tenant's job does not exist for globex: {v}");
    let (s, v) = h.get("/v1/jobs/not-a-uuid", Some(&format!("{key}x"))).await;
    assert_eq!(s, 401);
    assert!(!v.to_string().contains(&key), "error bodies never echo the key");

    let (ok, _, err) = h.cli(&["keys", "revoke", &key_id]).await;
    assert!(ok, "{err}");
    let (s, _) = h.get(&format!("/v1/jobs/{id}"), Some(&key)).await;
    assert_eq!(s, 401, "a revoked key is refused");
    // Revoking the last key never opens the API again.
    let other_id: String = sqlx::query_scalar("SELECT id::text FROM api_keys WHERE revoked_at IS NULL")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    let (ok, _, err) = h.cli(&["keys", "revoke", &other_id]).await;
    assert!(ok, "{err}");
    let (s, v) = h.get("/v1/jobs", None).await;
    assert_eq!(s, 401, "no key at all, after every key was revoked: {v}");

    // Every log line written so far, at debug level, is free of secrets.
    let mut logs = String::new();
    for entry in std::fs::read_dir(&h.dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            logs.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
    assert!(logs.len() > 1000, "the processes logged ({} bytes)", logs.len());
    for secret in [key.as_str(), other.as_str(), password] {
        assert!(!logs.contains(secret), "a secret reached the logs");
    }
    h.finish().await;
}

#[tokio::test]
async fn a_budget_that_cannot_pay_for_the_escalation_stops_it() {
    let mut h = Harness::new(Opts::default()).await;
    let _orch = h.orchestrator().await;
    h.workers();
    // The small call costs ~$0.0000056 and the medium one ~$0.000056: the budget covers only the first.
    let body = format!(
        r#"{{"kind":"steps","blast_radius":"low","budget_usd":0.00002,"steps":[{{"name":"a","task":"answer","input":"{BOB}"}}]}}"#
    );
    let (s, v) = h.post_raw("/v1/jobs", body.as_bytes(), &[]).await;
    assert_eq!(s, 202, "{v}");
    let id: uuid::Uuid = v["id"].as_str().unwrap().parse().unwrap();
    h.wait_all(&[id], Duration::from_secs(30)).await;
    let decisions: Vec<(String, Vec<String>)> = sqlx::query_as(
        "SELECT event, reasons FROM route_events WHERE job_id = $1 AND event IN ('accept', 'unresolved', 'escalate', 'fail') ORDER BY id",
    )
    .bind(id)
    .fetch_all(&h.pool)
    .await
    .unwrap();
    assert_eq!(decisions.len(), 1, "no escalation: {decisions:?}");
    // The budget ran out before the answer could be defended: unresolved, not accepted.
    assert_eq!(decisions[0].0, "unresolved");
    let status: String = sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(status, "unresolved");
    assert!(
        decisions[0].1.contains(&"budget_exhausted".to_string()),
        "{decisions:?}"
    );
    assert!(
        decisions[0].1.contains(&"arithmetic_mismatch".to_string()),
        "the open finding stays attached"
    );
    let (cost, budget): (f64, f64) = sqlx::query_as("SELECT cost_usd, budget_usd FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert!(cost <= budget, "spent {cost} of {budget}");
    h.finish().await;
}

/// Runs an orchestrator that must refuse to start; returns its log.
async fn refused(h: &Harness, env: &[(&str, &str)]) -> String {
    let mut cmd = h.command(&["orchestrator"], "refused.log");
    cmd.envs(env.iter().copied()).stdout(std::process::Stdio::null());
    let status = tokio::time::timeout(Duration::from_secs(60), cmd.status())
        .await
        .expect("the orchestrator kept running")
        .unwrap();
    assert!(!status.success());
    std::fs::read_to_string(h.dir.join("refused.log")).unwrap()
}

/// Key-less requests never reach the network by accident: the orchestrator
/// refuses a non-loopback address with no key; a key from an environment
/// variable (a Kubernetes Secret) opens it for that key only; anonymous
/// access is an explicit setting.
#[tokio::test]
async fn the_api_is_never_open_to_the_network_by_accident() {
    let mut h = Harness::new(Opts {
        extra: "[[api.keys]]\ntenant = \"ops\"\nkey_env = \"UPSHIFT_TEST_API_KEY\"\n".into(),
        ..Opts::default()
    })
    .await;
    // The key's variable is missing: a config error naming the key.
    let log = refused(&h, &[]).await;
    assert!(
        log.contains("api.keys[0].key_env") && log.contains("UPSHIFT_TEST_API_KEY"),
        "{log}"
    );
    // No key at all, on every interface: refused, naming the ways out.
    let config = std::fs::read_to_string(&h.config).unwrap();
    let keyless = config.replace(
        "[[api.keys]]\ntenant = \"ops\"\nkey_env = \"UPSHIFT_TEST_API_KEY\"\n",
        "",
    );
    std::fs::write(&h.config, &keyless).unwrap();
    let log = refused(&h, &[("UPSHIFT_API__LISTEN", "0.0.0.0:0")]).await;
    assert!(
        log.contains("api.listen") && log.contains("api.anonymous = true"),
        "{log}"
    );

    // With the key in its variable the API listens on every interface, for
    // that key only.
    std::fs::write(&h.config, &config).unwrap();
    let orch = h
        .orchestrator_with(&[
            ("UPSHIFT_API__LISTEN", "0.0.0.0:0"),
            ("UPSHIFT_TEST_API_KEY", "test-key-from-a-secret"),
        ])
        .await;
    let port = orch.api.rsplit(':').next().unwrap().to_string();
    h.api = Some(format!("http://127.0.0.1:{port}"));
    let (s, _) = h.get("/v1/jobs", None).await;
    assert_eq!(s, 401);
    let (s, v) = h.get("/v1/jobs", Some("test-key-from-a-secret")).await;
    assert_eq!(s, 200, "{v}");
    drop(orch);

    // Anonymous access on every interface is possible, but only when asked for.
    std::fs::write(&h.config, keyless.replace("[api]\n", "[api]\nanonymous = true\n")).unwrap();
    let _orch = h.orchestrator_with(&[("UPSHIFT_API__LISTEN", "0.0.0.0:0")]).await;
    let (s, v) = h.get("/v1/jobs", None).await;
    assert_eq!(s, 200, "{v}");
    h.finish().await;
}

#[tokio::test]
async fn a_key_issued_to_a_keyless_stack_is_required_within_a_second() {
    // Loopback, no key configured or issued: key-less requests are served.
    let mut h = Harness::new(Opts::default()).await;
    let _orch = h.orchestrator().await;
    let (s, v) = h.get("/v1/jobs", None).await;
    assert_eq!(s, 200, "{v}");
    let (ok, out, err) = h.cli(&["keys", "create", "--tenant", "acme"]).await;
    assert!(ok, "{err}");
    let (_, key) = key_of(&out);
    // The API re-reads whether keys exist at most once a second.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (s, v) = h.get("/v1/jobs", None).await;
    assert_eq!(s, 401, "a key now exists, so a request needs one: {v}");
    let (s, v) = h.get("/v1/jobs", Some(&key)).await;
    assert_eq!(s, 200, "{v}");
    h.finish().await;
}
