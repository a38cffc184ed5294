//! HTTP/1.1 message rules the host enforces before any plugin runs (RFC 9112): `Host`,
//! transfer codings, the request head's size and field count, and what an HTTP/2 client that
//! assumes prior knowledge is told. Raw TCP, since well-behaved clients cannot send these.

use std::time::Duration;

use switchyard_host::Limits;
use switchyard_tests::client::RawConnection;
use switchyard_tests::{TestHost, bounded};

const LOG_WAIT: Duration = Duration::from_secs(5);

/// The status code of a response head.
fn status(head: &str) -> &str {
    head.split(' ').nth(1).unwrap_or("")
}

/// Sends `request` on a new connection and returns the response head; the connection is left
/// as the host left it.
async fn head_of(host: &TestHost, request: &[u8]) -> (String, RawConnection) {
    let mut conn = RawConnection::open(host.addr, request).await;
    let head = conn.read_head().await;
    (head, conn)
}

/// RFC 9112 §3.2: an HTTP/1.1 request without `Host`, or any request with two, is `400` and
/// the connection is closed; HTTP/1.0 may leave `Host` out.
#[tokio::test]
async fn host_header_is_required_exactly_once() {
    bounded(async {
        let host = TestHost::start(&["hello"]).await;
        for request in [
            &b"GET /hello HTTP/1.1\r\n\r\n"[..],
            b"GET /hello HTTP/1.1\r\nhost: a\r\nhost: a\r\n\r\n",
            b"GET /hello HTTP/1.0\r\nhost: a\r\nhost: b\r\n\r\n",
            b"GET /hello HTTP/1.1\r\nhost: a b\r\n\r\n",
        ] {
            let (head, mut conn) = head_of(&host, request).await;
            assert_eq!(
                status(&head),
                "400",
                "{:?} got {head}",
                String::from_utf8_lossy(request)
            );
            assert!(head.contains("connection: close"), "{head}");
            conn.read_line().await; // the one-line body
            conn.expect_closed().await;
        }
        let (head, _) = head_of(&host, b"GET /hello HTTP/1.0\r\n\r\n").await;
        assert_eq!(status(&head), "200", "{head}");
        let (head, _) = head_of(&host, b"GET /hello HTTP/1.1\r\nhost: a:80\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        host.wait_for_log(&["request refused", "must have a Host header"], LOG_WAIT)
            .await;
    })
    .await;
}

/// RFC 9112 §6.1: a transfer coding the host does not decode, even with a final `chunked`, is
/// `501` (the plugin never sees a body still encoded); plain `chunked` is decoded.
#[tokio::test]
async fn transfer_codings_other_than_chunked_get_501() {
    bounded(async {
        let host = TestHost::start(&["hello"]).await;
        let (head, mut conn) = head_of(
            &host,
            b"POST /hello HTTP/1.1\r\nhost: t\r\ntransfer-encoding: foo, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        )
        .await;
        assert!(head.starts_with("HTTP/1.1 501"), "{head}");
        assert!(head.contains("connection: close"), "{head}");
        conn.read_line().await;
        conn.expect_closed().await;
        let (head, mut conn) = head_of(
            &host,
            b"POST /hello HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        )
        .await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let mut lines = Vec::new();
        for _ in 0..5 {
            lines.push(conn.read_line().await);
        }
        assert!(lines.contains(&"body: 3 bytes".to_owned()), "{lines:?}");
    })
    .await;
}

/// `curl --http2-prior-knowledge`: the HTTP/2 connection preface is answered in HTTP/2, with
/// an empty SETTINGS frame and a GOAWAY saying HTTP_1_1_REQUIRED, then the connection closes;
/// the host logs it.
#[tokio::test]
async fn http2_prior_knowledge_gets_goaway_http_1_1_required() {
    bounded(async {
        let host = TestHost::start(&["hello"]).await;
        let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        preface.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]); // the client's SETTINGS
        let mut conn = RawConnection::open(host.addr, &preface).await;
        let settings = conn.read_exact(9).await;
        assert_eq!(
            settings,
            [0, 0, 0, 4, 0, 0, 0, 0, 0],
            "an empty SETTINGS frame"
        );
        let goaway = conn.read_exact(9).await;
        assert_eq!(goaway[3], 7, "a GOAWAY frame: {goaway:?}");
        assert_eq!(goaway[5..9], [0, 0, 0, 0], "on stream 0");
        let len = usize::from(goaway[1]) << 8 | usize::from(goaway[2]);
        let payload = conn.read_exact(len).await;
        assert_eq!(payload[0..4], [0, 0, 0, 0], "last stream id");
        assert_eq!(payload[4..8], [0, 0, 0, 0xd], "HTTP_1_1_REQUIRED");
        conn.expect_closed().await;
        host.wait_for_log(&["HTTP/2 connection preface", "GOAWAY"], LOG_WAIT)
            .await;
    })
    .await;
}

/// A request head of `len` bytes exactly: request line, `host`, one padding header, blank line.
fn head_of_size(len: usize) -> Vec<u8> {
    let fixed = "GET /hello HTTP/1.1\r\nhost: t\r\nx-pad: \r\n\r\n".len();
    let pad = "p".repeat(len - fixed);
    format!("GET /hello HTTP/1.1\r\nhost: t\r\nx-pad: {pad}\r\n\r\n").into_bytes()
}

/// `--max-header-bytes` is exact: a head of exactly the limit is served, one byte more is `431`
/// (hyper's buffer size used to let heads of up to ~1.75 times the limit through).
#[tokio::test]
async fn request_head_limit_is_exact() {
    bounded(async {
        let limit = Limits::default().max_header_bytes;
        let host = TestHost::start(&["hello"]).await;
        let (head, _) = head_of(&host, &head_of_size(limit)).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let (head, _) = head_of(&host, &head_of_size(limit + 1)).await;
        assert!(head.starts_with("HTTP/1.1 431"), "{head}");
        let (head, _) = head_of(&host, &head_of_size(114_688)).await;
        assert!(head.starts_with("HTTP/1.1 431"), "{head}");

        let small = Limits {
            max_header_bytes: 1024,
            ..Limits::default()
        };
        let host = TestHost::start_configured(&["hello"], &[], Some(small)).await;
        let (head, _) = head_of(&host, &head_of_size(1024)).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let (head, _) = head_of(&host, &head_of_size(1025)).await;
        assert!(head.starts_with("HTTP/1.1 431"), "{head}");
    })
    .await;
}

/// A head with `count` header fields in all (`host` included).
fn head_with_fields(count: usize) -> Vec<u8> {
    let mut head = String::from("GET /hello HTTP/1.1\r\nhost: t\r\n");
    for i in 1..count {
        head.push_str(&format!("x-{i}: v\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// The number of header fields is capped (100 by default, `--max-headers`): one more is `431`.
#[tokio::test]
async fn header_field_count_is_capped_and_configurable() {
    bounded(async {
        let host = TestHost::start(&["hello"]).await;
        let (head, _) = head_of(&host, &head_with_fields(100)).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let (head, _) = head_of(&host, &head_with_fields(101)).await;
        assert!(head.starts_with("HTTP/1.1 431"), "{head}");

        for (max_headers, served, refused) in [(10, 10, 11), (300, 300, 301)] {
            let limits = Limits {
                max_headers,
                ..Limits::default()
            };
            let host = TestHost::start_configured(&["hello"], &[], Some(limits)).await;
            let (head, _) = head_of(&host, &head_with_fields(served)).await;
            assert!(head.starts_with("HTTP/1.1 200"), "{max_headers}: {head}");
            let (head, _) = head_of(&host, &head_with_fields(refused)).await;
            assert!(head.starts_with("HTTP/1.1 431"), "{max_headers}: {head}");
        }
    })
    .await;
}
