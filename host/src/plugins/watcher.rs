//! Hot reload: watches the plugins folder (not recursively) and refreshes each plugin whose
//! `.wasm` or `.toml` changed, once a burst of file events has gone quiet.
//!
//! The folder's parent is watched too (not recursively, only for the folder's own entry), so
//! the folder itself may be deleted and made again, or replaced by renaming another folder into
//! its place: the folder watch is then re-armed on whatever folder now has the name, and the
//! whole folder is scanned again.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tracing::Instrument as _;

use crate::plugins::loader::{Loader, plugin_for_file};

/// Keeps the OS watches alive; dropping it stops hot reload.
pub(crate) struct FolderWatch {
    _folder: Arc<Mutex<notify::RecommendedWatcher>>,
    /// A watcher of its own: in one watcher the parent's "folder deleted" event and the
    /// folder's own would both remove the folder's watch, and the second attempt is logged as
    /// a warning.
    _parent: Option<notify::RecommendedWatcher>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FolderWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a file event means for the plugins.
#[derive(Debug)]
enum Change {
    /// A file of this plugin changed.
    Plugin(String),
    /// The folder itself appeared, went away or was replaced, or events were lost: everything
    /// must be looked at again.
    Folder,
}

/// Starts watching `loader.dir`, refreshing plugins `debounce` after their last change.
pub(crate) fn watch(loader: Arc<Loader>, debounce: Duration) -> anyhow::Result<FolderWatch> {
    // Absolute, so that the paths of events from the folder watch and from the parent watch
    // can be compared.
    let folder = std::path::absolute(&loader.dir)
        .with_context(|| format!("resolving {}", loader.dir.display()))?;
    let (changed_tx, changed_rx) = mpsc::unbounded_channel();
    let parent = folder
        .parent()
        .and_then(|parent| watch_parent(parent, &folder, changed_tx.clone()));
    let mut watcher = watcher_for(&folder, changed_tx)?;
    watcher
        .watch(&folder, RecursiveMode::NonRecursive)
        .with_context(|| format!("watching {}", folder.display()))?;
    let watcher = Arc::new(Mutex::new(watcher));
    let task = tokio::spawn(
        refresh_changed(
            Rearm {
                loader,
                watcher: watcher.clone(),
                folder,
            },
            changed_rx,
            debounce,
        )
        .in_current_span(),
    );
    Ok(FolderWatch {
        _folder: watcher,
        _parent: parent,
        task,
    })
}

/// A watcher that sends what its events mean for the plugins in `folder` to `changed`.
fn watcher_for(
    folder: &Path,
    changed: mpsc::UnboundedSender<Change>,
) -> anyhow::Result<notify::RecommendedWatcher> {
    let folder = folder.to_owned();
    notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
        Ok(event) => {
            for change in classify(&event, &folder) {
                // The receiver only goes away when the host shuts down.
                let _ = changed.send(change);
            }
        }
        Err(err) => tracing::warn!("file watcher error: {err}"),
    })
    .context("creating the plugins folder watcher")
}

/// Watches `parent` for `folder` coming and going. Without it hot reload of the plugins still
/// works; only the folder's own replacement is missed, which the warning says.
fn watch_parent(
    parent: &Path,
    folder: &Path,
    changed: mpsc::UnboundedSender<Change>,
) -> Option<notify::RecommendedWatcher> {
    let watched = watcher_for(folder, changed).and_then(|mut watcher| {
        watcher
            .watch(parent, RecursiveMode::NonRecursive)
            .map_err(anyhow::Error::from)?;
        Ok(watcher)
    });
    match watched {
        Ok(watcher) => Some(watcher),
        Err(err) => {
            tracing::warn!(
                dir = %parent.display(),
                "cannot watch the plugins folder's parent ({err:#}); if the plugins folder is deleted or replaced, restart the host"
            );
            None
        }
    }
}

/// The changes one event stands for. Events about other entries of the parent folder are
/// ignored.
fn classify(event: &notify::Event, folder: &Path) -> Vec<Change> {
    if event.need_rescan() {
        return vec![Change::Folder];
    }
    if !changes_content(&event.kind) {
        return Vec::new();
    }
    event
        .paths
        .iter()
        .filter_map(|path| {
            if path == folder {
                Some(Change::Folder)
            } else if path.parent() == Some(folder) {
                plugin_for_file(path).map(Change::Plugin)
            } else {
                None
            }
        })
        .collect()
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

/// Collects changes until no event arrived for `debounce` (or the batch is
/// [`MAX_BATCH_DELAY`] old), then refreshes the plugins named, or everything if the folder
/// itself changed.
async fn refresh_changed(
    rearm: Rearm,
    mut changed: mpsc::UnboundedReceiver<Change>,
    debounce: Duration,
) {
    while let Some(first) = changed.recv().await {
        let mut names = BTreeSet::new();
        let mut folder_changed = false;
        let mut add = |change| match change {
            Change::Plugin(name) => {
                names.insert(name);
            }
            Change::Folder => folder_changed = true,
        };
        add(first);
        let batch_deadline = tokio::time::Instant::now() + MAX_BATCH_DELAY;
        // Cancel safety: `recv` loses nothing when the timeout wins.
        while let Ok(Some(change)) = tokio::time::timeout(debounce, changed.recv()).await {
            add(change);
            if tokio::time::Instant::now() >= batch_deadline {
                break;
            }
        }
        if folder_changed {
            rearm.folder_changed().await;
        } else {
            for name in names {
                rearm.loader.refresh(&name).await;
            }
        }
    }
}

/// What it takes to follow the folder when it is deleted, made again or replaced.
struct Rearm {
    loader: Arc<Loader>,
    watcher: Arc<Mutex<notify::RecommendedWatcher>>,
    /// The folder's absolute path, as watched.
    folder: PathBuf,
}

impl Rearm {
    /// Points the folder watch at the folder now at the path (if any), then scans everything
    /// again: events between the change and the new watch were missed.
    async fn folder_changed(&self) {
        let watcher = self.watcher.clone();
        let folder = self.folder.clone();
        // `watch` and `unwatch` wait for the watcher's own thread: not on a tokio worker.
        let armed = tokio::task::spawn_blocking(move || rearm_watch(&watcher, &folder)).await;
        match armed {
            Ok(Ok(true)) => {
                tracing::info!(dir = %self.folder.display(), "watching the plugins folder again; scanning it");
            }
            Ok(Ok(false)) => tracing::warn!(
                dir = %self.folder.display(),
                "plugins folder is gone; its plugins are no longer served; watching for it to come back"
            ),
            Ok(Err(err)) => {
                tracing::error!(dir = %self.folder.display(), "cannot watch the plugins folder: {err}");
            }
            Err(join_error) => {
                tracing::error!(dir = %self.folder.display(), "re-arming the plugins folder watch panicked: {join_error}");
            }
        }
        self.loader.rescan().await;
    }
}

/// Drops the folder watch (it may follow a folder renamed away, or be dead with a deleted one)
/// and watches the folder now at `folder`, if there is one. Returns whether there is.
fn rearm_watch(watcher: &Mutex<notify::RecommendedWatcher>, folder: &Path) -> notify::Result<bool> {
    let mut watcher = watcher.lock().unwrap_or_else(|poison| poison.into_inner());
    // Fails when the watch already ended with its deleted folder, which is what is wanted.
    let _ = watcher.unwatch(folder);
    if !folder.is_dir() {
        return Ok(false);
    }
    watcher.watch(folder, RecursiveMode::NonRecursive)?;
    Ok(true)
}
