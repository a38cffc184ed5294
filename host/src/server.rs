//! The listener: binds the address, loads the plugins folder and keeps it watched, accepts
//! connections and serves each with hyper (HTTP/1.1 with upgrades) on its own task.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tracing::Instrument as _;

use crate::config::HostConfig;
use crate::dispatch::Dispatcher;
use crate::loader::Loader;
use crate::registry::Registry;
use crate::runtime::Runtime;
use crate::watcher::{self, FolderWatch};

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// A bound, loaded host, ready to [`run`](Server::run_until).
pub struct Server {
    listener: TcpListener,
    dispatcher: Arc<Dispatcher>,
    /// hyper only enforces this when a timer is set, which `serve_connection` does.
    header_read_timeout: Duration,
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
                max_request_body: runtime.limits().max_request_body,
            }),
            header_read_timeout: runtime.limits().header_read_timeout,
            _watch: watch,
        })
    }

    /// The address the server accepts connections on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has a local address")
    }

    /// Accepts and serves connections until `shutdown` completes. Connections already being
    /// served are left to finish on their own tasks.
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
        tracing::info!("stopped accepting connections");
        Ok(())
    }

    fn spawn_connection(&self, stream: TcpStream, peer: SocketAddr) {
        // Small writes (WebSocket frames, line protocols) must not wait for Nagle.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%peer, "setting TCP_NODELAY failed: {err}");
        }
        let dispatcher = self.dispatcher.clone();
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout);
        let connection = async move {
            let service = service_fn(move |request| dispatcher.clone().serve(request));
            if let Err(err) = http
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await
            {
                tracing::debug!(%peer, "connection ended with an error: {err}");
            }
        };
        tokio::spawn(connection.in_current_span());
    }
}
