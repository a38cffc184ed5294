//! The server processes the benchmark measures. Each runs the benchmark's own binary again with
//! a hidden role argument (or Node, through the `pin-exec` role), pinned to the server core,
//! and prints the address it listens on as its first line of output.
//!
//! - `host`: Switchyard serving a plugins folder, limits set by flag name ([`HostSetup`]).
//! - `host-all-cores`: the same, unpinned with a worker per core, as the binary runs: for the
//!   hot-reload section, which times compiling, and Switchyard spreads that over every core.
//! - `native-echo`: tokio-tungstenite echo, the physical limit for WebSocket echo.
//! - `native-broadcast`: tokio-tungstenite rooms that frame a message once and write it to
//!   every member, the physical limit for fan-out.
//! - `native-hello`: hyper answering what `hello` answers, the limit for plain HTTP.
//! - `native-tls-echo`: the native echo behind tokio-rustls, the limit for echo over TLS.
//! - `pin-exec`: pins itself, then becomes another program (Node's `ws` servers).
//!
//! One client role runs here too: `fanout-room` holds one fan-out room in a client process of
//! its own (see `client::fanout::RemoteRoom`).

mod host;
mod native_broadcast;
mod native_echo;
mod native_hello;
mod native_tls_echo;
pub(crate) mod node;
mod process;

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, ExitCode};

use anyhow::Context as _;

use crate::affinity;

pub(crate) use host::Gauges;
pub(crate) use process::ServerProcess;

/// Tells the parent where this server listens: the first line on stdout is the address.
fn announce(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{addr}")?;
    stdout.flush()?;
    Ok(())
}

/// Binds a loopback listener on a free port and announces it.
async fn bind_announced() -> anyhow::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    announce(listener.local_addr()?)?;
    Ok(listener)
}

/// The hidden first argument that makes the binary run a role instead of the benchmark.
pub(crate) const ROLE_ARG: &str = "__role";

/// Session limit of every benchmarked host (host-wide and per plugin): room for the memory
/// section's ten thousand sessions plus a margin. The same in every section, so all of them
/// measure one configuration; a section that holds more raises what it needs on top.
const HOST_MAX_SESSIONS: u64 = 10_500;

/// Idle time after which a benchmarked host hibernates a managed WebSocket (its
/// `--hibernate-after-ms`) in the sections that open many of them: short, so sessions that
/// went quiet are hibernated soon after the last one opened, and the awake budget below is
/// never reached while thousands open.
pub(crate) const HIBERNATE_AFTER_MS: u64 = 100;
/// Managed WebSockets that may hold an instance at once in those sections: several times what
/// opening at the client's pace keeps awake within [`HIBERNATE_AFTER_MS`].
const AWAKE_WEBSOCKETS: u64 = 4_096;
/// Ping interval for clients that never answer pings (the benchmark's idle sessions are not
/// read, and its fan-out members skip pings): longer than any section runs.
const QUIET_CLIENT_PING_MS: u64 = 600_000;
/// Managed WebSockets allowed beyond what a section opens (warm-up sessions still closing).
const WEBSOCKET_MARGIN: u64 = 4_096;
/// `handle` calls one plugin may run at once in every benchmarked host: the sections open up
/// to 256 connections at once, and with the default (8) part of such a burst of handshakes is
/// refused with `503` as documented. The benchmark measures sessions, not admission.
const CONCURRENT_HANDLES: u64 = 256;

/// The role that runs the host on every core.
const HOST_ALL_CORES: &str = "host-all-cores";

/// Which cores a benchmarked host may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cores {
    /// The server core only, with one async worker: every server in the load sections.
    One,
    /// All of them, with a worker per core, as the `switchyard` binary runs.
    All,
}

impl Cores {
    /// How the tables name it.
    pub(crate) fn label(self) -> String {
        match self {
            Self::One => "host on 1 core".to_owned(),
            Self::All => format!("host on all {} cores", affinity::online_cpus()),
        }
    }
}

/// How a benchmarked Switchyard host is started: its plugins folder, an optional
/// compiled-plugin cache, its cores, and limits by the `switchyard` binary's flag names.
pub(crate) struct HostSetup<'a> {
    plugins_dir: &'a Path,
    cache_dir: Option<&'a Path>,
    cores: Cores,
    pubsub: Option<String>,
    admin: Option<std::net::SocketAddr>,
    /// The certificate and key files, to serve TLS.
    tls: Option<(&'a Path, &'a Path)>,
    limits: Vec<(&'static str, u64)>,
}

impl<'a> HostSetup<'a> {
    /// On the server core, without a cache, with the benchmark's session limit.
    pub(crate) fn new(plugins_dir: &'a Path) -> Self {
        Self {
            plugins_dir,
            cache_dir: None,
            cores: Cores::One,
            pubsub: None,
            admin: None,
            tls: None,
            limits: vec![
                ("max-sessions", HOST_MAX_SESSIONS),
                ("plugin-max-sessions", HOST_MAX_SESSIONS),
                ("plugin-max-concurrent-requests", CONCURRENT_HANDLES),
            ],
        }
    }

    /// Keeps compiled plugins in `dir`.
    pub(crate) fn cache(mut self, dir: Option<&'a Path>) -> Self {
        self.cache_dir = dir;
        self
    }

    /// Runs on `cores`.
    pub(crate) fn cores(mut self, cores: Cores) -> Self {
        self.cores = cores;
        self
    }

    /// Room for `websockets` managed WebSockets at once, hibernating
    /// [`HIBERNATE_AFTER_MS`] after they go quiet, and never pinging the benchmark's clients
    /// (which do not answer).
    pub(crate) fn managed(self, websockets: usize) -> Self {
        let websockets = u64::try_from(websockets).unwrap_or(u64::MAX);
        self.limit(
            "max-websockets",
            websockets.saturating_add(WEBSOCKET_MARGIN),
        )
        .limit("max-awake-websockets", AWAKE_WEBSOCKETS)
        .limit("hibernate-after-ms", HIBERNATE_AFTER_MS)
        .limit("ping-interval-ms", QUIET_CLIENT_PING_MS)
        .limit("websocket-idle-timeout-ms", 2 * QUIET_CLIENT_PING_MS)
    }

    /// Shares topics through `backend` (`--pubsub`'s value, e.g. `redis://127.0.0.1:6379`).
    pub(crate) fn pubsub(mut self, backend: &str) -> Self {
        self.pubsub = Some(backend.to_owned());
        self
    }

    /// Serves `/metrics`, `/healthz` and `/readyz` on `addr`, as `--admin-listen` does.
    pub(crate) fn admin(mut self, addr: std::net::SocketAddr) -> Self {
        self.admin = Some(addr);
        self
    }

    /// Serves HTTPS with this certificate and key, as `--tls-cert` and `--tls-key` make the
    /// binary.
    pub(crate) fn tls(mut self, cert: &'a Path, key: &'a Path) -> Self {
        self.tls = Some((cert, key));
        self
    }

    /// Sets the limit the binary's `--{flag}` sets (later settings win).
    pub(crate) fn limit(mut self, flag: &'static str, value: u64) -> Self {
        self.limits.push((flag, value));
        self
    }

    /// Starts it.
    pub(crate) fn start(self) -> anyhow::Result<ServerProcess> {
        let mut args = vec![self.plugins_dir.as_os_str().to_owned()];
        if let Some(dir) = self.cache_dir {
            let mut arg = OsString::from(format!("{}=", host::CACHE_KEY));
            arg.push(dir.as_os_str());
            args.push(arg);
        }
        if let Some(backend) = &self.pubsub {
            args.push(OsString::from(format!("{}={backend}", host::PUBSUB_KEY)));
        }
        if let Some(addr) = self.admin {
            args.push(OsString::from(format!("{}={addr}", host::ADMIN_KEY)));
        }
        if let Some((cert, key)) = self.tls {
            for (name, path) in [(host::TLS_CERT_KEY, cert), (host::TLS_KEY_KEY, key)] {
                let mut arg = OsString::from(format!("{name}="));
                arg.push(path.as_os_str());
                args.push(arg);
            }
        }
        args.extend(
            self.limits
                .iter()
                .map(|(flag, value)| OsString::from(format!("{flag}={value}"))),
        );
        let role = match self.cores {
            Cores::One => "host",
            Cores::All => HOST_ALL_CORES,
        };
        ServerProcess::start_role("switchyard host", role, &args)
    }
}

/// Starts the Switchyard host serving `plugins_dir` on the server core, without a
/// compiled-plugin cache.
pub(crate) fn start_host(plugins_dir: &Path) -> anyhow::Result<ServerProcess> {
    HostSetup::new(plugins_dir).start()
}

/// Starts the Switchyard host serving `plugins_dir` on `cores`, keeping compiled plugins in
/// `cache_dir` if one is given.
pub(crate) fn start_host_with(
    plugins_dir: &Path,
    cache_dir: Option<&Path>,
    cores: Cores,
) -> anyhow::Result<ServerProcess> {
    HostSetup::new(plugins_dir)
        .cache(cache_dir)
        .cores(cores)
        .start()
}

/// Starts the native tokio-tungstenite echo server.
pub(crate) fn start_native_echo() -> anyhow::Result<ServerProcess> {
    ServerProcess::start_role("native echo", "native-echo", &[])
}

/// Starts the native tokio-tungstenite echo server behind tokio-rustls with this certificate.
pub(crate) fn start_native_tls_echo(cert: &Path, key: &Path) -> anyhow::Result<ServerProcess> {
    let args = [cert.as_os_str().to_owned(), key.as_os_str().to_owned()];
    ServerProcess::start_role("native TLS echo", "native-tls-echo", &args)
}

/// Starts the native tokio-tungstenite broadcast server.
pub(crate) fn start_native_broadcast() -> anyhow::Result<ServerProcess> {
    ServerProcess::start_role("native broadcast", "native-broadcast", &[])
}

/// Starts the native hyper hello server.
pub(crate) fn start_native_hello() -> anyhow::Result<ServerProcess> {
    ServerProcess::start_role("native hello", "native-hello", &[])
}

/// Runs the role named by `args[0]` in this process (the child side). Never returns while the
/// server is up; the parent kills it.
pub(crate) fn run_role(args: &[String]) -> ExitCode {
    let result = match args {
        [role, rest @ ..] => run_named(role, rest),
        [] => Err(anyhow::anyhow!("{ROLE_ARG} needs a role name")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("benchmark server role failed: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_named(role: &str, args: &[String]) -> anyhow::Result<()> {
    // If the benchmark dies without killing us (SIGKILL, a panic in Drop), go with it rather
    // than linger holding a port and a core.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .context("asking to die with the parent")?;
    if role == "pin-exec" {
        return pin_exec(args);
    }
    if role == crate::client::fanout::ROOM_ROLE {
        return crate::client::fanout::serve_room(args);
    }
    let runtime = if role == HOST_ALL_CORES {
        affinity::unpin_this_process()?;
        // Built after unpinning, so it starts a worker per core.
        tokio::runtime::Runtime::new().context("starting the server's async runtime")?
    } else {
        affinity::pin_this_process(affinity::SERVER_CPU)?;
        server_runtime()?
    };
    match (role, args) {
        ("host" | HOST_ALL_CORES, settings) => {
            let settings = host::Settings::parse(settings)?;
            runtime.block_on(host::serve(settings))
        }
        ("native-echo", []) => runtime.block_on(native_echo::serve()),
        ("native-tls-echo", [cert, key]) => {
            runtime.block_on(native_tls_echo::serve(Path::new(cert), Path::new(key)))
        }
        ("native-broadcast", []) => runtime.block_on(native_broadcast::serve()),
        ("native-hello", []) => runtime.block_on(native_hello::serve()),
        _ => anyhow::bail!("unknown role or arguments: {role} {args:?}"),
    }
}

/// Every server gets the same runtime: tokio's multi-thread scheduler (what the host's own
/// binary uses) with a single worker, since the process is pinned to a single core.
fn server_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the server's async runtime")
}

/// `pin-exec <cpu> <program> <args…>`: pins this process, then replaces it with `program`,
/// which keeps the pinning (and the parent-death signal) across `exec`. This stands in for
/// `taskset`, which is not on every machine, without `unsafe` `pre_exec` hooks.
fn pin_exec(args: &[String]) -> anyhow::Result<()> {
    let [cpu, program, rest @ ..] = args else {
        anyhow::bail!("pin-exec needs <cpu> <program> [args…]");
    };
    affinity::pin_this_process(cpu.parse().context("pin-exec CPU")?)?;
    let err = Command::new(program).args(rest).exec();
    Err(err).with_context(|| format!("executing {program}"))
}

/// The arguments that make this binary run `program args…` pinned to the server core.
pub(crate) fn pinned_command(program: &str, args: &[OsString]) -> anyhow::Result<Command> {
    let mut command = Command::new(std::env::current_exe().context("finding this binary")?);
    command
        .arg(ROLE_ARG)
        .arg("pin-exec")
        .arg(affinity::SERVER_CPU.to_string())
        .arg(program)
        .args(args);
    Ok(command)
}
