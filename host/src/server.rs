//! The listener: binds the address, loads the plugins folder and keeps it watched, accepts
//! connections and serves each with hyper (HTTP/1.1 with upgrades) on its own task, and shuts
//! down gracefully: stop accepting, let requests and sessions finish up to the drain timeout,
//! then close what is left.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::admission::HostStats;
use crate::config::{HostConfig, Limits};
use crate::dispatch::Dispatcher;
use crate::loader::Loader;
use crate::ratelimit::HostWarnings;
use crate::registry::Registry;
use crate::runtime::Runtime;
use crate::session::SessionHooks;
use crate::watcher::{self, FolderWatch};

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);
/// hyper's smallest allowed read buffer; the header limit cannot go below it.
const MIN_HEADER_BUFFER: usize = 8 * 1024;

/// A bound, loaded host, ready to [`run`](Server::run_until).
pub struct Server {
    listener: TcpListener,
    dispatcher: Arc<Dispatcher>,
    /// Every HTTP connection task (not yet upgraded), so shutdown can wait for them.
    connections: TaskTracker,
    /// Cancelled at shutdown: connections finish their request in flight, then close.
    stop_connections: CancellationToken,
    /// Hot reload stays on as long as the server lives.
    _watch: FolderWatch,
}

impl Server {
    /// Binds `config.listen`, loads every plugin in `config.plugins_dir` and starts watching it.
    pub async fn start(config: HostConfig, runtime: Arc<Runtime>) -> anyhow::Result<Self> {
        if !config.plugins_dir.is_dir() {
            bail!(
                "plugins folder {} does not exist (create it, or pass --plugins <dir>)",
                config.plugins_dir.display()
            );
        }
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let registry = Arc::new(Registry::default());
        let loader = Arc::new(Loader {
            runtime: runtime.clone(),
            registry: registry.clone(),
            dir: config.plugins_dir.clone(),
            refreshing: tokio::sync::Mutex::new(()),
        });
        // Watch before the first scan, so a plugin dropped in meanwhile is not missed.
        let watch = watcher::watch(loader.clone(), config.reload_debounce)?;
        loader.load_all().await?;
        Ok(Self {
            listener,
            dispatcher: Arc::new(Dispatcher {
                registry,
                limits: runtime.limits().clone(),
                stats: Arc::new(HostStats::default()),
                sessions: SessionHooks::default(),
                warnings: HostWarnings::default(),
            }),
            connections: TaskTracker::new(),
            stop_connections: CancellationToken::new(),
            _watch: watch,
        })
    }

    /// Live counts of instances and sessions, for monitoring and tests.
    pub fn stats(&self) -> Arc<HostStats> {
        self.dispatcher.stats.clone()
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
        tracing::info!(addr = %self.local_addr(), "listening");
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                // Cancel safety: `accept` loses no connection when the other branch wins.
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => self.spawn_connection(stream, peer),
                    Err(err) => {
                        tracing::warn!("accepting a connection failed: {err}");
                        tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    }
                },
                () = &mut shutdown => break,
            }
        }
        let Self {
            listener,
            dispatcher,
            connections,
            stop_connections,
            _watch,
        } = self;
        // Closing the socket turns new clients away at once instead of leaving them queued.
        drop(listener);
        drain(&dispatcher, &connections, &stop_connections).await;
        Ok(())
    }

    fn spawn_connection(&self, stream: TcpStream, peer: SocketAddr) {
        // Small writes (WebSocket frames, line protocols) must not wait for Nagle.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%peer, "setting TCP_NODELAY failed: {err}");
        }
        let dispatcher = self.dispatcher.clone();
        let mut http = http1::Builder::new();
        // hyper enforces the header read timeout only when a timer is set.
        http.timer(TokioTimer::new())
            .header_read_timeout(self.limits().header_read_timeout)
            .max_buf_size(self.limits().max_header_bytes.max(MIN_HEADER_BUFFER));
        let stop = self.stop_connections.clone();
        let connection = async move {
            let service = service_fn(move |request| dispatcher.clone().serve(request));
            let connection = http
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(connection);
            let result = tokio::select! {
                // Cancel safety: the connection future is polled again below, not dropped.
                result = connection.as_mut() => result,
                () = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = result {
                tracing::debug!(%peer, "connection ended with an error: {err}");
            }
        };
        self.connections.spawn(connection.in_current_span());
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
            "drain timeout passed; closing live sessions"
        );
        sessions.shutdown.cancel();
        // Sessions end within their shutdown grace; connections still reading a request
        // head are simply dropped with the runtime.
        sessions.tracker.wait().await;
    }
    tracing::info!("shut down");
}
