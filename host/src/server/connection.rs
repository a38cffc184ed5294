//! One accepted HTTP connection: served by hyper (HTTP/1.1 with upgrades), plus the answers
//! hyper leaves to its user when it gives up on a connection: `408 Request Timeout` to a client
//! that stalls in the middle of a request head, and an HTTP/2 `GOAWAY` to a client that opens
//! with the HTTP/2 connection preface (prior knowledge).
//!
//! hyper returns the connection's socket with its error (`into_parts`), so the reply goes out on
//! the socket itself and an upgraded connection stays a plain `TcpStream` (see `pump::split`).
//! The same code serves HTTP/1.1 over TLS (the stream is then rustls's).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hyper::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

use crate::http::dispatch::Dispatcher;
use crate::http::gauge::GaugeGuard;
use crate::http::transport::Transport;

/// How long a connection closed with a reply (408, GOAWAY) goes on being read and discarded
/// after the reply, so that bytes the client is still sending do not make the kernel reset the
/// connection and throw the reply away before the client has read it (RFC 9112 §9.6).
const LINGER: Duration = Duration::from_secs(1);
/// Most bytes read and discarded while lingering.
const LINGER_MAX_BYTES: usize = 64 * 1024;
/// HTTP/2 error code `HTTP_1_1_REQUIRED` (RFC 9113 §7).
const H2_HTTP_1_1_REQUIRED: u32 = 0xd;
/// Debug data of the `GOAWAY`, for the humans reading a client's error.
const H2_GOAWAY_MESSAGE: &[u8] = b"this server speaks HTTP/1.1 only";

/// What a connection task needs besides its socket.
pub(crate) struct ConnectionContext {
    /// hyper's settings, shared by every connection.
    pub(crate) http: http1::Builder,
    pub(crate) dispatcher: Arc<Dispatcher>,
    /// Cancelled at shutdown: the connection finishes its request in flight, then closes.
    pub(crate) stop: CancellationToken,
    /// This connection's place under the connection limit, given back when the task ends.
    pub(crate) slot: GaugeGuard,
    /// What the connection is (TLS or not), put in every request for the dispatcher.
    pub(crate) transport: Transport,
}

/// Serves `stream` until the client or the host closes it, or until it is upgraded (the
/// session then owns the socket).
pub(crate) async fn serve<S>(stream: S, peer: SocketAddr, context: ConnectionContext)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ConnectionContext {
        http,
        dispatcher,
        stop,
        slot: _slot,
        transport,
    } = context;
    let service = service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(transport);
        dispatcher.clone().serve(request)
    });
    // Not pinned in place: after an error hyper hands the socket back, by value.
    let mut connection = http
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let result = tokio::select! {
        // Cancel safety: the connection future is polled again below, not dropped.
        result = &mut connection => result,
        () = stop.cancelled() => {
            std::pin::Pin::new(&mut connection).graceful_shutdown();
            (&mut connection).await
        }
    };
    let Err(err) = result else { return };
    let abandoned = if err.is_timeout() {
        Abandoned::HeadTimeout
    } else if err.is_parse_version_h2() {
        Abandoned::Http2Preface
    } else {
        tracing::debug!(%peer, "connection ended with an error: {err}");
        return;
    };
    // `None` only after an upgrade, which ends without an error.
    let Some(parts) = connection.into_parts() else {
        return;
    };
    let stream = parts.io.into_inner();
    match abandoned {
        // No byte of a next request: an idle keep-alive connection (or one that never sent
        // anything) is closed without a reply, which a client may not take for an answer to
        // a request it is sending at that moment.
        Abandoned::HeadTimeout if parts.read_buf.is_empty() => {
            tracing::debug!(%peer, "closing a connection idle past the header read timeout");
        }
        Abandoned::HeadTimeout => {
            tracing::debug!(
                %peer,
                received = parts.read_buf.len(),
                "request head not complete within the header read timeout; answering 408"
            );
            reply_and_close(stream, &request_timeout()).await;
        }
        Abandoned::Http2Preface => {
            // Client behaviour, not a host fault: debug, so a client cannot flood the log.
            tracing::debug!(
                %peer,
                "HTTP/2 connection preface received; answering GOAWAY(HTTP_1_1_REQUIRED)"
            );
            reply_and_close(stream, &http2_goaway()).await;
        }
    }
}

/// Why hyper gave up on a connection, when the client is owed a reply.
#[derive(Debug, Clone, Copy)]
enum Abandoned {
    /// The header read timeout passed before a request head was complete.
    HeadTimeout,
    /// The client opened with the HTTP/2 connection preface.
    Http2Preface,
}

/// Sends `reply`, closes the sending side, then reads and discards what the client still sends
/// for a bounded time before the socket is dropped.
async fn reply_and_close<S>(mut stream: S, reply: &[u8])
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let sent = tokio::time::timeout(LINGER, async {
        stream.write_all(reply).await?;
        stream.shutdown().await
    })
    .await;
    if !matches!(sent, Ok(Ok(()))) {
        return;
    }
    let mut discard = [0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        let mut total = 0;
        while total < LINGER_MAX_BYTES {
            match stream.read(&mut discard).await {
                Ok(0) | Err(_) => break,
                Ok(read) => total += read,
            }
        }
    })
    .await;
}

/// The complete `408` response, with `connection: close`.
fn request_timeout() -> Vec<u8> {
    let body = "request head not received within the header read timeout\n";
    format!(
        "HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ndate: {}\r\n\
         content-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n\r\n{body}",
        httpdate::fmt_http_date(SystemTime::now()),
        body.len(),
    )
    .into_bytes()
}

/// What an HTTP/2 client understands as "use HTTP/1.1": the server's connection preface (an
/// empty `SETTINGS` frame), then `GOAWAY` with no stream processed and `HTTP_1_1_REQUIRED`
/// (RFC 9113 §3.4, §6.8).
fn http2_goaway() -> Vec<u8> {
    const SETTINGS: u8 = 0x4;
    const GOAWAY: u8 = 0x7;
    let mut frames = Vec::new();
    push_frame_header(&mut frames, 0, SETTINGS);
    let payload_len = 8 + H2_GOAWAY_MESSAGE.len() as u32;
    push_frame_header(&mut frames, payload_len, GOAWAY);
    frames.extend_from_slice(&0u32.to_be_bytes()); // last stream id
    frames.extend_from_slice(&H2_HTTP_1_1_REQUIRED.to_be_bytes());
    frames.extend_from_slice(H2_GOAWAY_MESSAGE);
    frames
}

/// An HTTP/2 frame header on stream 0 with no flags: 24-bit length, type, flags, stream id.
fn push_frame_header(frames: &mut Vec<u8>, payload_len: u32, frame_type: u8) {
    let [_, len_high, len_mid, len_low] = payload_len.to_be_bytes();
    frames.extend_from_slice(&[len_high, len_mid, len_low, frame_type, 0]);
    frames.extend_from_slice(&0u32.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goaway_follows_an_empty_settings_frame() {
        let frames = http2_goaway();
        assert_eq!(frames[..9], [0, 0, 0, 4, 0, 0, 0, 0, 0]);
        let len = 8 + H2_GOAWAY_MESSAGE.len();
        assert_eq!(frames[9..12], [0, 0, len as u8]);
        assert_eq!(frames[12], 7);
        assert_eq!(frames[18..22], [0, 0, 0, 0]);
        assert_eq!(frames[22..26], [0, 0, 0, 0xd]);
        assert_eq!(frames.len(), 9 + 9 + len);
    }

    #[test]
    fn the_408_is_complete_and_closes() {
        let reply = String::from_utf8(request_timeout()).unwrap();
        let (head, body) = reply.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 408 Request Timeout\r\n"));
        assert!(head.contains("\r\nconnection: close\r\n"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }
}
