//! TLS on the listener (`--tls-cert`, `--tls-key`): rustls through tokio-rustls, with the `ring`
//! crypto provider (it builds with a C compiler alone; rustls's default, `aws-lc-rs`, needs
//! cmake and builds for minutes longer, and the handshake costs of the two differ little next to
//! a plugin call). ALPN offers `h2` and `http/1.1`; the connection is then served with the
//! protocol the client picked (`server::h2` or `server::connection`).
//!
//! Handshakes are bounded twice: each must finish within `--tls-handshake-timeout-ms`, and at
//! most `--max-tls-handshakes` run at once (a connection beyond that is closed before its
//! handshake, so a flood of clients that never finish theirs cannot take every file
//! descriptor and worker). The certificate is reloaded when its files change (`reload`).

mod certs;
mod reload;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::{HOST_WARNINGS_BURST, HOST_WARNINGS_PER_SEC, Limits, TlsFiles};
use crate::ratelimit::{LogRateLimit, limited_warn};
use certs::CurrentCert;

/// The ALPN name of HTTP/2 (RFC 9113 §3.2).
const ALPN_H2: &[u8] = b"h2";
/// The ALPN name of HTTP/1.1 (RFC 7301 §6).
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// The HTTP version a TLS client chose by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alpn {
    /// `h2`.
    Http2,
    /// `http/1.1`, or no ALPN at all (a client that does not negotiate speaks HTTP/1.1).
    Http11,
}

/// The listener's TLS side: the acceptor with the current certificate, the handshake limits and
/// the watch that reloads the certificate.
pub(crate) struct Tls {
    acceptor: TlsAcceptor,
    handshakes: Arc<Semaphore>,
    timeout: Duration,
    /// Connections closed for being over the handshake limit, logged at a bounded rate.
    refusals: LogRateLimit,
    _watch: reload::CertWatch,
}

impl Tls {
    /// Loads the certificate and key (an error names the file at fault) and starts watching
    /// them.
    pub(crate) fn start(files: &TlsFiles, limits: &Limits) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let first = certs::load(files, &provider)?;
        let current = Arc::new(CurrentCert::new(first));
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("the TLS provider supports no protocol version")?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
        let watch = reload::watch(files.clone(), provider, current)?;
        tracing::info!(
            cert = %files.cert.display(),
            key = %files.key.display(),
            "TLS on: HTTPS with ALPN h2, http/1.1"
        );
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            handshakes: Arc::new(Semaphore::new(
                usize::try_from(limits.max_tls_handshakes).unwrap_or(usize::MAX),
            )),
            timeout: limits.tls_handshake_timeout,
            refusals: LogRateLimit::new(HOST_WARNINGS_PER_SEC, HOST_WARNINGS_BURST),
            _watch: watch,
        })
    }

    /// A place among the handshakes in progress, or `None` (logged) when they are at the limit.
    pub(crate) fn admit(&self, max: u32) -> Option<OwnedSemaphorePermit> {
        let permit = self.handshakes.clone().try_acquire_owned().ok();
        if permit.is_none() {
            limited_warn!(
                self.refusals,
                "TLS handshake limit of {max} handshakes in progress reached: closed a new connection"
            );
        }
        permit
    }

    /// Runs the handshake on `stream` within the timeout. `None` when it failed or timed out
    /// (logged at debug: any client can provoke it, e.g. by speaking plain HTTP).
    pub(crate) async fn handshake(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        _permit: OwnedSemaphorePermit,
    ) -> Option<(TlsStream<TcpStream>, Alpn)> {
        match tokio::time::timeout(self.timeout, self.acceptor.accept(stream)).await {
            Ok(Ok(stream)) => {
                let alpn = match stream.get_ref().1.alpn_protocol() {
                    Some(ALPN_H2) => Alpn::Http2,
                    _ => Alpn::Http11,
                };
                Some((stream, alpn))
            }
            Ok(Err(err)) => {
                tracing::debug!(%peer, "TLS handshake failed: {err}");
                None
            }
            Err(_elapsed) => {
                tracing::debug!(%peer, "TLS handshake not complete within {:?}", self.timeout);
                None
            }
        }
    }
}
