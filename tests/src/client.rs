//! Clients the tests talk to the host with: a real HTTP/1.1 client (hyper) for plain requests,
//! and raw TCP for upgrades and protocols the HTTP client cannot express.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// How long a raw read waits for bytes before the test fails.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A response as the tests look at it.
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The header fields.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Reply {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request over a new connection with hyper's client and reads the whole response.
pub async fn send(addr: SocketAddr, request: Request<Full<Bytes>>) -> Reply {
    let stream = TcpStream::connect(addr)
        .await
        .expect("connecting to the host");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP handshake");
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .expect("sending the request");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("reading the body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// `GET <path>` with the given extra headers.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = Request::get(path).header("host", addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(
        addr,
        request.body(Full::default()).expect("a valid request"),
    )
    .await
}

/// A raw HTTP/1.1 request head asking the test plugin `misbehave` to run `case` and switch to
/// its `x-test` protocol.
pub fn misbehave_upgrade(case: &str) -> Vec<u8> {
    format!(
        "GET /misbehave/{case} HTTP/1.1\r\nhost: t\r\nconnection: upgrade\r\nupgrade: x-test\r\n\r\n"
    )
    .into_bytes()
}

/// A raw TCP connection to the host.
pub struct RawConnection {
    stream: TcpStream,
    /// Bytes read but not yet returned by [`RawConnection::read_line`].
    pending: Vec<u8>,
}

impl RawConnection {
    /// Connects and sends `bytes` in one write.
    pub async fn open(addr: SocketAddr, bytes: &[u8]) -> Self {
        let mut stream = TcpStream::connect(addr)
            .await
            .expect("connecting to the host");
        stream.set_nodelay(true).expect("setting TCP_NODELAY");
        stream.write_all(bytes).await.expect("writing");
        Self {
            stream,
            pending: Vec::new(),
        }
    }

    /// Sends more bytes.
    pub async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("writing");
    }

    /// Reads up to the end of the response head (`\r\n\r\n`) and returns it as text; bytes
    /// after it stay buffered for the next reads.
    pub async fn read_head(&mut self) -> String {
        let end = self.read_until(b"\r\n\r\n").await;
        let head: Vec<u8> = self.pending.drain(..end).collect();
        String::from_utf8_lossy(&head).into_owned()
    }

    /// Reads one `\n`-terminated line, without the terminator.
    pub async fn read_line(&mut self) -> String {
        let end = self.read_until(b"\n").await;
        let line: Vec<u8> = self.pending.drain(..end).collect();
        String::from_utf8_lossy(&line).trim_end().to_owned()
    }

    /// Reads exactly `len` bytes.
    pub async fn read_exact(&mut self, len: usize) -> Vec<u8> {
        while self.pending.len() < len {
            self.fill().await.expect("connection closed early");
        }
        self.pending.drain(..len).collect()
    }

    /// Waits for the host to close the connection, failing if it sends more bytes or stays
    /// open past [`READ_TIMEOUT`]. A reset counts as closed.
    pub async fn expect_closed(&mut self) {
        let mut byte = [0u8; 1];
        match tokio::time::timeout(READ_TIMEOUT, self.stream.read(&mut byte)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {}
            Ok(Ok(_)) => panic!("expected the connection to close, got byte {:?}", byte[0]),
            Err(_) => panic!("the connection stayed open"),
        }
    }

    /// Reads everything up to the host's closing the connection (a reset counts as closed),
    /// failing if it stays open past `within`.
    pub async fn read_to_end_within(&mut self, within: Duration) -> Vec<u8> {
        let mut rest = std::mem::take(&mut self.pending);
        let read = tokio::time::timeout(within, self.stream.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the connection stayed open past {within:?}");
        rest
    }

    /// Reads until `pending` holds `delimiter`; returns the index just past it.
    async fn read_until(&mut self, delimiter: &[u8]) -> usize {
        loop {
            if let Some(at) = self
                .pending
                .windows(delimiter.len())
                .position(|window| window == delimiter)
            {
                return at + delimiter.len();
            }
            if self.fill().await.is_none() {
                panic!(
                    "connection closed before {delimiter:?}; got {:?}",
                    String::from_utf8_lossy(&self.pending)
                );
            }
        }
    }

    /// Reads more bytes into `pending`; `None` at end of stream.
    async fn fill(&mut self) -> Option<usize> {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(READ_TIMEOUT, self.stream.read(&mut chunk))
            .await
            .expect("timed out waiting for bytes from the host")
            .expect("reading from the host");
        self.pending.extend_from_slice(&chunk[..n]);
        (n > 0).then_some(n)
    }
}
