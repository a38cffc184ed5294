//! The listener: binds the address, loads the plugins folder and keeps it watched, accepts
//! connections and serves each with hyper on its own task (cleartext: HTTP/1.1 with upgrades;
//! with `--tls-cert`: the TLS handshake first, then HTTP/2 or HTTP/1.1 as ALPN chose), and shuts
//! down gracefully: stop accepting, let requests and sessions finish up to the drain timeout,
//! then close what is left.

mod connection;
mod h2;
mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument as _, Span};

use crate::config::pubsub::{PubSubBackend, PubSubConfig};
use crate::config::{DEFAULT_MAX_HEADERS, HostConfig, Limits};
use crate::engine::runtime::Runtime;
use crate::http::admission::HostStats;
use crate::http::dispatch::Dispatcher;
use crate::http::gauge::GaugeGuard;
use crate::http::transport::Transport;
use crate::observe::admin::{Admin, Health};
use crate::observe::export::Sources;
use crate::observe::metrics::Metrics;
use crate::plugins::loader::Loader;
use crate::plugins::registry::Registry;
use crate::plugins::watcher::{self, FolderWatch};
use crate::ratelimit::HostWarnings;
use crate::session::SessionHooks;
use crate::session::managed::awake::AwakeSlots;
use crate::session::managed::{self, registry::Hub};
use crate::topics::TopicBackend;
use crate::topics::local::LocalTopics;
use crate::topics::redis::{PubSubStats, QueueLimits, RedisTopics};
use connection::ConnectionContext;

/// Connections the kernel may queue before the host accepts them. The standard library asks
/// for 128, which a burst of connects overflows (the client then waits a second to retry); the
/// kernel caps this at `net.core.somaxconn` (4,096 on current Linux).
const LISTEN_BACKLOG: u32 = 4096;
/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);
/// hyper's smallest allowed read buffer.
const MIN_READ_BUFFER: usize = 8 * 1024;
/// While new connections are being refused for being over the limit, at most one log line per
/// this interval says how many were.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A bound, loaded host, ready to [`run`](Server::run_until).
pub struct Server {
    listener: TcpListener,
    dispatcher: Arc<Dispatcher>,
    /// hyper's settings for every connection, from the limits.
    http: http1::Builder,
    /// hyper's HTTP/2 settings, for TLS connections that chose `h2`.
    http2: hyper::server::conn::http2::Builder<h2::SpanExecutor>,
    /// The TLS side of the listener, with `--tls-cert`.
    tls: Option<Arc<tls::Tls>>,
    /// Every HTTP connection task (not yet upgraded), so shutdown can wait for them.
    connections: TaskTracker,
    /// Cancelled at shutdown: connections finish their request in flight, then close.
    stop_connections: CancellationToken,
    /// Counters of cross-host delivery (all zero with the `local` backend).
    pubsub: Arc<PubSubStats>,
    /// What `/healthz` and `/readyz` answer.
    health: Arc<Health>,
    /// The admin listener, if `--admin-listen` asked for one; started by `run`.
    admin: Option<Admin>,
    /// Hot reload stays on as long as the server lives.
    _watch: FolderWatch,
}

impl Server {
    /// Binds `config.listen`, loads every plugin in `config.plugins_dir` and starts watching it.
    pub async fn start(config: HostConfig, runtime: Arc<Runtime>) -> anyhow::Result<Self> {
        check_plugins_dir(&config.plugins_dir)?;
        let listener =
            bind(config.listen).with_context(|| format!("cannot listen on {}", config.listen))?;
        let registry = Arc::new(Registry::default());
        let metrics = Arc::new(Metrics::default());
        let loader = Arc::new(Loader::new(
            runtime.clone(),
            registry.clone(),
            config.plugins_dir.clone(),
            metrics.clone(),
        ));
        // Watch before the first scan, so a plugin dropped in meanwhile is not missed.
        let watch = watcher::watch(loader.clone(), config.reload_debounce)?;
        loader.load_all().await?;
        // A certificate that cannot be used stops the start, with the file named.
        let tls = match &config.tls {
            Some(files) => Some(Arc::new(tls::Tls::start(files, runtime.limits())?)),
            None => None,
        };
        let pubsub = Arc::new(PubSubStats::default());
        let topics = topic_backend(&config.pubsub, runtime.limits(), pubsub.clone())?;
        let dispatcher = Arc::new(dispatcher(
            registry.clone(),
            topics,
            runtime.limits(),
            config.access_log,
            Span::current(),
        ));
        let health = Arc::new(Health::new(matches!(
            config.pubsub.backend,
            PubSubBackend::Redis(_)
        )));
        let admin = match config.admin_listen {
            Some(addr) => {
                let sources = Sources {
                    metrics,
                    stats: dispatcher.stats.clone(),
                    pubsub: pubsub.clone(),
                    registry,
                    instance_slots: runtime.limits().max_instances(),
                };
                Some(Admin::bind(addr, sources, health.clone()).await?)
            }
            None => None,
        };
        Ok(Self {
            listener,
            http: http_settings(runtime.limits()),
            http2: h2::settings(runtime.limits()),
            tls,
            dispatcher,
            pubsub,
            health,
            admin,
            connections: TaskTracker::new(),
            stop_connections: CancellationToken::new(),
            _watch: watch,
        })
    }

    /// Live counts of instances and sessions, for monitoring and tests.
    pub fn stats(&self) -> Arc<HostStats> {
        self.dispatcher.stats.clone()
    }

    /// Counters of cross-host delivery through the pub/sub broker, for monitoring and tests
    /// (all zero with `--pubsub local`).
    pub fn pubsub_stats(&self) -> Arc<PubSubStats> {
        self.pubsub.clone()
    }

    /// The address of the admin listener (`/metrics`, `/healthz`, `/readyz`), if there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(Admin::local_addr)
    }

    fn limits(&self) -> &Limits {
        &self.dispatcher.limits
    }

    /// The address the server accepts connections on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has a local address")
    }

    /// Accepts and serves connections until `shutdown` completes, then shuts down gracefully:
    /// requests in flight and live sessions get up to the drain timeout to finish, after which
    /// sessions are closed (their plugins see the end of input first, so a WebSocket can send a
    /// `1001 going away`). Returns once everything has ended.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        self.run_until_cut_short(shutdown, std::future::pending())
            .await
    }

    /// Like [`run_until`](Self::run_until), but if `cut_short` completes while the host is
    /// draining (a second SIGTERM or Ctrl-C), the drain ends at once: the sessions still open
    /// are told to close and the host returns without waiting for them.
    pub async fn run_until_cut_short(
        mut self,
        shutdown: impl Future<Output = ()>,
        cut_short: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr(), "listening");
        let stop_admin = CancellationToken::new();
        if let Some(admin) = self.admin.take() {
            if let Some(addr) = admin.local_addr() {
                tracing::info!(%addr, "admin listener: /metrics, /healthz, /readyz");
            }
            tokio::spawn(admin.serve(stop_admin.clone()).in_current_span());
        }
        // The admin listener serves until everything has drained, reporting the shutdown.
        let _stop_admin = stop_admin.drop_guard();
        tokio::pin!(shutdown);
        let max_connections = self.limits().max_connections();
        let mut refusals = RefusalLog::default();
        loop {
            tokio::select! {
                // Cancel safety: `accept` loses no connection when the other branch wins.
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => self.admit(stream, peer, &mut refusals),
                    Err(err) => {
                        tracing::warn!("accepting a connection failed: {err}");
                        tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    }
                },
                // Cancel safety: a sleep; the refusals stay counted until the next report.
                () = tokio::time::sleep_until(refusals.next_report()), if refusals.pending() => {
                    refusals.report(max_connections);
                }
                () = &mut shutdown => break,
            }
        }
        self.health.shutting_down();
        if refusals.pending() {
            refusals.report(max_connections);
        }
        let Self {
            listener,
            dispatcher,
            connections,
            stop_connections,
            ..
        } = self;
        // Closing the socket turns new clients away at once instead of leaving them queued.
        drop(listener);
        tokio::select! {
            () = drain(&dispatcher, &connections, &stop_connections) => {}
            () = cut_short => {
                let live = dispatcher.stats.live_sessions();
                tracing::info!(
                    live_sessions = live,
                    live_websockets = dispatcher.stats.live_websockets(),
                    "asked again to stop: ending the drain now"
                );
                dispatcher.sessions.shutdown.cancel();
            }
        }
        Ok(())
    }

    /// Serves a newly accepted connection if the host has room for it; closes it at once
    /// otherwise.
    fn admit(&self, stream: TcpStream, peer: SocketAddr, refusals: &mut RefusalLog) {
        let max = self.limits().max_connections();
        match self.dispatcher.stats.admit_connection(max) {
            Some(slot) => self.spawn_connection(stream, peer, slot),
            None => {
                drop(stream);
                refusals.refused(max);
            }
        }
    }

    fn spawn_connection(&self, stream: TcpStream, peer: SocketAddr, slot: GaugeGuard) {
        // Small writes (WebSocket frames, line protocols) must not wait for Nagle.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%peer, "setting TCP_NODELAY failed: {err}");
        }
        let context = ConnectionContext {
            http: self.http.clone(),
            dispatcher: self.dispatcher.clone(),
            stop: self.stop_connections.clone(),
            slot,
            transport: Transport {
                tls: self.tls.is_some(),
            },
        };
        let Some(tls) = &self.tls else {
            let connection = connection::serve(stream, peer, context);
            self.connections.spawn(connection.in_current_span());
            return;
        };
        // Taken here, in the accept loop, so a connection over the limit costs no task.
        let Some(permit) = tls.admit(self.limits().max_tls_handshakes) else {
            return;
        };
        let tls = tls.clone();
        let http2 = self.http2.clone();
        let connection = async move {
            let Some((stream, alpn)) = tls.handshake(stream, peer, permit).await else {
                return;
            };
            match alpn {
                tls::Alpn::Http2 => {
                    let ConnectionContext {
                        dispatcher,
                        stop,
                        slot,
                        ..
                    } = context;
                    h2::serve(stream, peer, http2, dispatcher, stop, slot).await;
                }
                tls::Alpn::Http11 => connection::serve(stream, peer, context).await,
            }
        };
        self.connections.spawn(connection.in_current_span());
    }
}

/// What every request needs, and every session and managed WebSocket shares.
fn dispatcher(
    registry: Arc<Registry>,
    topics: Arc<dyn TopicBackend>,
    limits: &Limits,
    access_log: bool,
    host_span: Span,
) -> Dispatcher {
    let stats = Arc::new(HostStats::default());
    let sessions = SessionHooks::default();
    let managed = Arc::new(managed::Hooks {
        wake: Arc::new(managed::WakeContext {
            registry: registry.clone(),
            stats: stats.clone(),
            awake: Arc::new(AwakeSlots::new(
                limits.max_awake_websockets,
                stats.awake_websockets.clone(),
            )),
        }),
        // Sessions and managed WebSockets are closed at the same moment of a shutdown.
        shutdown: sessions.shutdown.clone(),
        access_log,
    });
    Dispatcher {
        registry,
        limits: limits.clone(),
        stats,
        sessions,
        warnings: HostWarnings::default(),
        hub: Arc::new(Hub::new(topics)),
        managed,
        host_span,
        access_log,
    }
}

/// The topic registry `config` asks for; a Redis one starts connecting in the background.
fn topic_backend(
    config: &PubSubConfig,
    limits: &Limits,
    stats: Arc<PubSubStats>,
) -> anyhow::Result<Arc<dyn TopicBackend>> {
    Ok(match &config.backend {
        PubSubBackend::Local => Arc::new(LocalTopics::default()),
        PubSubBackend::Redis(url) => {
            tracing::info!(redis = %url, prefix = config.prefix.as_str(), "pubsub: topics shared through Redis");
            let queue = QueueLimits {
                max_messages: limits.pubsub_queue_messages,
                max_bytes: limits.pubsub_queue_bytes,
            };
            Arc::new(
                RedisTopics::start(url, &config.prefix, queue, stats)
                    .with_context(|| format!("cannot use Redis at {url}"))?,
            )
        }
    })
}

/// A plugins folder that is not there, or is not a folder, is an error naming it.
fn check_plugins_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => bail!(
            "plugins folder {} is not a folder (pass --plugins <dir>)",
            dir.display()
        ),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => bail!(
            "plugins folder {} does not exist (create it, or pass --plugins <dir>)",
            dir.display()
        ),
        Err(err) => {
            Err(err).with_context(|| format!("cannot read plugins folder {}", dir.display()))
        }
    }
}

/// hyper's settings from the limits. The head size limit is hyper's `max_header_size`, which
/// counts the head exactly as received; the read buffer is at least that large, so it is never
/// the buffer that refuses a head within the limit.
fn http_settings(limits: &Limits) -> http1::Builder {
    let mut http = http1::Builder::new();
    // hyper enforces the header read timeout only when a timer is set.
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(MIN_READ_BUFFER));
    // Below hyper's default the header slots stay on the stack; setting it at all moves them
    // to the heap for every request.
    if limits.max_headers != DEFAULT_MAX_HEADERS {
        http.max_headers(limits.max_headers);
    }
    http
}

/// Connections refused for being over the limit, reported at most once per
/// [`REFUSAL_LOG_INTERVAL`] so that a flood of connections cannot flood the log.
#[derive(Debug, Default)]
struct RefusalLog {
    /// Refusals not yet reported.
    unreported: u64,
    /// When the last report was logged.
    last_report: Option<Instant>,
}

impl RefusalLog {
    /// Counts a refusal; the first one after a quiet interval is reported at once.
    fn refused(&mut self, max: u32) {
        self.unreported += 1;
        if self
            .last_report
            .is_none_or(|at| at.elapsed() >= REFUSAL_LOG_INTERVAL)
        {
            self.report(max);
        }
    }

    fn pending(&self) -> bool {
        self.unreported > 0
    }

    fn next_report(&self) -> Instant {
        self.last_report
            .map_or_else(Instant::now, |at| at + REFUSAL_LOG_INTERVAL)
    }

    fn report(&mut self, max: u32) {
        tracing::warn!(
            refused = self.unreported,
            "connection limit of {max} open connections reached: closed {} new connection(s) \
             at once (at most one such line every {REFUSAL_LOG_INTERVAL:?})",
            self.unreported
        );
        self.unreported = 0;
        self.last_report = Some(Instant::now());
    }
}

/// Lets requests in flight and sessions finish for up to the drain timeout, then closes the
/// sessions still live.
async fn drain(
    dispatcher: &Dispatcher,
    connections: &TaskTracker,
    stop_connections: &CancellationToken,
) {
    let drain_timeout = dispatcher.limits.drain_timeout;
    let sessions = &dispatcher.sessions;
    let live = dispatcher.stats.live_sessions();
    tracing::info!(
        live_sessions = live,
        live_websockets = dispatcher.stats.live_websockets(),
        "stopped accepting connections; draining for up to {drain_timeout:?}"
    );
    stop_connections.cancel();
    connections.close();
    sessions.tracker.close();
    let drained = tokio::time::timeout(drain_timeout, async {
        connections.wait().await;
        sessions.tracker.wait().await;
    })
    .await;
    if drained.is_err() {
        let live = dispatcher.stats.live_sessions();
        tracing::info!(
            live_sessions = live,
            live_websockets = dispatcher.stats.live_websockets(),
            "drain timeout passed; closing live sessions and managed WebSockets (1001)"
        );
        sessions.shutdown.cancel();
        // Sessions end within their shutdown grace; connections still reading a request
        // head are simply dropped with the runtime.
        sessions.tracker.wait().await;
    }
    tracing::info!("shut down");
}

/// A listening socket on `addr` with [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`, as the standard
/// library sets it, so a restarted host can bind while old connections linger in TIME_WAIT).
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}
