//! TLS for the tests: a certificate the test makes itself (rcgen), written where the host reads
//! it, and clients that trust exactly that certificate: rustls through tokio-rustls, hyper's
//! HTTP/1.1 and HTTP/2 clients on top, and the `h2` crate's client for extended CONNECT
//! (RFC 8441), whose stream [`H2Stream`] turns into bytes a WebSocket client can run on.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf as _, Bytes};
use http_body_util::{BodyExt as _, Empty};
use hyper::{Request, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use switchyard_host::config::TlsFiles;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The name the test certificates are made for, and the clients ask for.
pub const SERVER_NAME: &str = "localhost";
/// How long [`extended_connect`] waits for the server's SETTINGS to allow extended CONNECT.
const SETTINGS_WAIT: Duration = Duration::from_secs(5);

/// A self-signed certificate for `localhost` and `127.0.0.1`, with its key.
pub struct TestCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM (PKCS#8).
    pub key_pem: String,
    /// The certificate, DER, for clients to trust.
    pub der: CertificateDer<'static>,
    /// The DER SubjectPublicKeyInfo of its key (what Chromium pins).
    pub spki_der: Vec<u8>,
}

impl TestCert {
    /// A fresh certificate and key (ECDSA P-256).
    pub fn generate() -> Self {
        use rcgen::PublicKeyData as _;
        let key = rcgen::KeyPair::generate().expect("generating a key");
        let params =
            rcgen::CertificateParams::new(vec![SERVER_NAME.to_owned(), "127.0.0.1".to_owned()])
                .expect("certificate parameters");
        let cert = params.self_signed(&key).expect("signing the certificate");
        Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            spki_der: key.subject_public_key_info(),
        }
    }

    /// Writes `cert.pem` and `key.pem` into `dir` and names them for the host.
    pub fn write_to(&self, dir: &Path) -> TlsFiles {
        let files = TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        self.replace(&files);
        files
    }

    /// Replaces the files of `files` with this certificate and key the way a rotation does:
    /// each written beside and renamed into place.
    pub fn replace(&self, files: &TlsFiles) {
        for (path, pem) in [(&files.key, &self.key_pem), (&files.cert, &self.cert_pem)] {
            let staging = path.with_extension("pem.new");
            std::fs::write(&staging, pem).expect("writing a PEM file");
            std::fs::rename(&staging, path).expect("renaming a PEM file into place");
        }
    }
}

/// A rustls client configuration that trusts only `cert` and offers `alpn`.
pub fn client_config(cert: &CertificateDer<'static>, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(cert.clone())
        .expect("trusting the test certificate");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|name| name.to_vec()).collect();
    Arc::new(config)
}

/// A TLS connection to `addr` (as [`SERVER_NAME`]) with `config`.
pub async fn connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(SERVER_NAME).expect("a valid server name");
    TlsConnector::from(config).connect(name, tcp).await
}

/// The certificate the server presented on `stream`.
pub fn peer_certificate(stream: &TlsStream<TcpStream>) -> Option<CertificateDer<'static>> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| cert.clone().into_owned())
}

/// What an HTTPS `GET` came back with.
#[derive(Debug)]
pub struct HttpsReply {
    /// The status.
    pub status: StatusCode,
    /// The HTTP version it was answered in.
    pub version: Version,
    /// The body, as text.
    pub body: String,
}

/// `GET https://localhost<path>` over a new connection to `addr` trusting `cert`, with HTTP/2
/// if `http2`, else HTTP/1.1 (each offered alone by ALPN).
pub async fn https_get(
    addr: SocketAddr,
    cert: &CertificateDer<'static>,
    path: &str,
    http2: bool,
) -> HttpsReply {
    let alpn: &[&[u8]] = if http2 { &[b"h2"] } else { &[b"http/1.1"] };
    let stream = connect(addr, client_config(cert, alpn))
        .await
        .expect("TLS handshake");
    let io = TokioIo::new(stream);
    let request = Request::builder()
        .uri(format!("https://{SERVER_NAME}{path}"))
        .header("host", SERVER_NAME)
        .body(Empty::<Bytes>::new())
        .expect("a request");
    let response = if http2 {
        let mut request = request;
        // HTTP/2 carries the authority in `:authority`; `host` is not needed.
        request.headers_mut().remove("host");
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .expect("HTTP/2 handshake");
        tokio::spawn(connection);
        sender.send_request(request).await.expect("HTTP/2 response")
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(connection);
        sender
            .send_request(request)
            .await
            .expect("HTTP/1.1 response")
    };
    let status = response.status();
    let version = response.version();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("the body")
        .to_bytes();
    HttpsReply {
        status,
        version,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Opens an HTTP/2 connection to `addr` and an extended CONNECT stream (RFC 8441) to `path`
/// with `:protocol` = `protocol` and `headers`; returns the response head and, for a `2xx`, the
/// stream as bytes. The connection lives as long as the stream is used.
pub async fn extended_connect(
    addr: SocketAddr,
    cert: &CertificateDer<'static>,
    path: &str,
    protocol: &str,
    headers: &[(&str, &str)],
) -> (hyper::http::response::Parts, Option<H2Stream>) {
    let stream = connect(addr, client_config(cert, &[b"h2"]))
        .await
        .expect("TLS handshake");
    let (client, connection) = h2::client::handshake(stream)
        .await
        .expect("HTTP/2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.expect("HTTP/2 connection ready");
    // The server's SETTINGS arrive after the handshake; extended CONNECT needs them.
    let deadline = tokio::time::Instant::now() + SETTINGS_WAIT;
    while !client.is_extended_connect_protocol_enabled() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server did not send SETTINGS_ENABLE_CONNECT_PROTOCOL within {SETTINGS_WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut request = Request::builder()
        .method("CONNECT")
        .uri(format!("https://{SERVER_NAME}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request.body(()).expect("a request");
    request
        .extensions_mut()
        .insert(h2::ext::Protocol::from(protocol));
    let (response, send) = client
        .send_request(request, false)
        .expect("sending extended CONNECT");
    let response = response.await.expect("the CONNECT response");
    let (parts, recv) = response.into_parts();
    let stream = parts.status.is_success().then(|| H2Stream {
        send,
        recv,
        unread: Bytes::new(),
    });
    (parts, stream)
}

/// An HTTP/2 stream as a byte stream: DATA frames in, DATA frames out, with flow control
/// (window given back as bytes are read, data sent only as the window allows).
pub struct H2Stream {
    send: h2::SendStream<Bytes>,
    recv: h2::RecvStream,
    /// The rest of a DATA frame the reader has not taken yet.
    unread: Bytes,
}

impl AsyncRead for H2Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.unread.is_empty() {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let len = data.len();
                    let _ = self.recv.flow_control().release_capacity(len);
                    self.unread = data;
                }
                Some(Err(err)) => return Poll::Ready(Err(io::Error::other(err))),
                None => return Poll::Ready(Ok(())),
            }
        }
        let len = self.unread.len().min(buf.remaining());
        buf.put_slice(&self.unread[..len]);
        self.unread.advance(len);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.send.reserve_capacity(buf.len());
        let granted = match ready!(self.send.poll_capacity(cx)) {
            Some(Ok(granted)) => granted,
            Some(Err(err)) => return Poll::Ready(Err(io::Error::other(err))),
            None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        };
        let len = granted.min(buf.len());
        self.send
            .send_data(Bytes::copy_from_slice(&buf[..len]), false)
            .map_err(io::Error::other)?;
        Poll::Ready(Ok(len))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let _ = self.send.send_data(Bytes::new(), true);
        Poll::Ready(Ok(()))
    }
}
