//! Section 10: WebSocket echo over TLS (HTTP/1.1 by ALPN), the managed `echo` plugin against
//! the native echo behind tokio-rustls: the same certificate (made here with rcgen), the same
//! crypto provider (`ring`) and the same client. Target: the managed echo ≥ 0.85 of native's
//! msg/s on 10 connections × 1 KiB.
//!
//! As in the matrix, the measured time is cut into one-second slices and the two servers take
//! turns, each slice on fresh connections; the figures are the medians of the slices.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rustls::pki_types::CertificateDer;

use crate::client::{SLICE, Summary, Window, tls as client};
use crate::options::{Options, Section};
use crate::plugins;
use crate::report::{self, Table};
use crate::roles::{self, HostSetup};

/// The row: connections, message size, label.
const LOAD: (usize, usize, &str) = (10, 1024, "10 conns × 1 KiB");
/// The managed echo's msg/s over TLS as a share of native's, at least.
const RATE_TARGET: f64 = 0.85;
/// Pause between turns, so the previous turn's sessions have closed on the server.
const SETTLE: Duration = Duration::from_millis(300);

/// Runs the section and prints its table.
pub(crate) async fn run(options: &Options) -> anyhow::Result<()> {
    report::heading(Section::Tls.title());
    let certs = tempfile::tempdir().context("a folder for the certificate")?;
    let made = make_certificate(certs.path())?;
    let folder = plugins::folder_with(&["echo"])?;
    let mut host = HostSetup::new(folder.path())
        .tls(&made.cert, &made.key)
        .start()?;
    let mut native = roles::start_native_tls_echo(&made.cert, &made.key)?;
    let tls = client_config(made.der)?;
    let (connections, size, label) = LOAD;
    let slices = options.measure.as_secs().max(1);
    let mut managed = Vec::new();
    let mut native_slices = Vec::new();
    for slice in 0..slices {
        let window = Window::slice(slice, options.warmup());
        for turn in 0..2 {
            if (slice + turn) % 2 == 0 {
                let load =
                    client::echo_load(host.addr(), "/echo", connections, size, window, tls.clone());
                let result = load.await;
                host.check_alive()?;
                managed.push(result.context("the managed echo over TLS")?);
            } else {
                let load =
                    client::echo_load(native.addr(), "/", connections, size, window, tls.clone());
                let result = load.await;
                native.check_alive()?;
                native_slices.push(result.context("the native echo over TLS")?);
            }
            tokio::time::sleep(SETTLE).await;
        }
    }
    let median = |slices: &[Summary]| Summary::median_of(slices).context("no slice was measured");
    print(label, &median(&managed)?, &median(&native_slices)?, slices);
    Ok(())
}

/// The benchmark's certificate: its PEM files and its DER form for the client to trust.
struct Certificate {
    cert: PathBuf,
    key: PathBuf,
    der: CertificateDer<'static>,
}

/// A self-signed certificate for [`client::SERVER_NAME`], written as PEM files into `dir`.
fn make_certificate(dir: &Path) -> anyhow::Result<Certificate> {
    let key = rcgen::KeyPair::generate()?;
    let cert =
        rcgen::CertificateParams::new(vec![client::SERVER_NAME.to_owned()])?.self_signed(&key)?;
    let made = Certificate {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
        der: cert.der().clone(),
    };
    std::fs::write(&made.cert, cert.pem())?;
    std::fs::write(&made.key, key.serialize_pem())?;
    Ok(made)
}

/// The client's TLS settings: trusts only the benchmark's certificate, offers `http/1.1`.
fn client_config(cert: CertificateDer<'static>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert)?;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn print(label: &str, managed: &Summary, native: &Summary, slices: u64) {
    let mut table = Table::new(
        format!(
            "Echo over TLS (HTTP/1.1), msg/s and round trip (median of {slices} slices of {} s, \
             the servers taking turns)",
            SLICE.as_secs()
        ),
        &[
            "load",
            "managed echo",
            "native",
            "managed/native",
            "target",
            "",
            "managed p50 / p99",
            "native p50 / p99",
        ],
    );
    let share = managed.per_sec / native.per_sec;
    let (ratio, target, verdict) = (
        report::ratio(share),
        format!("≥ {RATE_TARGET:.2}"),
        report::verdict(share >= RATE_TARGET),
    );
    table.row(vec![
        label.to_owned(),
        report::rate(managed.per_sec),
        report::rate(native.per_sec),
        ratio,
        target,
        verdict,
        format!(
            "{} / {}",
            report::micros(managed.p50),
            report::micros(managed.p99)
        ),
        format!(
            "{} / {}",
            report::micros(native.p50),
            report::micros(native.p99)
        ),
    ]);
    table.note("both: rustls with ring, TLS 1.3, ECDSA P-256 certificate, ALPN http/1.1");
    table.note("native: the native echo (tokio-tungstenite) behind tokio-rustls");
    table.print();
}
