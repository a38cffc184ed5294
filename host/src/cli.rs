//! The command line of the `switchyard` binary. The limit flags are not written out here: they
//! are generated from the library's limit declarations ([`switchyard_host::config::limits`]),
//! so `--help`, the sidecar keys and the README's table always agree, and every value is
//! range-checked before the host starts (clap's error names the flag and the allowed range).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Arg, ArgMatches, Args, FromArgMatches, Parser, Subcommand};
use switchyard_host::Limits;
use switchyard_host::config::limits::{self, Limit, Preset};
use switchyard_host::config::pubsub::{DEFAULT_PUBSUB_PREFIX, PubSubBackend, PubSubPrefix};
use switchyard_host::config::{
    DEFAULT_LISTEN, DEFAULT_PLUGINS_DIR, DEFAULT_RELOAD_DEBOUNCE, TlsFiles,
};

/// Host for sandboxed WebAssembly plugins that answer HTTP requests and own upgraded
/// connections (WebSocket or any other protocol).
#[derive(Debug, Parser)]
#[command(name = "switchyard", version)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Serve every `<name>.wasm` in the plugins folder at `/<name>`, reloading plugins when
    /// their files change. Stops gracefully on SIGTERM or Ctrl-C.
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Folder holding the plugins (`<name>.wasm`, optional `<name>.toml` settings).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_PLUGINS_DIR)]
    pub(crate) plugins: PathBuf,
    /// Address to accept HTTP connections on.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub(crate) listen: SocketAddr,
    /// Folder for compiled plugins, so unchanged plugins load without recompiling; not used
    /// (with a warning) unless it is this user's and nobody else may write it
    /// [default: $XDG_CACHE_HOME/switchyard, else ~/.cache/switchyard].
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    pub(crate) cache_dir: Option<PathBuf>,
    /// Compile every plugin on every load; keep nothing on disk.
    #[arg(long)]
    pub(crate) no_cache: bool,
    /// Quiet time after a change in the plugins folder before it is re-read, in milliseconds.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = DEFAULT_RELOAD_DEBOUNCE.as_millis() as u64,
        value_parser = clap::value_parser!(u64).range(0..=10_000),
    )]
    pub(crate) reload_debounce_ms: u64,
    /// Where topics live: `local` (this process only) or `redis://HOST:PORT[/DB]`, shared by
    /// every host using the same Redis server and prefix (a publish on any of them reaches the
    /// subscribers on all).
    #[arg(
        long,
        value_name = "BACKEND",
        env = "SWITCHYARD_PUBSUB",
        default_value = "local"
    )]
    pub(crate) pubsub: PubSubBackend,
    /// First part of every Redis channel name (`<prefix>:<plugin>:<topic>`), so several
    /// deployments can share one Redis server (the URL's /DB does not keep them apart: Redis
    /// pub/sub ignores databases): 1 to 64 of A-Z a-z 0-9 . _ -
    #[arg(
        long,
        value_name = "PREFIX",
        env = "SWITCHYARD_PUBSUB_PREFIX",
        default_value = DEFAULT_PUBSUB_PREFIX
    )]
    pub(crate) pubsub_prefix: PubSubPrefix,
    /// Address of the admin listener, serving `/metrics` (Prometheus), `/healthz` and `/readyz`;
    /// never served on --listen. Off unless given.
    #[arg(long, value_name = "ADDR")]
    pub(crate) admin_listen: Option<SocketAddr>,
    /// Write one log line per request and per ended session (target `switchyard::access`).
    #[arg(long)]
    pub(crate) access_log: bool,
    /// How log lines are written: `text` for people, `json` (one object a line) for machines.
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
    /// A TOML file whose keys are these flags without their dashes (`max-sessions = 5000`).
    /// A flag given on the command line beats its environment variable, which beats the file.
    #[arg(long, value_name = "FILE", env = "SWITCHYARD_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Serve HTTPS on --listen with this PEM certificate chain (leaf first): HTTP/2 and
    /// HTTP/1.1 by ALPN, WebSockets over both (RFC 8441 on HTTP/2). Reloaded when the file
    /// changes; a bad one at start stops the host, on reload the old one stays in use.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1); reloaded with it.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) limits: LimitArgs,
}

/// The format of the host's log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (tracing-subscriber's JSON format).
    Json,
}

/// Parses the command line, then the config file it names (if any) under it: clap checks the
/// file's values like typed flags. Prints clap's message and exits on a command-line error.
pub(crate) fn parse() -> Result<Cli, switchyard_host::config::file::FileError> {
    use clap::CommandFactory as _;
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let matches = Cli::command().get_matches_from(&args);
    if let Some(("serve", serve)) = matches.subcommand()
        && let Some(path) = serve.get_one::<PathBuf>("config")
    {
        let command = Cli::command();
        if let Some(serve_command) = command.find_subcommand("serve") {
            args.extend(switchyard_host::config::file::arguments(
                serve_command,
                serve,
                path,
            )?);
            // The file's flags come after the user's: still within `serve`.
            let matches = Cli::command().get_matches_from(&args);
            return Ok(Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit()));
        }
    }
    Ok(Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit()))
}

impl ServeArgs {
    pub(crate) fn reload_debounce(&self) -> Duration {
        Duration::from_millis(self.reload_debounce_ms)
    }

    /// The certificate and key files, if TLS is on (clap requires both or neither).
    pub(crate) fn tls(&self) -> Option<TlsFiles> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        }
    }
}

/// Every limit flag, read into [`Limits`] (declared defaults for flags not given).
#[derive(Debug, Clone)]
pub(crate) struct LimitArgs(pub(crate) Limits);

impl FromArgMatches for LimitArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut limits = Limits::default();
        apply_flags(limits::HOST, matches, &mut limits);
        apply_flags(limits::PLUGIN, matches, &mut limits.plugin);
        Ok(Self(limits))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for LimitArgs {
    fn augment_args(command: clap::Command) -> clap::Command {
        let flags = limits::HOST
            .iter()
            .filter_map(flag_arg)
            .chain(limits::PLUGIN.iter().filter_map(flag_arg));
        command.next_help_heading("Limits").args(flags)
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
    }
}

/// The flag of `limit`, if it has one: range-checked by clap, its default in the help.
fn flag_arg<T>(limit: &Limit<T>) -> Option<Arg> {
    let flag = limit.flag?;
    let default = match limit.default {
        Preset::Value(value) => value.to_string(),
        Preset::Unlimited => "none".to_owned(),
        Preset::Derived(how) => how.replace('`', ""),
    };
    let scope = limit.sidecar_key.map_or_else(String::new, |key| {
        format!(" Per plugin: a sidecar's [limits] {key} overrides it.")
    });
    let what = limit.what.replace('`', "");
    let mut chars = what.chars();
    let what: String = chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    Some(
        Arg::new(flag)
            .long(flag)
            .value_name(limit.unit.value_name())
            .value_parser(clap::value_parser!(u64).range(limit.min..=limit.max))
            .help(format!(
                "{what}.{scope} Beyond it: {}. [default: {default}] [range: {}..={}]",
                limit.exceeded.replace('`', ""),
                limit.min,
                limit.max
            )),
    )
}

/// Stores every flag the user gave; clap has already checked each against its range.
fn apply_flags<T>(declared: &[Limit<T>], matches: &ArgMatches, target: &mut T) {
    for limit in declared {
        if let Some(value) = limit.flag.and_then(|flag| matches.get_one::<u64>(flag)) {
            (limit.set)(target, *value);
        }
    }
}
