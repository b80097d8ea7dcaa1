//! Prometheus metrics: the orchestrator's `/metrics` counts decisions,
//! escalations by reason, cost and latencies; a worker with `worker.listen`
//! serves its own `/metrics` and `/readyz`.

use crate::util::{Harness, Opts};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

const ANN: &str = "Ann has 3 apples and buys 4 more. How many apples does she have now?";
const BOB: &str = "Bob packs 5 boxes with 6 pens each. How many pens does he pack?";

async fn text(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn orchestrator_and_worker_expose_prometheus_metrics() {
    let mut h = Harness::new(Opts::default()).await;
    let orch = h.orchestrator_with(&[("UPSHIFT_API__OPS_LISTEN", "127.0.0.1:0")]).await;
    h.worker("medium");
    let mut cmd = h.command(&["worker", "--tier", "small"], "worker-small-metrics.log");
    cmd.env("UPSHIFT_WORKER__LISTEN", "127.0.0.1:0").stdout(Stdio::piped());
    let mut small = cmd.spawn().unwrap();
    let mut lines = BufReader::new(small.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let l = lines.next_line().await.unwrap().expect("worker exited");
            if let Some(a) = l.strip_prefix("UPSHIFT_LISTENING ") {
                return a.to_string();
            }
        }
    })
    .await
    .unwrap();

    let ids = [h.submit_answer(ANN, "low").await, h.submit_answer(BOB, "low").await];
    h.wait_all(&ids, Duration::from_secs(30)).await;

    // Metrics name every tenant: on the operations listener, not the API.
    let (status, _) = text(&format!("{}/metrics", orch.api)).await;
    assert_eq!(status, 404);
    let (status, m) = text(&format!("{}/metrics", orch.ops.as_deref().unwrap())).await;
    assert_eq!(status, 200);
    for needle in [
        r#"upshift_jobs_submitted_total{tenant="default"} 2"#,
        r#"decision="escalate""#,
        r#"upshift_escalations_total{tier="small",reason="arithmetic_mismatch",task_type="answer"} 1"#,
        "upshift_cost_microusd_total{",
        "upshift_model_call_seconds_bucket{",
        "upshift_decision_seconds_bucket{",
    ] {
        assert!(m.contains(needle), "missing {needle} in:\n{m}");
    }
    let (status, w) = text(&format!("http://{addr}/metrics")).await;
    assert_eq!(status, 200);
    assert!(
        w.contains(r#"upshift_worker_calls_total{tier="small",model="fx-small",outcome="answered"} 2"#),
        "{w}"
    );
    assert!(w.contains("upshift_worker_model_call_seconds_bucket{"), "{w}");
    let (status, body) = text(&format!("http://{addr}/readyz")).await;
    assert_eq!((status, body.as_str()), (200, "ready"));
    let _ = small.kill().await;
    h.finish().await;
}
