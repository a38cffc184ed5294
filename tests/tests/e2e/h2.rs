//! WebSocket over HTTP/2 (RFC 8441) and other protocols over extended CONNECT, with the `h2`
//! crate as the client: a managed WebSocket plugin (the host's framing on the stream) and a raw
//! one (the stream's DATA frames are the session's bytes), the version check, a non-WebSocket
//! `:protocol` allowed or refused by `allowed_upgrades`, and backpressure through flow control.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use hyper::StatusCode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use switchyard_tests::tls::{H2Stream, TestCert, extended_connect};
use switchyard_tests::{TestHost, bounded};

const LOG_WAIT: Duration = Duration::from_secs(10);
const WEBSOCKET_13: [(&str, &str); 1] = [("sec-websocket-version", "13")];

async fn tls_host(
    plugins: &[&str],
    sidecars: &[(&str, &str)],
) -> (TestHost, TestCert, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a folder for the certificate");
    let cert = TestCert::generate();
    let files = cert.write_to(dir.path());
    let host = TestHost::start_tls(plugins, sidecars, files).await;
    (host, cert, dir)
}

/// A WebSocket over an extended CONNECT stream to `path`.
async fn websocket_over_h2(
    host: &TestHost,
    cert: &TestCert,
    path: &str,
) -> WebSocketStream<H2Stream> {
    let (head, stream) =
        extended_connect(host.addr, &cert.der, path, "websocket", &WEBSOCKET_13).await;
    assert_eq!(head.status, StatusCode::OK, "{head:?}");
    // RFC 8441 §5: no handshake fields of HTTP/1.1 in the answer.
    assert!(
        !head.headers.contains_key("sec-websocket-accept"),
        "{head:?}"
    );
    assert!(!head.headers.contains_key("upgrade"), "{head:?}");
    let stream = stream.expect("an open stream");
    WebSocketStream::from_raw_socket(stream, Role::Client, None).await
}

async fn round_trip(client: &mut WebSocketStream<H2Stream>, message: Message) {
    client.send(message.clone()).await.expect("sending");
    let echoed = client
        .next()
        .await
        .expect("the stream stayed open")
        .expect("a valid frame");
    assert_eq!(echoed, message);
}

/// A managed and a raw WebSocket plugin each echo over an HTTP/2 stream, their sessions logged
/// as extended CONNECT over TLS, and close cleanly.
#[tokio::test]
async fn websocket_over_http2_reaches_managed_and_raw_plugins() {
    bounded(async {
        let (host, cert, _dir) = tls_host(&["echo", "echo-raw"], &[]).await;
        for path in ["/echo", "/echo-raw"] {
            let mut client = websocket_over_h2(&host, &cert, path).await;
            round_trip(&mut client, Message::text("héllo over h2")).await;
            // Larger than the stream's initial window (64 KiB): flow control moves it along.
            round_trip(&mut client, Message::binary(vec![3u8; 300 * 1024])).await;
            client.close(None).await.expect("closing");
            // The close handshake completes: the server's close frame arrives.
            let end = tokio::time::timeout(LOG_WAIT, async {
                while let Some(Ok(message)) = client.next().await {
                    if message.is_close() {
                        return true;
                    }
                }
                true
            })
            .await;
            assert!(end.is_ok(), "the close handshake over h2 did not finish");
        }
        host.wait_for_log(
            &[
                "session started",
                "transport=\"h2-connect\"",
                "tls=true",
                "websocket{plugin=echo",
            ],
            LOG_WAIT,
        )
        .await;
        host.wait_for_log(
            &[
                "session started",
                "transport=\"h2-connect\"",
                "connect_protocol=\"websocket\"",
                "path=/echo-raw",
            ],
            LOG_WAIT,
        )
        .await;
        host.wait_until_idle(LOG_WAIT).await;
    })
    .await;
}

/// Without `sec-websocket-version: 13` the managed plugin's handshake is refused with `426`,
/// as over HTTP/1.1.
#[tokio::test]
async fn websocket_over_http2_still_needs_version_13() {
    bounded(async {
        let (host, cert, _dir) = tls_host(&["echo"], &[]).await;
        let (head, stream) =
            extended_connect(host.addr, &cert.der, "/echo", "websocket", &[]).await;
        assert_eq!(head.status, StatusCode::UPGRADE_REQUIRED);
        assert_eq!(head.headers["sec-websocket-version"], "13");
        assert!(stream.is_none());
        host.wait_until_idle(LOG_WAIT).await;
    })
    .await;
}

/// HTTP/2 counts header fields as HTTP/1 does: one past `--max-headers` refuses the stream with
/// `431` (hyper bounds only the header list's size on HTTP/2), and one within passes.
#[tokio::test]
async fn too_many_header_fields_are_refused_over_http2() {
    bounded(async {
        let (host, cert, _dir) = tls_host(&["echo"], &[]).await;
        let max = switchyard_host::Limits::default().max_headers;
        let names: Vec<String> = (0..max).map(|n| format!("x-field-{n}")).collect();
        // With the version header, one field past the limit.
        let mut headers: Vec<(&str, &str)> =
            names.iter().map(|name| (name.as_str(), "1")).collect();
        headers.extend(WEBSOCKET_13);
        let (head, stream) =
            extended_connect(host.addr, &cert.der, "/echo", "websocket", &headers).await;
        assert_eq!(head.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert!(stream.is_none());
        headers.remove(0);
        let (head, stream) =
            extended_connect(host.addr, &cert.der, "/echo", "websocket", &headers).await;
        assert_eq!(head.status, StatusCode::OK, "{head:?}");
        drop(stream);
        host.wait_until_idle(LOG_WAIT).await;
    })
    .await;
}

/// Another `:protocol` goes to a raw plugin like an `Upgrade:` offer: the bytes flow when its
/// settings allow the protocol, and the client gets `502` when they do not.
#[tokio::test]
async fn other_protocols_follow_allowed_upgrades() {
    bounded(async {
        let (host, cert, _dir) = tls_host(&["misbehave"], &[]).await;
        let (head, stream) =
            extended_connect(host.addr, &cert.der, "/misbehave/echo-raw", "x-test", &[]).await;
        assert_eq!(head.status, StatusCode::OK);
        let mut stream = stream.expect("an open stream");
        stream
            .write_all(b"raw bytes over h2")
            .await
            .expect("writing");
        let mut echoed = [0u8; 17];
        stream
            .read_exact(&mut echoed)
            .await
            .expect("reading the echo");
        assert_eq!(&echoed, b"raw bytes over h2");
        host.wait_for_log(
            &[
                "session started",
                "transport=\"h2-connect\"",
                "protocol=\"x-test\"",
            ],
            LOG_WAIT,
        )
        .await;

        let sidecar = "[limits]\nallowed_upgrades = [\"websocket\"]\n";
        let (strict, cert, _dir) = tls_host(&["misbehave"], &[("misbehave", sidecar)]).await;
        let (head, stream) =
            extended_connect(strict.addr, &cert.der, "/misbehave/echo-raw", "x-test", &[]).await;
        assert_eq!(head.status, StatusCode::BAD_GATEWAY);
        assert!(stream.is_none());
        strict
            .wait_for_log(
                &["which its settings do not allow (allowed: websocket)"],
                LOG_WAIT,
            )
            .await;
        strict.wait_until_idle(LOG_WAIT).await;
    })
    .await;
}
