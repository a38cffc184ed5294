//! The `switchyard` command: serves the plugins in a folder over HTTP.

mod cli;

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use cli::{Cli, Command, LogFormat};
use switchyard_host::{HostConfig, Runtime, Server};
use tokio_util::sync::CancellationToken;

/// Log filter used when `RUST_LOG` is unset or cannot be parsed. The file watcher's own
/// informational lines (e.g. about the watch of a deleted plugins folder, which the host
/// re-arms and logs itself) are noise to an operator.
const DEFAULT_LOG_FILTER: &str = "info,notify=warn";

fn main() -> ExitCode {
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let Command::Serve(args) = &cli.command;
    init_logging(args.log_format);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stdout, filtered by `RUST_LOG`. A filter that does not parse is not silently
/// ignored: the host says so and logs at the default level.
fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let requested = std::env::var("RUST_LOG")
        .ok()
        .filter(|value| !value.is_empty());
    let (filter, rejected) = match &requested {
        Some(value) => match EnvFilter::try_new(value) {
            Ok(filter) => (filter, None),
            Err(err) => (EnvFilter::new(DEFAULT_LOG_FILTER), Some((value, err))),
        },
        None => (EnvFilter::new(DEFAULT_LOG_FILTER), None),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stdout().is_terminal()).init(),
        // Span fields (plugin, version, path) are flattened into each line's object.
        LogFormat::Json => builder.json().with_current_span(true).init(),
    }
    if let Some((value, err)) = rejected {
        tracing::warn!("ignoring RUST_LOG={value:?} ({err}); logging at {DEFAULT_LOG_FILTER:?}");
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let Command::Serve(args) = cli.command;
    let tokio = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    tokio.block_on(async {
        let signals = StopSignals::listen()?;
        let mut config = HostConfig::new(args.plugins.clone(), args.listen);
        config.reload_debounce = args.reload_debounce();
        config.tls = args.tls();
        config.pubsub = switchyard_host::config::pubsub::PubSubConfig {
            backend: args.pubsub.clone(),
            prefix: args.pubsub_prefix.clone(),
        };
        config.admin_listen = args.admin_listen;
        config.access_log = args.access_log;
        raise_open_file_limit(args.limits.0.max_connections());
        let mut runtime = Runtime::new(&args.limits.0)?;
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
        server
            .run_until_cut_short(
                signals.first.cancelled_owned(),
                signals.second.cancelled_owned(),
            )
            .await
    })
}

/// File descriptors the host needs beside its connections (listener, plugin files, watcher,
/// logs).
const SPARE_FILES: u64 = 256;

/// Raises the open-file limit to its hard limit: every connection is a file descriptor, and
/// the usual soft limit (1,024) is far below what the connection limits allow. Warns when even
/// the hard limit is too low for `max_connections`.
fn raise_open_file_limit(max_connections: u32) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let Some(hard) = limit.maximum
        && limit.current != Some(hard)
        && let Err(err) = setrlimit(
            Resource::Nofile,
            rustix::process::Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            },
        )
    {
        tracing::warn!("could not raise the open-file limit to {hard}: {err}");
    }
    let needed = u64::from(max_connections).saturating_add(SPARE_FILES);
    if let Some(files) = getrlimit(Resource::Nofile).current
        && files < needed
    {
        tracing::warn!(
            "the open-file limit is {files}, below the {needed} that --max-connections \
             {max_connections} needs: connections past it cannot be accepted (raise `ulimit -n`)"
        );
    }
}

/// SIGTERM and Ctrl-C (SIGINT): the first starts the graceful shutdown, a second one during
/// the drain ends it at once.
struct StopSignals {
    first: CancellationToken,
    second: CancellationToken,
}

impl StopSignals {
    /// Installs the handlers before returning, so a signal that arrives while the host is still
    /// starting is not missed.
    fn listen() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
        let signals = Self {
            first: CancellationToken::new(),
            second: CancellationToken::new(),
        };
        let steps = [
            (signals.first.clone(), "shutting down"),
            (signals.second.clone(), "ending the drain at once"),
        ];
        tokio::spawn(async move {
            for (token, action) in steps {
                tokio::select! {
                    _ = interrupt.recv() => tracing::info!("Ctrl-C received; {action}"),
                    _ = terminate.recv() => tracing::info!("SIGTERM received; {action}"),
                }
                token.cancel();
            }
        });
        Ok(signals)
    }
}
