//! The `switchyard` command: serves the plugins in a folder over HTTP.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use switchyard_host::config::{
    DEFAULT_DRAIN_TIMEOUT, DEFAULT_HANDLE_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_LISTEN,
    DEFAULT_MAX_CONCURRENT_REQUESTS, DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_MEMORY_BYTES,
    DEFAULT_MAX_REQUEST_BODY, DEFAULT_MAX_SESSIONS, DEFAULT_MAX_URI_BYTES, DEFAULT_PLUGINS_DIR,
    DEFAULT_RELOAD_DEBOUNCE, DEFAULT_RUN_CPU_LIMIT, DEFAULT_SESSION_CPU_BUDGET,
};
use switchyard_host::{HostConfig, Limits, PluginLimits, Runtime, Server};

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
    /// their files change. Stops gracefully on SIGTERM or Ctrl-C.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Folder holding the plugins (`<name>.wasm`, optional `<name>.toml` settings).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_PLUGINS_DIR)]
    plugins: PathBuf,
    /// Address to accept HTTP connections on.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Folder for compiled plugins, so unchanged plugins load without recompiling
    /// [default: $XDG_CACHE_HOME/switchyard, else ~/.cache/switchyard].
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    cache_dir: Option<PathBuf>,
    /// Compile every plugin on every load; keep nothing on disk.
    #[arg(long)]
    no_cache: bool,
    /// Quiet time after a change in the plugins folder before it is re-read, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = millis(DEFAULT_RELOAD_DEBOUNCE))]
    reload_debounce_ms: u64,
    #[command(flatten)]
    limits: LimitArgs,
}

/// Host-wide limits; the per-plugin ones are defaults that a plugin's `[limits]` table can
/// override.
#[derive(Debug, Args)]
#[command(next_help_heading = "Limits")]
struct LimitArgs {
    /// Upgraded sessions alive at once, host-wide (more get 503 + Retry-After). Each holds a
    /// pooled instance; past about 9,000 raise the kernel's vm.max_map_count.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_SESSIONS)]
    max_sessions: u32,
    /// Default limit of live sessions per plugin.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_SESSIONS)]
    plugin_max_sessions: u32,
    /// Default limit of `handle` calls in progress per plugin (more get 503 + Retry-After), so
    /// that one plugin cannot take every core from the others.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONCURRENT_REQUESTS)]
    plugin_max_concurrent_requests: u32,
    /// Linear memory per plugin instance, in MiB; also the most a plugin's settings may ask.
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_MAX_MEMORY_BYTES as u64 >> 20)]
    memory_mib: u64,
    /// Wall time a plugin's `handle` may take, in milliseconds (504 beyond).
    #[arg(long, value_name = "MS", default_value_t = millis(DEFAULT_HANDLE_TIMEOUT))]
    handle_timeout_ms: u64,
    /// CPU time one session may use in all, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = millis(DEFAULT_SESSION_CPU_BUDGET))]
    session_cpu_ms: u64,
    /// CPU time one wake-up of a session may use without waiting, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = millis(DEFAULT_RUN_CPU_LIMIT))]
    run_cpu_ms: u64,
    /// Time from a plugin's 101 until the connection is handed over, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = millis(DEFAULT_HANDSHAKE_TIMEOUT))]
    handshake_timeout_ms: u64,
    /// Time a session may pass with no bytes either way, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = millis(DEFAULT_IDLE_TIMEOUT))]
    idle_timeout_ms: u64,
    /// Longest a session may last, in seconds (default: no limit).
    #[arg(long, value_name = "SECS")]
    max_session_secs: Option<u64>,
    /// Largest request head in bytes (431 beyond; at least 8192).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_HEADER_BYTES)]
    max_header_bytes: usize,
    /// Longest request target in bytes (414 beyond).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_URI_BYTES)]
    max_uri_bytes: usize,
    /// Largest request body in bytes (413 beyond).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_REQUEST_BODY)]
    max_body_bytes: usize,
    /// Time a client has to send a complete request head, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = millis(DEFAULT_HEADER_READ_TIMEOUT))]
    header_read_timeout_ms: u64,
    /// On shutdown, how long live sessions may go on before they are closed, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = millis(DEFAULT_DRAIN_TIMEOUT))]
    drain_timeout_ms: u64,
}

const fn millis(duration: Duration) -> u64 {
    duration.as_millis() as u64
}

impl LimitArgs {
    fn into_limits(self) -> Limits {
        Limits {
            max_sessions: self.max_sessions,
            max_header_bytes: self.max_header_bytes,
            max_uri_bytes: self.max_uri_bytes,
            max_request_body: self.max_body_bytes,
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            drain_timeout: Duration::from_millis(self.drain_timeout_ms),
            plugin: PluginLimits {
                max_memory_bytes: usize::try_from(self.memory_mib << 20).unwrap_or(usize::MAX),
                handle_timeout: Duration::from_millis(self.handle_timeout_ms),
                session_cpu_budget: Duration::from_millis(self.session_cpu_ms),
                run_cpu_limit: Duration::from_millis(self.run_cpu_ms),
                handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
                idle_timeout: Duration::from_millis(self.idle_timeout_ms),
                max_session_duration: self.max_session_secs.map(Duration::from_secs),
                max_sessions: self.plugin_max_sessions,
                max_concurrent_requests: self.plugin_max_concurrent_requests,
                allowed_upgrades: None,
            },
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_ansi(std::io::stdout().is_terminal())
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
    let Command::Serve(args) = cli.command;
    let tokio = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    tokio.block_on(async {
        let stop = stop_signal()?;
        let mut config = HostConfig::new(args.plugins, args.listen);
        config.limits = args.limits.into_limits();
        config.reload_debounce = Duration::from_millis(args.reload_debounce_ms);
        let mut runtime = Runtime::new(&config.limits)?;
        let cache_dir = match (args.no_cache, args.cache_dir) {
            (true, _) => None,
            (false, Some(dir)) => Some(dir),
            (false, None) => switchyard_host::cache::default_cache_dir(),
        };
        if let Some(dir) = cache_dir {
            runtime = runtime.with_artifact_cache(&dir)?;
        }
        let runtime = Arc::new(runtime);
        let server = Server::start(config, runtime).await?;
        server.run_until(stop).await
    })
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT). The handlers are installed before the future is
/// returned, so a signal that arrives while the host is still starting is not missed.
fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("Ctrl-C received; shutting down"),
            _ = terminate.recv() => tracing::info!("SIGTERM received; shutting down"),
        }
    })
}
