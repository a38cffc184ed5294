//! The `switchyard` command: serves the plugins in a folder over HTTP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use switchyard_host::config::{DEFAULT_LISTEN, DEFAULT_PLUGINS_DIR};
use switchyard_host::{HostConfig, Runtime, Server};

/// Host for sandboxed WebAssembly plugins that answer HTTP requests and own upgraded
/// connections (WebSocket or any other protocol).
#[derive(Debug, Parser)]
#[command(name = "switchyard", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve every `<name>.wasm` in the plugins folder at `/<name>`, reloading plugins when
    /// their files change.
    Serve {
        /// Folder holding the plugins (`<name>.wasm`, optional `<name>.toml` settings).
        #[arg(long, value_name = "DIR", default_value = DEFAULT_PLUGINS_DIR)]
        plugins: PathBuf,
        /// Address to accept HTTP connections on.
        #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
        listen: SocketAddr,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let Command::Serve { plugins, listen } = cli.command;
    let tokio = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    tokio.block_on(async {
        let config = HostConfig::new(plugins, listen);
        let runtime = Arc::new(Runtime::new(&config.limits)?);
        let server = Server::start(config, runtime).await?;
        server
            .run_until(async {
                // If the signal handler cannot be installed, serve until killed.
                if tokio::signal::ctrl_c().await.is_err() {
                    std::future::pending::<()>().await;
                }
            })
            .await
    })
}
