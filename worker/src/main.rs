//! `upshift-worker --tier small|medium|strong`: load config → init tracing →
//! pull until SIGTERM, then drain for up to 20 s.

use std::time::Duration;
use upshift_shared::Tier;
use upshift_shared::config::Config;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    upshift_runtime::exit_code(run().await)
}

async fn run() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let tier: Tier = match (args.next().as_deref(), args.next()) {
        (Some("--tier"), Some(t)) => t.parse().map_err(anyhow::Error::msg)?,
        _ => anyhow::bail!("usage: upshift-worker --tier small|medium|strong"),
    };
    let path = std::env::var_os("UPSHIFT_CONFIG").map(std::path::PathBuf::from);
    let cfg = Config::load(path.as_deref())?;
    let _telemetry = upshift_worker::init_tracing("upshift-worker");
    upshift_worker::serve(
        &cfg,
        tier,
        Duration::from_secs(20),
        |addr| tracing::info!(%addr, "worker http listening"),
    )
    .await?;
    Ok(())
}
