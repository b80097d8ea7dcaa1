//! `upshift bench …`: runs that print figures (no timed tests).

pub mod chaos;
mod fleet;

/// Benchmarks and fault runs.
#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Jobs through orchestrator replicas and worker pools while processes are
    /// kill -9'ed and NATS and Postgres restart; then checks every guarantee.
    Chaos(chaos::ChaosArgs),
}
