//! Keeps the registry in step with the plugins folder: loads every plugin at start-up and
//! refreshes one plugin by name when its files change. Compiling is CPU-heavy, so it runs on
//! the blocking pool; a failed load logs the file and the reason and keeps the previous version.
//! A plugin refused because another one serves its route is retried when that route frees up.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;
use tracing::Instrument as _;

use crate::engine::runtime::Runtime;
use crate::observe::metrics::{self, Metrics};
use crate::plugins::plugin::{LoadedPlugin, one_line, plugin_name};
use crate::plugins::registry::Registry;

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
    refreshing: tokio::sync::Mutex<()>,
    /// Plugins refused because another plugin serves the route they ask for: name → route.
    /// Nothing about their files changes when that route frees up, so the loader retries them
    /// itself then.
    refused: Mutex<BTreeMap<String, String>>,
    /// Every plugin's counters: each loaded version is given its plugin's, and loads, reloads
    /// and failures are counted here.
    metrics: Arc<Metrics>,
}

impl Loader {
    /// A loader for the plugins in `dir`, serving them through `registry`.
    pub(crate) fn new(
        runtime: Arc<Runtime>,
        registry: Arc<Registry>,
        dir: PathBuf,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            runtime,
            registry,
            dir,
            refreshing: tokio::sync::Mutex::new(()),
            refused: Mutex::new(BTreeMap::new()),
            metrics,
        }
    }

    /// Loads every `*.wasm` in the folder. Broken plugins are logged and skipped: one bad file
    /// must not keep the others from serving.
    pub(crate) async fn load_all(&self) -> anyhow::Result<()> {
        let names = self
            .names_on_disk()
            .with_context(|| format!("reading plugins folder {}", self.dir.display()))?;
        if names.is_empty() {
            tracing::warn!(dir = %self.dir.display(), "no plugins (*.wasm) found yet; watching for new ones");
        }
        for name in names {
            self.refresh(&name).await;
        }
        Ok(())
    }

    /// Brings every plugin in line with the folder: those it holds, those served and those
    /// refused. For when the folder itself changed (deleted, made again, renamed into place)
    /// or file events were lost.
    pub(crate) async fn rescan(&self) {
        let mut names = self.names_on_disk().unwrap_or_default();
        names.extend(self.registry.names());
        names.extend(self.lock_refused().keys().cloned());
        for name in names {
            self.refresh(&name).await;
        }
    }

    /// Brings plugin `name` in line with its files, then retries the plugins that were refused
    /// a route this freed.
    pub(crate) async fn refresh(&self, name: &str) {
        let _one_at_a_time = self.refreshing.lock().await;
        let mut pending = VecDeque::from([name.to_owned()]);
        // Ends: every retry takes a name out of `refused`; one that succeeds stays out, and
        // one refused again frees no route, so it queues nothing.
        while let Some(name) = pending.pop_front() {
            if let Some(freed) = self.refresh_one(&name).await {
                pending.extend(self.take_refused_for(&freed));
            }
        }
    }

    /// (Re)loads plugin `name` if `<name>.wasm` exists, stops routing to it if it does not.
    /// Returns the route it stopped serving, if any.
    async fn refresh_one(&self, name: &str) -> Option<String> {
        self.lock_refused().remove(name);
        let wasm_path = self.dir.join(format!("{name}.{PLUGIN_EXTENSION}"));
        let current = self.registry.get(name);
        if !wasm_path.is_file() {
            let removed = self.registry.remove(name)?;
            tracing::info!(
                plugin = %name,
                version = %removed.version(),
                route = %removed.route(),
                "plugin removed; its live sessions run on until they end"
            );
            return Some(removed.route().to_owned());
        }
        if current
            .as_ref()
            .is_some_and(|plugin| plugin.is_unchanged_on_disk(&wasm_path))
        {
            return None;
        }
        let plugin = self.load(name, &wasm_path, current.as_deref()).await?;
        self.serve(plugin, &wasm_path)
    }

    /// Compiles and checks `wasm_path` off the async runtime; logs why if it cannot serve.
    async fn load(
        &self,
        name: &str,
        wasm_path: &Path,
        current: Option<&LoadedPlugin>,
    ) -> Option<LoadedPlugin> {
        let runtime = self.runtime.clone();
        let path = wasm_path.to_owned();
        let started = Instant::now();
        let loaded = tokio::task::spawn_blocking(move || LoadedPlugin::load(&runtime, &path))
            .in_current_span()
            .await;
        let checked = match loaded {
            Ok(Ok(plugin)) => plugin.check_instantiates().await.map(|()| plugin),
            Ok(Err(err)) => Err(err),
            Err(join_error) => {
                tracing::error!(
                    plugin = %name.escape_debug(),
                    file = %wasm_path.display().to_string().escape_debug(),
                    "plugin loader panicked: {join_error}"
                );
                return None;
            }
        };
        let metrics = self.metrics.plugin(name);
        metrics.load.observe(started.elapsed());
        match checked {
            Ok(mut plugin) => {
                plugin.attach_metrics(metrics);
                Some(plugin)
            }
            // The name and path come from a file name, which may hold anything, line breaks
            // included: escaped, so the event stays one line.
            Err(err) => {
                metrics::add(&metrics.load_failures, 1);
                let kept = current.map_or("none", |p| p.version());
                tracing::error!(
                    plugin = %name.escape_debug(),
                    file = %wasm_path.display().to_string().escape_debug(),
                    kept_version = %kept,
                    "plugin not loaded: {}",
                    one_line(&err.to_string())
                );
                None
            }
        }
    }

    /// Makes `plugin` the serving version of its name, unless another plugin has its route.
    /// Returns the route its previous version served, if it changed.
    fn serve(&self, plugin: LoadedPlugin, wasm_path: &Path) -> Option<String> {
        let name = plugin.name().to_owned();
        let (version, route) = (plugin.version().to_owned(), plugin.route().to_owned());
        let origin = plugin.origin();
        // Which engine: `concurrent` for a `raw-plugin`, `plain` for any other (DESIGN §7).
        let engine = plugin.engine();
        match self.registry.insert(plugin) {
            Ok(Some(previous)) => {
                metrics::add(&previous.metrics().reloads, 1);
                tracing::info!(
                    plugin = %name,
                    version = %version,
                    previous_version = %previous.version(),
                    route = %route,
                    engine = %engine,
                    previous_engine = %previous.engine(),
                    "plugin reloaded; sessions on the previous version run on until they end"
                );
                (previous.route() != route).then(|| previous.route().to_owned())
            }
            Ok(None) => {
                tracing::info!(plugin = %name, version = %version, route = %route, artifact = %origin, engine = %engine, "serving plugin");
                None
            }
            Err(conflict) => {
                metrics::add(&self.metrics.plugin(&name).load_failures, 1);
                tracing::error!(plugin = %name, file = %wasm_path.display(), "plugin not loaded: {conflict}; it is retried when the route is free");
                self.lock_refused().insert(name, conflict.route);
                None
            }
        }
    }

    /// Takes the plugins refused `route` out of the refused list, in name order.
    fn take_refused_for(&self, route: &str) -> Vec<String> {
        let mut refused = self.lock_refused();
        let waiting: Vec<String> = refused
            .iter()
            .filter(|(_, wanted)| *wanted == route)
            .map(|(name, _)| name.clone())
            .collect();
        for name in &waiting {
            refused.remove(name);
        }
        waiting
    }

    fn lock_refused(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.refused
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// The plugin names the folder holds (`<name>.wasm`), in order.
    fn names_on_disk(&self) -> std::io::Result<BTreeSet<String>> {
        Ok(std::fs::read_dir(&self.dir)?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| has_extension(path, PLUGIN_EXTENSION))
            .map(|path| plugin_name(&path))
            .collect())
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
