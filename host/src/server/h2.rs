//! One HTTP/2 connection (a TLS client that chose `h2` by ALPN), served by hyper's HTTP/2
//! server: every stream is a request for the same dispatcher as HTTP/1.1, and the connection
//! announces `SETTINGS_ENABLE_CONNECT_PROTOCOL` so WebSocket (and other protocols) can ride
//! extended CONNECT streams (RFC 8441, see `http::connect`). Each such stream's DATA frames are
//! its session's bytes, under HTTP/2 flow control: a session that does not read stops
//! returning window to the client, which then stops sending.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::Request;
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::config::Limits;
use crate::http::dispatch::Dispatcher;
use crate::http::gauge::GaugeGuard;
use crate::http::transport::Transport;

/// Streams a client may have open at once on one connection (each may be a session). hyper's
/// own default; sessions are bounded host-wide by `--max-sessions` besides.
const MAX_CONCURRENT_STREAMS: u32 = 200;

/// How long a connection may be silent before the host pings it, and how long the client then
/// has to answer before the connection is closed: an HTTP/2 connection carries many streams and
/// sessions, so a peer that vanished without a FIN must not hold them until TCP gives up.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// hyper's HTTP/2 settings from the limits: the request head limit is the header list limit
/// (HPACK-decoded size), and extended CONNECT is on.
pub(crate) fn settings(limits: &Limits) -> http2::Builder<SpanExecutor> {
    let mut http = http2::Builder::new(SpanExecutor);
    http.timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .keep_alive_interval(Some(KEEP_ALIVE_INTERVAL))
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .enable_connect_protocol();
    http
}

/// Serves `stream` until the client or the host closes it. At shutdown the client is sent
/// `GOAWAY` and streams in progress may finish; sessions on the connection end with the drain.
pub(crate) async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    http: http2::Builder<SpanExecutor>,
    dispatcher: Arc<Dispatcher>,
    stop: CancellationToken,
    _slot: GaugeGuard,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let transport = Transport { tls: true };
    let service = service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(transport);
        dispatcher.clone().serve(request)
    });
    let connection = http.serve_connection(TokioIo::new(stream), service);
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
        tracing::debug!(%peer, "HTTP/2 connection ended with an error: {err}");
    }
}

/// Runs each stream's request on a task of its own, in the connection's span (hyper's
/// `TokioExecutor` would drop it), so a request's lines name the host that served it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpanExecutor;

impl<F> hyper::rt::Executor<F> for SpanExecutor
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        tokio::spawn(future.in_current_span());
    }
}
