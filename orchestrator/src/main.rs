//! `upshift-orchestrator`: load config → init tracing → run until SIGTERM.

use upshift_shared::config::Config;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    upshift_runtime::exit_code(run().await)
}

async fn run() -> anyhow::Result<()> {
    let path = std::env::var_os("UPSHIFT_CONFIG").map(std::path::PathBuf::from);
    let cfg = Config::load(path.as_deref())?;
    let _telemetry = upshift_orchestrator::init_tracing("upshift-orchestrator");
    upshift_orchestrator::serve(cfg, |_| {}).await?;
    Ok(())
}
