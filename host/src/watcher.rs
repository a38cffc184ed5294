//! Hot reload: watches the plugins folder (not recursively) and refreshes each plugin whose
//! `.wasm` or `.toml` changed, once a burst of file events has gone quiet.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tracing::Instrument as _;

use crate::loader::{Loader, plugin_for_file};

/// Keeps the OS watch alive; dropping it stops hot reload.
pub(crate) struct FolderWatch {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FolderWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts watching `loader.dir`, refreshing plugins `debounce` after their last change.
pub(crate) fn watch(loader: Arc<Loader>, debounce: Duration) -> anyhow::Result<FolderWatch> {
    let (changed_tx, changed_rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        match event {
            Ok(event) if changes_content(&event.kind) => {
                for name in event.paths.iter().filter_map(|path| plugin_for_file(path)) {
                    // The receiver only goes away when the host shuts down.
                    let _ = changed_tx.send(name);
                }
            }
            Ok(_) => {}
            Err(err) => tracing::warn!("file watcher error: {err}"),
        }
    })
    .context("creating the plugins folder watcher")?;
    watcher
        .watch(&loader.dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("watching {}", loader.dir.display()))?;
    let task = tokio::spawn(refresh_changed(loader, changed_rx, debounce).in_current_span());
    Ok(FolderWatch {
        _watcher: watcher,
        task,
    })
}

/// Whether an event can change what a plugin file holds. Opening or reading a file is not such
/// an event: the host reads plugin files itself and must not wake itself up doing so.
fn changes_content(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Create(_)
            | EventKind::Modify(_)
            | EventKind::Remove(_)
            | EventKind::Access(AccessKind::Close(AccessMode::Write))
    )
}

/// Longest a burst of events may delay a reload: a file rewritten without pause still gets
/// picked up (and, if half-written, retried on its next event).
const MAX_BATCH_DELAY: Duration = Duration::from_secs(1);

/// Collects changed plugin names until no event arrived for `debounce` (or the batch is
/// [`MAX_BATCH_DELAY`] old), then refreshes them.
async fn refresh_changed(
    loader: Arc<Loader>,
    mut changed: mpsc::UnboundedReceiver<String>,
    debounce: Duration,
) {
    while let Some(first) = changed.recv().await {
        let mut names = BTreeSet::from([first]);
        let batch_deadline = tokio::time::Instant::now() + MAX_BATCH_DELAY;
        // Cancel safety: `recv` loses nothing when the timeout wins.
        while let Ok(Some(name)) = tokio::time::timeout(debounce, changed.recv()).await {
            names.insert(name);
            if tokio::time::Instant::now() >= batch_deadline {
                break;
            }
        }
        for name in names {
            loader.refresh(&name).await;
        }
    }
}
