//! `upshift bench engine` runs end to end on a small size and prints every
//! figure of its table (the figures themselves are for docs/performance.md,
//! never asserted: timing goals are not tests).

use crate::util::{Harness, Opts};

#[tokio::test]
async fn bench_engine_prints_its_table() {
    let h = Harness::new(Opts::default()).await;
    let (ok, out, err) = h
        .cli(&[
            "bench",
            "engine",
            "--jobs",
            "60",
            "--backlog",
            "40",
            "--floor-ops",
            "200",
        ])
        .await;
    assert!(ok, "{out}\n{err}");
    for line in [
        "jobs/s, steps/s",
        "attempts/s",
        "overhead submit → published",
        "overhead dispatch → worker pull",
        "overhead result → decision",
        "postgres statements per step",
        "postgres transactions per step",
        "bytes per route event row",
        "peak RSS orchestrator-0",
        "orchestrator RSS, 40 queued",
        "floor: JetStream",
        "floor: Postgres",
        "upshift steps/s / slower floor",
    ] {
        assert!(out.contains(line), "missing `{line}` in:\n{out}");
    }
    assert!(!out.contains("NaN"), "{out}");
    h.finish().await;
}
