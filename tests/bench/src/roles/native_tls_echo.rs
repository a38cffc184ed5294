//! The `native-tls-echo` role: the native echo (`native_echo`'s tokio-tungstenite server, same
//! settings and batching) behind tokio-rustls with the same crypto provider (`ring`), ALPN and
//! certificate as the host: the physical limit for WebSocket echo over TLS.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Serves until killed, with the certificate chain and key in these PEM files.
pub(super) async fn serve(cert: &Path, key: &Path) -> anyhow::Result<()> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {}", cert.display()))?;
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading {}", key.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = super::bind_announced().await?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            // A client that goes away mid-session is normal at the end of every load.
            if let Ok(stream) = acceptor.accept(stream).await {
                let _ = super::native_echo::echo_stream(stream).await;
            }
        });
    }
}
