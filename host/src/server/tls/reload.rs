//! Certificate rotation without a restart: watches the folders of the certificate and key files
//! (not the files: a rotation usually renames a new file into place, which a watch on the old
//! file would miss) and, once a burst of changes to either file has gone quiet, loads the pair
//! again. A pair that does not load (half written, mismatched) is logged and the old
//! certificate stays in use; the next change is tried again.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use notify::{EventKind, RecursiveMode, Watcher as _};
use rustls::crypto::CryptoProvider;
use tokio::sync::mpsc;
use tracing::Instrument as _;

use super::certs::{self, CurrentCert};
use crate::config::TlsFiles;

/// Quiet time after the last change to the certificate or key before the pair is loaded, so
/// the two files of one rotation (written one after the other) are read together.
const RELOAD_DEBOUNCE: Duration = Duration::from_millis(200);

/// Keeps the watch alive; dropping it stops reloading.
pub(crate) struct CertWatch {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CertWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts watching `files`; each settled change loads them into `current`.
pub(crate) fn watch(
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: Arc<CurrentCert>,
) -> anyhow::Result<CertWatch> {
    let watched: BTreeSet<PathBuf> = [&files.cert, &files.key]
        .into_iter()
        .map(|path| std::path::absolute(path).unwrap_or_else(|_| path.clone()))
        .collect();
    let folders: BTreeSet<PathBuf> = watched
        .iter()
        .filter_map(|path| path.parent().map(Path::to_owned))
        .collect();
    let (changed_tx, changed_rx) = mpsc::unbounded_channel();
    let names = watched.clone();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) if is_change(&event, &names) => {
                // The receiver only goes away when the host shuts down.
                let _ = changed_tx.send(());
            }
            Ok(_) => {}
            Err(err) => tracing::warn!("certificate file watcher error: {err}"),
        })
        .context("creating the certificate file watcher")?;
    for folder in &folders {
        watcher
            .watch(folder, RecursiveMode::NonRecursive)
            .with_context(|| format!("watching {} for certificate changes", folder.display()))?;
    }
    let task =
        tokio::spawn(reload_on_change(files, provider, current, changed_rx).in_current_span());
    Ok(CertWatch {
        _watcher: watcher,
        task,
    })
}

/// Whether `event` may have changed one of the `watched` files.
fn is_change(event: &notify::Event, watched: &BTreeSet<PathBuf>) -> bool {
    let content = matches!(
        event.kind,
        EventKind::Create(_)
            | EventKind::Modify(_)
            | EventKind::Remove(_)
            | EventKind::Access(notify::event::AccessKind::Close(
                notify::event::AccessMode::Write
            ))
    );
    event.need_rescan() || (content && event.paths.iter().any(|path| watched.contains(path)))
}

async fn reload_on_change(
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: Arc<CurrentCert>,
    mut changed: mpsc::UnboundedReceiver<()>,
) {
    while changed.recv().await.is_some() {
        // Cancel safety: `recv` loses nothing when the timeout wins.
        while let Ok(Some(())) = tokio::time::timeout(RELOAD_DEBOUNCE, changed.recv()).await {}
        match certs::load(&files, &provider) {
            Ok(next) => {
                current.replace(next);
                tracing::info!(
                    cert = %files.cert.display(),
                    key = %files.key.display(),
                    "TLS certificate reloaded; new handshakes use it"
                );
            }
            Err(err) => {
                tracing::warn!("TLS certificate not reloaded, the previous one stays in use: {err}")
            }
        }
    }
}
