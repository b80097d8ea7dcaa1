//! Process set-up shared by every binary: logging and traces, the metrics
//! recorder, the NATS connection, the exit code and shutdown signals. It
//! lives apart from `upshift-shared` so that crate stays pure logic without
//! any I/O dependency.

use std::time::Duration;
use upshift_shared::config::NatsConfig;

/// Turns a binary's result into its exit code, printing an error as one
/// readable chain (`error: …: …`, via `{:#}`), never a backtrace.
pub fn exit_code<E: std::fmt::Display>(result: Result<(), E>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C (on Ctrl-C only, said once, when the
/// SIGTERM handler cannot be installed).
pub async fn shutdown_signal() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term.recv() => {} }
        }
        Err(e) => {
            eprintln!("error: installing a SIGTERM handler: {e}; only Ctrl-C stops this process");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Installs the process-wide Prometheus recorder (once; later calls return
/// the same handle). `*_seconds` histograms get buckets from 1 ms to 60 s.
pub fn install_metrics() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
            let buckets = [
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ];
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .expect("valid buckets")
                .install_recorder()
                .expect("the only metrics recorder of this process")
        })
        .clone()
}

/// Connects to NATS with the configured credentials and TLS; reconnects with
/// back-off by itself after a connection loss (async-nats' default), and
/// keeps retrying the first connection too.
pub async fn connect_nats(cfg: &NatsConfig) -> Result<async_nats::Client, async_nats::ConnectError> {
    let mut opts = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .require_tls(cfg.tls_required);
    if let (Some(user), Some(password)) = (&cfg.user, &cfg.password) {
        opts = opts.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &cfg.token {
        opts = opts.token(token.clone());
    }
    if let Some(ca) = &cfg.ca_file {
        opts = opts.add_root_certificates(ca.clone());
    }
    // Replies (JetStream acks, pulled messages) arrive on this role's own
    // inbox subjects, so a role allowed to read only its inboxes reads no
    // other role's deliveries (see `NatsConfig::inbox_prefix`).
    opts = opts.custom_inbox_prefix(cfg.inbox_prefix());
    opts.connect(cfg.urls().as_slice()).await
}

/// The durable pull consumer every worker of `tier` shares. The
/// orchestrator creates it (with the streams), workers only bind to it: a
/// worker's NATS user needs no right to create consumers, which would let
/// it point one at another tier's tasks.
pub fn tier_consumer_config(
    cfg: &NatsConfig,
    tier: upshift_shared::Tier,
) -> async_nats::jetstream::consumer::pull::Config {
    use async_nats::jetstream::consumer;
    let subjects = cfg.subjects();
    consumer::pull::Config {
        durable_name: Some(subjects.worker_consumer(tier)),
        filter_subject: subjects.tasks(tier),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: cfg.ack_wait,
        max_deliver: cfg.max_deliver,
        max_ack_pending: 10_000,
        ..Default::default()
    }
}

/// Keeps the OTLP exporter alive; dropping it flushes and shuts it down.
#[must_use = "dropping the guard stops trace export"]
pub struct Telemetry {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// Initialises `tracing` from `RUST_LOG` (default `info`, quiet sqlx and
/// async-nats), writing to stderr; JSON lines when `UPSHIFT_LOG=json`.
///
/// When `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_TRACES_ENDPOINT`) is set, spans
/// are also exported over OTLP/HTTP with `service.name = service`; otherwise
/// nothing is exported and nothing is reported. W3C trace context is the
/// propagator either way.
pub fn init_tracing(service: &'static str) -> Telemetry {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,async_nats=warn"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if std::env::var("UPSHIFT_LOG").as_deref() == Ok("json") {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    };
    let configured = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.trim().is_empty()));
    let provider = configured
        .then(|| opentelemetry_otlp::SpanExporter::builder().with_http().build())
        .and_then(|r| r.map_err(|e| eprintln!("OTLP trace export is off: {e}")).ok())
        .map(|exporter| {
            opentelemetry_sdk::trace::SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    opentelemetry_sdk::Resource::builder()
                        .with_service_name(service)
                        .build(),
                )
                .build()
        });
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(service)));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init();
    Telemetry { provider }
}

struct HeaderInjector<'a>(&'a mut async_nats::HeaderMap);

impl opentelemetry::propagation::Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

struct HeaderExtractor<'a>(&'a async_nats::HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_ref()).collect()
    }
}

/// Writes `span`'s trace context (`traceparent`) into NATS headers.
pub fn inject(span: &tracing::Span, headers: &mut async_nats::HeaderMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = span.context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut HeaderInjector(headers)));
}

/// Makes the trace context in `headers` (if any) the parent of `span`.
pub fn set_parent_from_headers(span: &tracing::Span, headers: Option<&async_nats::HeaderMap>) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let Some(h) = headers else { return };
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(h)));
    let _ = span.set_parent(cx);
}

/// `span`'s W3C `traceparent`, when it belongs to an exported trace.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let mut h = async_nats::HeaderMap::new();
    inject(span, &mut h);
    h.get("traceparent").map(|v| v.as_str().to_string())
}

/// Makes a stored `traceparent` the parent of `span`.
pub fn set_parent_from_traceparent(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(tp) = traceparent {
        let mut h = async_nats::HeaderMap::new();
        h.insert("traceparent", tp);
        set_parent_from_headers(span, Some(&h));
    }
}
