//! Keeps the registry in step with the plugins folder: loads every plugin at start-up and
//! refreshes one plugin by name when its files change. Compiling is CPU-heavy, so it runs on
//! the blocking pool; a failed load logs the file and the reason and keeps the previous version.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use tracing::Instrument as _;

use crate::plugin::{LoadedPlugin, plugin_name};
use crate::registry::Registry;
use crate::runtime::Runtime;

/// File extension of a plugin.
pub(crate) const PLUGIN_EXTENSION: &str = "wasm";
/// File extension of a plugin's settings.
pub(crate) const SETTINGS_EXTENSION: &str = "toml";

/// Loads plugins from one folder into one registry.
pub(crate) struct Loader {
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) dir: PathBuf,
    /// One refresh at a time: start-up and the watcher may ask for the same plugin at once,
    /// and two loads racing to insert would log a reload that did not happen.
    pub(crate) refreshing: tokio::sync::Mutex<()>,
}

impl Loader {
    /// Loads every `*.wasm` in the folder. Broken plugins are logged and skipped: one bad file
    /// must not keep the others from serving.
    pub(crate) async fn load_all(&self) -> anyhow::Result<()> {
        let entries = std::fs::read_dir(&self.dir)
            .with_context(|| format!("reading plugins folder {}", self.dir.display()))?;
        let mut names: Vec<String> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| has_extension(path, PLUGIN_EXTENSION))
            .map(|path| plugin_name(&path))
            .collect();
        names.sort();
        if names.is_empty() {
            tracing::warn!(dir = %self.dir.display(), "no plugins (*.wasm) found yet; watching for new ones");
        }
        for name in names {
            self.refresh(&name).await;
        }
        Ok(())
    }

    /// Brings plugin `name` in line with its files: (re)load it if `<name>.wasm` exists, stop
    /// routing to it if it does not.
    pub(crate) async fn refresh(&self, name: &str) {
        let _one_at_a_time = self.refreshing.lock().await;
        let wasm_path = self.dir.join(format!("{name}.{PLUGIN_EXTENSION}"));
        let current = self.registry.get(name);
        if !wasm_path.is_file() {
            if let Some(removed) = self.registry.remove(name) {
                tracing::info!(
                    plugin = %name,
                    version = %removed.version(),
                    route = %removed.route(),
                    "plugin removed; its live sessions run on until they end"
                );
            }
            return;
        }
        if current
            .as_ref()
            .is_some_and(|plugin| plugin.is_unchanged_on_disk(&wasm_path))
        {
            return;
        }
        let runtime = self.runtime.clone();
        let path = wasm_path.clone();
        let loaded = tokio::task::spawn_blocking(move || LoadedPlugin::load(&runtime, &path))
            .in_current_span()
            .await;
        let checked = match loaded {
            Ok(Ok(plugin)) => plugin.check_instantiates().await.map(|()| plugin),
            Ok(Err(err)) => Err(err),
            Err(join_error) => {
                tracing::error!(plugin = %name, file = %wasm_path.display(), "plugin loader panicked: {join_error}");
                return;
            }
        };
        let plugin = match checked {
            Ok(plugin) => plugin,
            Err(err) => {
                let kept = current
                    .as_ref()
                    .map_or("none".to_owned(), |p| p.version().to_owned());
                tracing::error!(plugin = %name, file = %wasm_path.display(), kept_version = %kept, "plugin not loaded: {err}");
                return;
            }
        };
        let (version, route) = (plugin.version().to_owned(), plugin.route().to_owned());
        let origin = plugin.origin();
        match self.registry.insert(plugin) {
            Ok(Some(previous)) => tracing::info!(
                plugin = %name,
                version = %version,
                previous_version = %previous.version(),
                route = %route,
                "plugin reloaded; sessions on the previous version run on until they end"
            ),
            Ok(None) => {
                tracing::info!(plugin = %name, version = %version, route = %route, artifact = %origin, "serving plugin")
            }
            Err(conflict) => {
                tracing::error!(plugin = %name, file = %wasm_path.display(), "plugin not loaded: {conflict}")
            }
        }
    }
}

/// Whether `path` ends in `.extension`.
pub(crate) fn has_extension(path: &Path, extension: &str) -> bool {
    path.extension().is_some_and(|ext| ext == extension)
}

/// The plugin a changed file belongs to: `echo.wasm` and `echo.toml` both → `echo`.
pub(crate) fn plugin_for_file(path: &Path) -> Option<String> {
    let relevant = has_extension(path, PLUGIN_EXTENSION) || has_extension(path, SETTINGS_EXTENSION);
    let hidden = path
        .file_name()
        .is_some_and(|name| name.to_string_lossy().starts_with('.'));
    (relevant && !hidden).then(|| plugin_name(path))
}
