//! The route viewer in a real headless Chromium (Debian's `chromium`): the
//! rendered DOM of the job page shows the attempts by tier, the escalation
//! with its reason, costs and the answer; the list and summary pages show the
//! job and the reasons.

use crate::util::{Harness, Opts};
use std::time::Duration;

const BOB: &str = "Bob packs 5 boxes with 6 pens each. How many pens does he pack?";

/// The DOM of `url` after Chromium rendered it.
async fn rendered(url: &str, profile: &std::path::Path) -> String {
    let out = tokio::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", url])
        .output()
        .await
        .unwrap_or_else(|e| panic!("chromium is not installed ({e}); install it with: apt-get install -y chromium"));
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn the_route_viewer_shows_why_a_step_escalated() {
    let mut h = Harness::new(Opts::default()).await;
    let orch = h.orchestrator().await;
    h.workers();
    let job = h.submit_answer(BOB, "low").await;
    h.wait_all(&[job], Duration::from_secs(30)).await;
    let profile = h.dir.join("chromium");

    let page = rendered(&format!("{}/ui/jobs/{job}", orch.api), &profile).await;
    assert!(page.contains(&format!("Job {job}")), "{page}");
    assert!(
        page.contains("class=\"box tier-small\"") && page.contains("class=\"box tier-medium\""),
        "{page}"
    );
    let arrow = page
        .find("class=\"arrow\"><b>→</b>arithmetic_mismatch")
        .expect("an escalation arrow labelled with its reason");
    let (small, medium) = (
        page.find("class=\"box tier-small\"").unwrap(),
        page.find("class=\"box tier-medium\"").unwrap(),
    );
    assert!(small < arrow && arrow < medium, "small → medium in order");
    assert!(
        page.contains("fx-small") && page.contains("fx-medium") && page.contains("$0.00"),
        "models and costs"
    );
    assert!(page.contains("#### 30"), "the accepted answer");

    let list = rendered(&format!("{}/ui?status=succeeded", orch.api), &profile).await;
    assert!(list.contains(&format!("/ui/jobs/{job}")), "{list}");
    let summary = rendered(&format!("{}/ui/summary", orch.api), &profile).await;
    assert!(
        summary.contains("arithmetic_mismatch") && summary.contains("always-strong"),
        "{summary}"
    );
    h.finish().await;
}
