//! One trace per job, across the queue: the orchestrator and the workers run
//! in this process with an in-memory OpenTelemetry exporter, and the test
//! follows the parent links from the API span through NATS to the worker's
//! model call and back to the decision.

use crate::util::{Harness, Opts};
use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt;
use upshift_shared::Tier;
use upshift_shared::config::Config;

/// Bob's recorded small answer has an arithmetic slip, so the step is
/// escalated once: two attempts, two hops across NATS.
const BOB: &str = "Bob packs 5 boxes with 6 pens each. How many pens does he pack?";

fn attr(s: &SpanData, key: &str) -> Option<String> {
    s.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

#[tokio::test(flavor = "current_thread")]
async fn one_trace_per_job_across_the_queue() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    // Every task of this current-thread runtime runs on this thread.
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut h = Harness::new(Opts::default()).await;
    let cfg = Config::load(Some(&h.config)).unwrap();
    let cancel = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(upshift_orchestrator::run(cfg.clone(), cancel.clone(), move |bound| {
        let _ = tx.send(bound.api);
    }));
    let addr = tokio::time::timeout(Duration::from_secs(30), rx)
        .await
        .unwrap()
        .unwrap();
    h.api = Some(format!("http://{addr}"));
    for tier in Tier::ALL {
        let (cfg, stop) = (cfg.clone(), cancel.clone());
        tokio::spawn(async move { upshift_worker::pool::run(&cfg, *tier, stop.clone(), stop).await });
    }
    let job = h.submit_answer(BOB, "low").await;
    h.wait_all(&[job], Duration::from_secs(60)).await;
    cancel.cancel();
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let job_id = job.to_string();
    let of_job: Vec<&SpanData> = spans
        .iter()
        .filter(|s| attr(s, "job").as_deref() == Some(job_id.as_str()))
        .collect();
    let named = |name: &str| -> Vec<&SpanData> { of_job.iter().copied().filter(|s| s.name == name).collect() };
    let submit = named("job.submit");
    assert_eq!(
        submit.len(),
        1,
        "one API span: {:?}",
        of_job.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let trace: TraceId = submit[0].span_context.trace_id();
    assert!(
        of_job.iter().all(|s| s.span_context.trace_id() == trace),
        "one trace per job"
    );

    let by_id = |id: SpanId| spans.iter().find(|s| s.span_context.span_id() == id);
    let (publishes, runs, calls, decides) = (
        named("attempt.publish"),
        named("attempt.run"),
        spans
            .iter()
            .filter(|s| s.name == "model.call" && s.span_context.trace_id() == trace)
            .collect::<Vec<_>>(),
        named("attempt.decide"),
    );
    assert_eq!((publishes.len(), runs.len(), calls.len(), decides.len()), (2, 2, 2, 2));
    // The first publish hangs under the API span; the escalation's publish under the first decision.
    for p in &publishes {
        let parent = by_id(p.parent_span_id).expect("publish has a parent in the trace");
        assert!(
            ["job.submit", "attempt.decide"].contains(&parent.name.as_ref()),
            "{}",
            parent.name
        );
    }
    for run in &runs {
        // Across NATS: the worker's span is a child of the orchestrator's publish span.
        let parent = by_id(run.parent_span_id).expect("the worker span's parent crossed NATS");
        assert_eq!(parent.name, "attempt.publish");
        assert_eq!(attr(parent, "attempt"), attr(run, "attempt"));
        assert!(attr(run, "tokens_in").is_some() && attr(run, "cost_usd").is_some() && attr(run, "model").is_some());
        let call = calls.iter().find(|c| c.parent_span_id == run.span_context.span_id());
        assert!(call.is_some(), "the model call is inside the worker's span");
        // And back: the decision's parent is the worker's span.
        let decide = decides
            .iter()
            .find(|d| d.parent_span_id == run.span_context.span_id())
            .expect("the decision hangs under the worker's span");
        assert_eq!(attr(decide, "attempt"), attr(run, "attempt"));
    }
    let decisions: Vec<String> = decides.iter().filter_map(|d| attr(d, "decision")).collect();
    assert!(
        decisions.contains(&"escalate".into()) && decisions.contains(&"accept".into()),
        "{decisions:?}"
    );
    let escalate = decides
        .iter()
        .find(|d| attr(d, "decision").as_deref() == Some("escalate"))
        .unwrap();
    assert_eq!(attr(escalate, "reasons").as_deref(), Some("arithmetic_mismatch"));
}
