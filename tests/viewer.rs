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

#[tokio::test]
async fn the_route_viewer_shows_a_rag_jobs_evidence_as_a_person_reads_it() {
    let (h, orch) = crate::rag::widgets_stack("").await;
    let (job, v) = crate::rag::asked(&h, crate::rag::LIMIT_Q).await;
    assert_eq!(
        v["status"], "unresolved",
        "the shipped fit defends nothing alone: {v:#}"
    );
    let page = rendered(&format!("{}/ui/jobs/{job}", orch.api), &h.dir.join("chromium")).await;
    // The passages as a table with their titles, pages and scores, not the
    // retrieve step's JSON.
    let passages = page.find("<b>Passages</b>").expect("a passages table");
    assert!(
        page[passages..].contains("Widget limits") && page.contains("widgets-a.html"),
        "{page}"
    );
    assert!(!page.contains("\"passage_id\""), "no raw retrieval JSON: {page}");
    // Tier zero's judgement: the answer, its score against the threshold,
    // the bound the threshold was fitted to, the features that decided, the
    // candidates.
    let judged = page.find("Tier zero's judgement").expect("tier zero's judgement");
    let judgement = &page[judged..];
    assert!(judgement.contains("<q>max_widgets</q>"), "{judgement}");
    assert!(
        judgement.contains("against threshold") && judgement.contains("the fit found none"),
        "{judgement}"
    );
    assert!(judgement.contains("no threshold keeps false-defended"), "{judgement}");
    assert!(
        judgement.contains("adds to log-odds") && judgement.contains("intercept"),
        "{judgement}"
    );
    assert!(
        judgement.contains("candidates (") && judgement.contains("<code>max_widgets</code>"),
        "{judgement}"
    );
    h.finish().await;
}

#[tokio::test]
async fn the_job_list_counts_attempts_by_index_at_100k_jobs() {
    let mut h = Harness::new(Opts::default()).await;
    // Its start migrates the schema.
    let _orch = h.orchestrator().await;
    // 100,000 jobs of 50 tenants, one step and two attempts each.
    for sql in [
        "INSERT INTO jobs (id, tenant, kind, input, blast_radius, status, created_at)
         SELECT gen_random_uuid(), 't' || (g % 50), 'steps', '{}', 'low', 'succeeded',
                now() - make_interval(secs => g)
         FROM generate_series(1, 100000) g",
        "INSERT INTO steps (id, job_id, idx, name, task_type, task_class, input, verifiers, ambiguity,
                            ambiguity_source, state)
         SELECT gen_random_uuid(), id, 0, 's', 'classify', 'classify', 'x', '{}', 0.1, 'request', 'accepted'
         FROM jobs",
        "INSERT INTO attempts (id, step_id, job_id, tier, model, status, deadline)
         SELECT gen_random_uuid(), s.id, s.job_id, 'small', 'm', 'answered', now()
         FROM steps s, generate_series(1, 2)",
        "ANALYZE",
    ] {
        sqlx::query(sql).execute(&h.pool).await.unwrap();
    }
    // The list's own statement, planned by Postgres for these parameters.
    let plan = upshift_orchestrator::store::PgStore::for_reports(&h.db_url)
        .unwrap()
        .job_list_plan("t7", None, 8760)
        .await
        .unwrap();
    fn scans(node: &serde_json::Value, out: &mut Vec<(String, String)>) {
        if let (Some(t), Some(r)) = (node["Node Type"].as_str(), node["Relation Name"].as_str()) {
            out.push((t.to_string(), r.to_string()));
        }
        for child in node["Plans"].as_array().into_iter().flatten() {
            scans(child, out);
        }
    }
    let mut seen = Vec::new();
    scans(&plan[0]["Plan"], &mut seen);
    let on_attempts: Vec<&String> = seen.iter().filter(|(_, r)| r == "attempts").map(|(t, _)| t).collect();
    assert!(!on_attempts.is_empty(), "{plan:#}");
    assert!(
        on_attempts.iter().all(|t| t.as_str() != "Seq Scan"),
        "attempts scanned whole: {plan:#}"
    );
    h.finish().await;
}
