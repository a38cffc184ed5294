//! The listener's certificate: read from its PEM files, checked (a chain, a key the provider
//! can sign with, and the two belonging together), and held where every new handshake picks up
//! the current one, so a reload swaps it without touching connections already established.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::TlsFiles;

/// Why a certificate or key file cannot be used; each names the file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CertError {
    /// The file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why not.
        source: std::io::Error,
    },
    /// The file holds no PEM `CERTIFICATE` section, or a malformed one.
    #[error("{} holds no valid PEM certificate{}", path.display(), detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    NoCertificate {
        /// The file.
        path: PathBuf,
        /// The parser's complaint, if it had one.
        detail: Option<String>,
    },
    /// The file holds no PEM private key, or a malformed one.
    #[error("{} holds no valid PEM private key ({detail})", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        detail: String,
    },
    /// The key cannot sign, or does not belong to the certificate.
    #[error("the key in {} does not go with the certificate in {}: {source}", key.display(), cert.display())]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        source: rustls::Error,
    },
}

/// Reads and checks the certificate chain and key of `files`.
pub(crate) fn load(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, CertError> {
    let chain = read_chain(&files.cert)?;
    let key = read_key(&files.key)?;
    CertifiedKey::from_der(chain, key, provider).map_err(|source| CertError::Mismatch {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Read {
        path: path.to_owned(),
        source,
    })
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let pem = read(path)?;
    let chain: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    match chain {
        Ok(chain) if !chain.is_empty() => Ok(chain),
        Ok(_) => Err(CertError::NoCertificate {
            path: path.to_owned(),
            detail: None,
        }),
        Err(err) => Err(CertError::NoCertificate {
            path: path.to_owned(),
            detail: Some(err.to_string()),
        }),
    }
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|err| CertError::NoKey {
        path: path.to_owned(),
        detail: err.to_string(),
    })
}

/// The certificate every new handshake is given; [`CurrentCert::replace`] swaps it.
#[derive(Debug)]
pub(crate) struct CurrentCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl CurrentCert {
    pub(crate) fn new(first: CertifiedKey) -> Self {
        Self {
            current: RwLock::new(Arc::new(first)),
        }
    }

    /// Makes `next` the certificate of every handshake from now on.
    pub(crate) fn replace(&self, next: CertifiedKey) {
        // A poisoned lock only means a writer panicked mid-swap of an `Arc`: the value is whole.
        let mut current = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *current = Arc::new(next);
    }
}

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(current.clone())
    }
}
