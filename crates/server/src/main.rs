//! The `loopline` binary.

use clap::{Parser, Subcommand};
use loopline_server::config::ServerConfig;
use tokio::net::TcpListener;

/// Loopline: one binary for the ML lifecycle loop, speaking MLflow's protocol.
#[derive(Parser)]
#[command(name = "loopline", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the tracking server, model registry and artifact proxy (MLflow-compatible).
    Server(ServerConfig),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Colour only for a person at a terminal: log files and collectors get plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stdout()) && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_ansi(colour)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LOOPLINE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match Cli::parse().command {
        Command::Server(config) => {
            let config = config.with_defaults();
            let address = format!("{}:{}", config.host, config.port);
            let listener = TcpListener::bind(&address).await.map_err(|error| {
                anyhow::anyhow!("cannot listen on {address}: {error}; pick another --port or stop the process using it")
            })?;
            loopline_server::serve(config, listener, loopline_server::shutdown_signal()).await
        }
    }
}
