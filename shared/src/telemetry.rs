//! Process set-up shared by every binary: logging (and, later, tracing
//! export). Behind the `telemetry` feature so pure users of this crate do not
//! pull it in.

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
