//! The `loopline` binary.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use loopline_server::commands;
use loopline_server::config::ServerConfig;
use tokio::net::TcpListener;

// Serving allocates many small, short-lived buffers per request; mimalloc handles that pattern with far less
// time in the allocator than glibc's (measured in docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Loopline: one binary for the ML lifecycle loop, speaking MLflow's protocol.
#[derive(Parser)]
#[command(name = "loopline", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole loop on this machine in a few minutes: a server on embedded defaults, versioned data, a
    /// pipeline, a gate, a canary, drift, an alert that retrains, and the lineage; the server keeps running.
    Quickstart(commands::quickstart::QuickstartArgs),
    /// Run the tracking server, model registry and artifact proxy (MLflow-compatible).
    Server(Box<ServerConfig>),
    /// Profile a table (Parquet, CSV, Arrow IPC) into a JSON file that later drift checks use as reference.
    Profile(commands::profile::ProfileArgs),
    /// Compare current data with a reference (data or profile). Exit 0: no drift, 1: drift, 2: bad input.
    Drift(commands::drift::DriftArgs),
    /// Check a table against an expectation suite (Great Expectations JSON). Exit 0: met, 1: failed, 2: bad input.
    Validate(commands::validate::ValidateArgs),
    /// Batch inference: run an MLflow model directory over a table into a Parquet file (mlflow models predict's flags).
    Predict(commands::predict::PredictArgs),
    /// Work with the prediction log: `loopline predictions export --model NAME -o out.parquet`.
    Predictions(commands::predictions::PredictionsArgs),
    /// Serve one model over the MLflow scoring protocol and the Open Inference Protocol v2 (mlflow models serve's flags).
    Serve(commands::serve::ServeArgs),
    /// Compute statistics from JSON lines on standard input (for scripts and cross-checks).
    Stats(commands::stats::StatsArgs),
    /// Create or update a deployment on a server: a model (alias or version) with a rollout policy and guardrails.
    Deploy(Box<commands::rollout::DeployArgs>),
    /// Watch and steer rollouts: `status NAME [--watch]`, `promote NAME`, `rollback NAME`, `list`.
    Rollout(commands::rollout::RolloutArgs),
    /// Watch live traffic: `monitor create|list|status|run|report|delete`, `monitor reference --model --version --data`.
    Monitor(commands::monitor::MonitorArgs),
    /// Versioned data: `data add|status|checkout|push|pull|gc|list|versions` (pointer files in git, content
    /// in a cache and on the server).
    Data(commands::data::DataArgs),
    /// Pipelines: `pipeline run [loopline.yaml]` (cached steps skipped), `status`, `show`; on a server:
    /// `register`, `start`, `runs`, `logs`, `cancel`.
    Pipeline(commands::pipeline::PipelineArgs),
    /// Where a model version came from and what it led to: `lineage models:/NAME/VERSION` (data, pipeline run,
    /// training run, gates, deployments, monitors, alerts, the retraining runs they caused).
    Lineage(commands::lineage::LineageArgs),
    /// The LLM gateway's keys, team limits and spend: `gateway keys create|list|show|update|revoke`,
    /// `gateway teams set|list|delete`, `gateway spend` (an admin's credentials).
    Gateway(commands::gateway::GatewayArgs),
    /// Text, Markdown, HTML, JSONL and Parquet files into a vector collection on a server: chunked on sentence
    /// and heading boundaries, embedded here with the local model; unchanged chunks are skipped on a rerun.
    Embed(commands::embed::EmbedArgs),
    /// Ask a collection `loopline embed` filled: prints the best chunks with their source and heading.
    Search(commands::embed::SearchArgs),
    /// The feature store (Feast's definitions, or a Feast repository): `features check`, `historical` (a
    /// point-in-time correct training set, out of core); on a server: `apply`, `materialize`,
    /// `materialize-incremental`, `views`.
    Features(commands::features::FeaturesArgs),
}

/// mimalloc's option that says how long freed memory is kept before it is returned to the system.
const PURGE_DELAY: &str = "MIMALLOC_PURGE_DELAY";
/// mimalloc's option that says whether the process may have transparent huge pages at all.
const ALLOW_THP: &str = "MIMALLOC_ALLOW_THP";
/// glibc's settings, which it reads as the process starts; its allocator serves the C code (SQLite).
const GLIBC_TUNABLES: &str = "GLIBC_TUNABLES";
/// Where Linux says when it gives transparent huge pages: `always`, `madvise` or `never`, the chosen one in
/// brackets.
const THP_MODE: &str = "/sys/kernel/mm/transparent_hugepage/enabled";

/// Options for mimalloc, which reads them from the environment as the process starts, before `main`: so a
/// long-running command executes itself again, once, with them set. An operator's own settings are left as
/// they are.
///
/// - Freed memory is returned to the system at once. mimalloc keeps freed pages for a second by default;
///   under steady load that second's churn stays resident and the resident set creeps up with every burst (a
///   gateway soak at 1,200 traced calls a second: 48 -> 70 MiB in 15 minutes; with no delay flat at 45-46 MiB
///   with the same throughput, docs/benchmarks.md).
/// - Huge pages where the system gives them only on request. mimalloc is built without them (`no_thp`,
///   docs/ARCHITECTURE.md) and so switches them off for the whole process, which would also refuse them to
///   the vector index's arrays, which ask for them (docs/vectors.md). With the system's `madvise` mode only
///   memory that asks gets them, and mimalloc's own never asks; with `always` they stay off.
/// - One glibc arena. Rust's allocations go to mimalloc; glibc's malloc serves SQLite, whose page cache
///   churns under steady writes. glibc gives each thread that allocates its own arena and returns an
///   arena's freed memory only from its top, so each of SQLite's threads held several MiB it no longer used
///   (a gateway soak: 11.3 MiB of arenas for 5.9 MiB of SQLite data); in one arena that was 10.4 for 7.0,
///   docs/benchmarks.md.
fn set_allocator_options() {
    let mut arguments = std::env::args_os();
    let program = arguments.next();
    let long_running = arguments
        .next()
        .is_some_and(|command| ["server", "serve", "quickstart"].iter().any(|name| command == *name));
    if !long_running {
        return;
    }
    let mut options: Vec<(&str, &str)> = Vec::new();
    if std::env::var_os(PURGE_DELAY).is_none() {
        options.push((PURGE_DELAY, "0"));
    }
    let on_request_only =
        std::fs::read_to_string(THP_MODE).is_ok_and(|mode| mode.contains("[madvise]") || mode.contains("[never]"));
    if std::env::var_os(ALLOW_THP).is_none() && on_request_only {
        options.push((ALLOW_THP, "1"));
    }
    if std::env::var_os(GLIBC_TUNABLES).is_none() {
        options.push((GLIBC_TUNABLES, "glibc.malloc.arena_max=1"));
    }
    if options.is_empty() {
        return;
    }
    let Ok(executable) = std::env::current_exe() else {
        return;
    };
    let mut again = std::process::Command::new(executable);
    again.args(std::env::args_os().skip(1)).envs(options);
    if let Some(program) = program {
        std::os::unix::process::CommandExt::arg0(&mut again, program);
    }
    // `exec` returns only when it failed (the executable replaced or removed meanwhile): run as we are.
    let _ = std::os::unix::process::CommandExt::exec(&mut again);
}

fn main() -> ExitCode {
    set_allocator_options();
    // Colour only for a person at a terminal: log files and collectors get plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stdout()) && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_ansi(colour)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LOOPLINE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let command = Cli::parse().command;
    if !matches!(command, Command::Server(_) | Command::Serve(_) | Command::Quickstart(_)) {
        quiet_on_closed_stdout();
    }
    match command {
        Command::Profile(args) => commands::profile::run(args),
        Command::Drift(args) => commands::drift::run(args),
        Command::Validate(args) => commands::validate::run(args),
        Command::Stats(args) => commands::stats::run(args),
        Command::Predict(args) => commands::predict::run(args),
        Command::Serve(args) => commands::serve::run(args),
        Command::Predictions(args) => commands::predictions::run(args),
        Command::Deploy(args) => commands::rollout::deploy(*args),
        Command::Rollout(args) => commands::rollout::rollout(args),
        Command::Monitor(args) => commands::monitor::run(args),
        Command::Data(args) => commands::data::run(args),
        Command::Pipeline(args) => commands::pipeline::run(args),
        Command::Lineage(args) => commands::lineage::run(args),
        Command::Gateway(args) => commands::gateway::run(args),
        Command::Embed(args) => commands::embed::run_embed(args),
        Command::Search(args) => commands::embed::run_search(args),
        Command::Features(args) => commands::features::run(args),
        Command::Quickstart(args) => commands::quickstart::run(args),
        Command::Server(config) => match run_server(*config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// A command whose output is cut short (`loopline monitor status NAME | head -1`) ends quietly, as other Unix tools
/// end when their reader goes away, instead of with the panic `println!` raises. Not for the servers: a closed
/// standard output must never stop one.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            // 128 + SIGPIPE: what a shell reports for a tool stopped by a closed pipe.
            std::process::exit(141);
        }
        default(info);
    }));
}

#[tokio::main]
async fn run_server(config: ServerConfig) -> anyhow::Result<()> {
    let config = config.with_defaults();
    loopline_server::network::raise_descriptor_limit(config.network.max_connections);
    let address = format!("{}:{}", config.host, config.port);
    let listener = TcpListener::bind(&address).await.map_err(|error| {
        anyhow::anyhow!("cannot listen on {address}: {error}; pick another --port or stop the process using it")
    })?;
    loopline_server::serve(config, listener, loopline_server::shutdown_signal()).await
}
