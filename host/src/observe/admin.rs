//! The admin listener (`--admin-listen`): `/metrics` (Prometheus text), `/healthz` and
//! `/readyz`, on an address of its own so they are never reachable through the public
//! listener. It serves plain HTTP/1.1 with hyper; every request is answered from memory.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::observe::export::{self, Sources};

/// The content type of the Prometheus text format.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// How long a scraper may take to send its request head: the admin port is for monitoring, not
/// for clients that hold connections open.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether the host is serving and ready, as `/healthz` and `/readyz` report it.
#[derive(Debug, Default)]
pub struct Health {
    /// Set when the graceful shutdown starts: load balancers stop sending new work.
    shutting_down: AtomicBool,
    /// Whether readiness needs the pub/sub broker connected (`--pubsub redis://…`).
    needs_broker: bool,
}

impl Health {
    /// Health for a host whose readiness needs the broker when `needs_broker`.
    pub(crate) fn new(needs_broker: bool) -> Self {
        Self {
            shutting_down: AtomicBool::new(false),
            needs_broker,
        }
    }

    /// From now on `/healthz` and `/readyz` answer `503`.
    pub(crate) fn shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }
}

/// The admin listener, bound and ready to serve.
pub(crate) struct Admin {
    listener: TcpListener,
    sources: Sources,
    health: Arc<Health>,
}

impl Admin {
    /// Binds `addr`.
    pub(crate) async fn bind(
        addr: SocketAddr,
        sources: Sources,
        health: Arc<Health>,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (--admin-listen)"))?;
        Ok(Self {
            listener,
            sources,
            health,
        })
    }

    /// The address it accepts on (useful with port 0).
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves scrapes until `stop` is cancelled.
    pub(crate) async fn serve(self, stop: CancellationToken) {
        let Self {
            listener,
            sources,
            health,
        } = self;
        let state = Arc::new((sources, health));
        let connections = TaskTracker::new();
        loop {
            let (stream, _) = tokio::select! {
                // Cancel safety: `accept` loses no connection when the other branch wins.
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        tracing::warn!("admin listener: accepting failed: {err}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = stop.cancelled() => break,
            };
            let state = state.clone();
            let stop = stop.clone();
            connections.spawn(async move {
                let service = service_fn(move |request| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(answer(&request, &state.0, &state.1)) }
                });
                let mut http = http1::Builder::new();
                http.timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT);
                let connection = http.serve_connection(TokioIo::new(stream), service);
                tokio::pin!(connection);
                tokio::select! {
                    _ = &mut connection => {}
                    () = stop.cancelled() => {}
                }
            });
        }
        connections.close();
    }
}

/// The answer to one admin request.
fn answer(
    request: &Request<Incoming>,
    sources: &Sources,
    health: &Health,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
    }
    match request.uri().path() {
        "/metrics" => {
            let mut response = Response::new(Full::new(Bytes::from(export::render(sources))));
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(METRICS_CONTENT_TYPE),
            );
            response
        }
        "/healthz" if health.is_shutting_down() => {
            text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            if health.is_shutting_down() {
                text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
            } else if health.needs_broker && !sources.pubsub.is_up() {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "pub/sub broker not connected\n",
                )
            } else {
                text(StatusCode::OK, "ready\n")
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: /metrics, /healthz, /readyz\n",
        ),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
