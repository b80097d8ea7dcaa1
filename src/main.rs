//! `upshift`: the command line. Runs the processes (`orchestrator`,
//! `worker`), a whole local stack (`run-local`, `demo`), and talks to a
//! running orchestrator (`submit`, `history`).

mod bench;
mod client;
mod demo;
mod eval;
mod fleet;
mod ingest;
mod keys;
mod local;
mod models;
mod preflight;
mod rag;
mod table;
mod tasks;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;
use upshift_shared::Tier;
use upshift_shared::config::{Config, REPLAY_TOML};

/// upshift: run each AI step on the cheapest model tier that can defend its answer.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Config file layered over the embedded defaults (then UPSHIFT_* env).
    #[arg(long, global = true, env = "UPSHIFT_CONFIG")]
    config: Option<PathBuf>,
    /// Orchestrator API base URL, for client commands.
    #[arg(long, global = true, env = "UPSHIFT_API", default_value = "http://127.0.0.1:8080")]
    api: String,
    /// Bearer API key, for client commands.
    #[arg(long, global = true, env = "UPSHIFT_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Real jobs on local models through a local stack (orchestrator + one worker per tier); `--replay` for GSM8K on recorded outputs.
    Demo(demo::DemoArgs),
    /// Ask a question of a collection: submits a `rag` job, follows it, prints
    /// the cited answer, the route and the time per step.
    Ask(rag::AskArgs),
    /// Start an orchestrator and one worker per tier on this machine until Ctrl-C.
    RunLocal {
        /// Worker processes per tier.
        #[arg(long, default_value_t = 1)]
        workers_per_tier: usize,
    },
    /// Submit a job from a JSON file.
    Submit {
        /// The job request (see README).
        #[arg(long)]
        file: PathBuf,
        /// Wait for the job to finish, printing progress.
        #[arg(long)]
        wait: bool,
    },
    /// Ingest files (text, Markdown, HTML) into a document collection for RAG jobs.
    Ingest(ingest::IngestArgs),
    /// Search a collection: the ranked passages a RAG job would retrieve.
    Search {
        /// The collection.
        #[arg(long)]
        collection: String,
        /// At most this many passages.
        #[arg(long, default_value_t = 5)]
        limit: u32,
        /// The query.
        query: String,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a job's route: every start, dispatch, escalation and decision with reasons.
    History {
        /// The job id.
        job: uuid::Uuid,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate the routing policy offline on a labelled dataset.
    Eval(Box<eval::EvalArgs>),
    /// Routing policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Benchmarks and fault runs that print figures.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// API keys: issue one for a tenant, or revoke one.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Follow a job live: print each route event as it happens, until the job ends.
    Watch {
        /// The job id.
        job: uuid::Uuid,
        /// One JSON object per event instead of table rows.
        #[arg(long)]
        json: bool,
    },
    /// Print the configuration this process would run with (defaults, then
    /// --config, then UPSHIFT_<SECTION>__<KEY> variables), secrets hidden.
    Config,
    /// Print the NATS server's users and permissions for upshift's roles
    /// (orchestrator, one worker role per tier), passwords from the environment.
    NatsAuth {
        /// `conf`: an `authorization` block for nats-server's config file;
        /// `helm`: values for the official NATS Helm chart.
        #[arg(long, value_enum, default_value = "conf")]
        format: NatsAuthFormat,
        /// The Kubernetes Secret holding the passwords (`helm` only).
        #[arg(long, default_value = "upshift-nats")]
        secret: String,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Local model files: fetch them, or list which model serves each tier.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Run the orchestrator process.
    Orchestrator,
    /// Run a worker process for one tier.
    Worker {
        /// The tier whose consumer to pull from.
        #[arg(long)]
        tier: Tier,
    },
}

/// Output of `upshift nats-auth`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum NatsAuthFormat {
    /// nats-server config file.
    Conf,
    /// NATS Helm chart values.
    Helm,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Learn acceptance models and start tiers from labelled data; write them as policy config.
    Fit(eval::fit::FitArgs),
    /// Fit the local tiers' acceptance thresholds from labelled tasks (each
    /// tier's model run in this process), with the false-accept bound.
    FitLadder(eval::ladder::LadderArgs),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Only ring is compiled in; every TLS client (reqwest, NATS, Postgres) uses it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let result = run(Cli::parse()).await;
    if let Err(e) = &result
        && let Some(u) = e.downcast_ref::<rag::Undefended>()
    {
        eprintln!("{u}");
        return std::process::ExitCode::from(rag::Undefended::EXIT_CODE);
    }
    upshift_runtime::exit_code(result)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let load = || Config::load(cli.config.as_deref()).context("loading configuration");
    let load_replay =
        || Config::load_profile(Some(REPLAY_TOML), cli.config.as_deref().as_slice()).context("loading configuration");
    match cli.command {
        Command::Eval(args) => eval::run(cli.config.as_deref(), *args, &cli.api, cli.api_key.as_deref()).await?,
        Command::Policy(PolicyCommand::Fit(args)) => eval::fit::run(cli.config.as_deref(), args)?,
        Command::Policy(PolicyCommand::FitLadder(args)) => eval::ladder::run(&load()?, args).await?,
        Command::Keys(cmd) => keys::run(&load()?, cmd).await?,
        Command::Models(cmd) => {
            let cfg = load()?;
            tokio::task::spawn_blocking(move || models::run(&cfg, cmd)).await??
        }
        Command::Bench(bench::BenchCommand::Chaos(args)) => bench::chaos::run(&load_replay()?, args).await?,
        Command::Bench(bench::BenchCommand::Chat(args)) => bench::chat::run(&load_replay()?, args).await?,
        Command::Bench(bench::BenchCommand::Engine(args)) => bench::engine::run(&load_replay()?, args).await?,
        Command::Bench(bench::BenchCommand::Retrieval(args)) => {
            let client = client::Client::new(&cli.api, cli.api_key.as_deref())?;
            bench::retrieval::run(&client, args).await?
        }
        Command::Bench(bench::BenchCommand::Rag(args)) => bench::rag::run(&load()?, args).await?,
        Command::Bench(bench::BenchCommand::Embed(args)) => {
            let cfg = load()?;
            tokio::task::spawn_blocking(move || bench::embed::run(&cfg, args)).await??
        }
        Command::Bench(bench::BenchCommand::Models(args)) => {
            bench::models::run(&load()?, cli.config.as_deref(), args).await?
        }
        Command::Orchestrator => {
            let cfg = load()?;
            let _telemetry = upshift_orchestrator::init_tracing("upshift-orchestrator");
            fleet::die_with_parent();
            upshift_orchestrator::serve(cfg, |bound| {
                if let Some(ops) = bound.ops {
                    println!("{}{ops}", fleet::OPS_LISTENING);
                }
                println!("{}{}", fleet::LISTENING, bound.api)
            })
            .await?;
        }
        Command::Worker { tier } => {
            let cfg = load()?;
            let _telemetry = upshift_worker::init_tracing("upshift-worker");
            fleet::die_with_parent();
            upshift_worker::serve(&cfg, tier, Duration::from_secs(20), |addr| {
                println!("{}{addr}", fleet::LISTENING)
            })
            .await?;
        }
        Command::RunLocal { workers_per_tier } => {
            let cfg = load()?;
            let stack = local::Stack::start(cli.config.as_deref(), &cfg, workers_per_tier, &[]).await?;
            println!("upshift is running: API {} (Ctrl-C stops it)", stack.api);
            upshift_runtime::shutdown_signal().await;
            stack.stop().await;
        }
        Command::Demo(args) => demo::run(cli.config.as_deref(), args).await?,
        Command::Submit { file, wait } => {
            let client = client::Client::new(&cli.api, cli.api_key.as_deref())?;
            let body: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?)
                    .with_context(|| format!("{} is not JSON", file.display()))?;
            let id = client.submit(&body).await?;
            println!("job {id} submitted");
            if wait {
                let job = client.wait(id, true).await?;
                println!("{}", serde_json::to_string_pretty(&job)?);
            }
        }
        Command::Ask(args) => {
            let client = client::Client::new(&cli.api, cli.api_key.as_deref())?;
            let (id, job) = rag::ask(&client, &args, true).await?;
            rag::print_answer(&job, &client.route(id).await?);
            if job["status"] != "succeeded" {
                let status = job["status"].as_str().unwrap_or("unknown").to_string();
                return Err(rag::Undefended { job: id, status }.into());
            }
        }
        Command::Ingest(args) => {
            let client = client::Client::new(&cli.api, cli.api_key.as_deref())?;
            ingest::run(&client, args).await?;
        }
        Command::Search {
            collection,
            limit,
            query,
            json,
        } => {
            let client = client::Client::new(&cli.api, cli.api_key.as_deref())?;
            let hits = client
                .get(
                    &format!("/v1/collections/{collection}/search"),
                    &[("q", query.as_str()), ("limit", &limit.to_string())],
                )
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&hits)?);
            } else {
                for h in hits.as_array().into_iter().flatten() {
                    let text: String = h["text"].as_str().unwrap_or("").chars().take(160).collect();
                    println!(
                        "{:>7.4}  {}  ({})
         {text}…",
                        h["score"].as_f64().unwrap_or(0.0),
                        h["passage_id"].as_str().unwrap_or(""),
                        h["title"].as_str().unwrap_or("")
                    );
                }
            }
        }
        Command::Watch { job, json } => {
            let client = client::Client::new(&cli.api, cli.api_key.as_deref())?;
            client.watch(job, json).await?;
        }
        Command::Config => println!("{}", serde_json::to_string_pretty(&load()?.redacted())?),
        Command::NatsAuth { format, secret } => {
            use upshift_shared::nats_auth;
            let subjects = load()?.nats.subjects();
            let out = match format {
                NatsAuthFormat::Conf => nats_auth::server_conf(&subjects, "upshift nats-auth"),
                NatsAuthFormat::Helm => nats_auth::helm_values(&subjects, &secret, "upshift nats-auth --format helm"),
            };
            print!("{out}");
        }
        Command::Completion { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "upshift", &mut std::io::stdout());
        }
        Command::History { job, json } => {
            let client = client::Client::new(&cli.api, cli.api_key.as_deref())?;
            let route = client.route(job).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&route)?);
            } else {
                print!("{}", client::route_table(&route, false));
            }
        }
    }
    Ok(())
}
