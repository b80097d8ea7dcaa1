//! Process set-up shared by every binary: logging and the NATS connection.
//! Behind the `telemetry` feature so pure users of this crate do not pull it in.

use crate::config::NatsConfig;
use std::time::Duration;

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
    opts.connect(&cfg.url).await
}

/// Initialises `tracing` from `RUST_LOG` (default `info`, quiet sqlx and
/// async-nats), writing to stderr; JSON lines when `UPSHIFT_LOG=json`.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,async_nats=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("UPSHIFT_LOG").as_deref() == Ok("json") {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}
