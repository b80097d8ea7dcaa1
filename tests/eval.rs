//! `upshift eval` and `upshift policy fit` on the fixture dataset, and the
//! promise that the live system routes every item exactly as the offline
//! evaluation does — under the seed policy and under a fitted one.

use crate::util::{Harness, Opts};
use std::path::PathBuf;

/// Fits a policy on `data` for PGR 0.9 into the harness's folder; returns it and the CLI's output.
async fn fit_policy(h: &Harness, data: &str) -> (PathBuf, String) {
    let policy = h.dir.join("policy.toml");
    let out = policy.to_str().unwrap();
    let (ok, stdout, err) = h
        .cli(&["policy", "fit", "--dataset", data, "--target-pgr", "0.9", "--out", out])
        .await;
    assert!(ok, "{err}");
    (policy, stdout)
}

#[tokio::test]
async fn eval_reports_metrics_and_fit_writes_a_loadable_policy() {
    let h = Harness::new(Opts::default()).await;
    let data = Harness::fixture();
    let data = data.to_str().unwrap();
    let (ok, out, err) = h.cli(&["eval", "--dataset", data, "--json"]).await;
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["n"], 44);
    for key in [
        "accuracy",
        "cost_usd",
        "always_strong_cost_usd",
        "cost_ratio",
        "strong_share",
        "pgr",
        "apgr",
    ] {
        assert!(v[key].is_number(), "{key} missing: {v}");
    }
    for b in ["always_weak", "always_strong", "random", "oracle"] {
        assert!(v["baselines"][b]["accuracy"].is_number(), "{b}");
    }
    // The fixture: the small model is wrong on 3 of 44, each caught by a verifier.
    assert_eq!(v["baselines"]["always_weak"]["accuracy"].as_f64().unwrap(), 41.0 / 44.0);
    assert_eq!(v["accuracy"].as_f64().unwrap(), 1.0);
    let class = &v["classes"][0];
    assert_eq!(class["task_class"], "replay");
    assert_eq!(class["reasons"]["arithmetic_mismatch"], 3, "{class}");

    let (policy, out) = fit_policy(&h, data).await;
    assert!(out.contains("cv_apgr"), "{out}");
    let text = std::fs::read_to_string(&policy).unwrap();
    assert!(
        text.contains("[[routing.accept_models]]") && text.contains("strong_weights"),
        "{text}"
    );
    // The fitted file loads as configuration and evaluates.
    let svg = h.dir.join("curve.svg");
    let (ok, out, err) = h
        .cli(&[
            "eval",
            "--dataset",
            data,
            "--policy",
            policy.to_str().unwrap(),
            "--plot",
            svg.to_str().unwrap(),
        ])
        .await;
    assert!(ok, "{err}");
    assert!(out.contains("APGR") && out.contains("fit-replay-pgr0.9"), "{out}");
    let svg = std::fs::read_to_string(svg).unwrap();
    assert!(svg.contains("<svg") && svg.contains("always-strong") && svg.contains("policy operating curve"));

    let (ok, _, err) = h.cli(&["eval", "--dataset", "/nonexistent.csv"]).await;
    assert!(!ok && err.contains("nonexistent.csv"), "{err}");
    h.finish().await;
}

#[tokio::test]
async fn live_routes_equal_offline_routes() {
    let mut h = Harness::new(Opts::default()).await;
    let data = Harness::fixture();
    let data = data.to_str().unwrap();
    let mut orch = h.orchestrator().await;
    h.workers();
    let (ok, out, err) = h.cli(&["eval", "--live", "--dataset", data]).await;
    assert!(ok, "seed policy: {out}\n{err}");
    assert!(out.contains("44 identical routes, 0 mismatches"), "{out}");

    // Fit a policy, hand it to the orchestrator, and compare again.
    let (policy, _) = fit_policy(&h, data).await;
    let mut config = std::fs::read_to_string(&h.config).unwrap();
    config.push_str(&std::fs::read_to_string(&policy).unwrap());
    std::fs::write(&h.config, config).unwrap();
    orch.child.start_kill().unwrap();
    orch.child.wait().await.unwrap();
    let _orch = h.orchestrator().await;
    let (ok, out, err) = h.cli(&["eval", "--live", "--dataset", data]).await;
    assert!(ok, "fitted policy: {out}\n{err}");
    assert!(out.contains("44 identical routes, 0 mismatches"), "{out}");
    let version: i64 =
        sqlx::query_scalar("SELECT count(*) FROM route_events WHERE policy_version = 'fit-replay-pgr0.9'")
            .fetch_one(&h.pool)
            .await
            .unwrap();
    assert!(version > 0, "the live decisions were taken by the fitted policy");
    h.finish().await;
}
