//! `upshift-orchestrator`: load config → init tracing → run until SIGTERM.

use upshift_shared::config::Config;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let path = std::env::var_os("UPSHIFT_CONFIG").map(std::path::PathBuf::from);
    let cfg = Config::load(path.as_deref())?;
    upshift_orchestrator::init_tracing();
    upshift_orchestrator::serve(cfg, |_| {}).await?;
    Ok(())
}
