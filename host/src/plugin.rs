//! One loaded version of a plugin: compiled, linked and checked against the contract once, then
//! instantiated cheaply for every request from its pre-instantiated handle.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::Store;
use wasmtime::component::Component;

use crate::bindings::{self, PluginPre};
use crate::cache::Origin;
use crate::config::{GUEST_LOG_BURST, GUEST_LOG_LINES_PER_SEC, PluginLimits};
use crate::gauge::{Gauge, GaugeGuard};
use crate::ratelimit::LogRateLimit;
use crate::runtime::Runtime;
use crate::sidecar::PluginSettings;
use crate::state::InstanceState;

/// Hex digits of the content hash kept as a version id: enough to tell versions apart in logs.
const VERSION_ID_LEN: usize = 12;

/// Why a plugin file could not become a serving plugin. The watcher logs it and keeps whatever
/// version was serving before.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The sidecar `.toml` is malformed.
    #[error("invalid settings in {path}: {message}")]
    Settings {
        /// The sidecar file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The bytes are not a valid WebAssembly component.
    #[error("{path} is not a valid WebAssembly component: {source:#}")]
    Compile {
        /// The file.
        path: PathBuf,
        /// The compiler's reason.
        source: anyhow::Error,
    },
    /// The component imports something the host does not provide, or does not export the
    /// `switchyard:plugin/handler` contract.
    #[error("{path} does not fit the switchyard:plugin contract: {source:#}")]
    Contract {
        /// The file.
        path: PathBuf,
        /// What does not match.
        source: anyhow::Error,
    },
}

/// A plugin version ready to serve.
pub struct LoadedPlugin {
    /// The file stem: `echo` for `echo.wasm`.
    name: Arc<str>,
    /// The path prefix it serves.
    route: String,
    /// Short content hash, so logs say which version of the file answered.
    version: String,
    /// Where it was loaded from.
    source: PathBuf,
    /// Settings from the sidecar, kept to notice when only they change.
    settings: PluginSettings,
    /// Linked and type-checked once; instantiating from it is the per-request cost.
    pre: PluginPre<InstanceState>,
    /// Limits for its instances and sessions: the host's defaults with the sidecar's
    /// overrides.
    limits: PluginLimits,
    /// Whether it was compiled now or came from the compiled-artifact cache.
    origin: Origin,
    /// How many lines its instances' output may log, shared by all of them.
    log_limit: Arc<LogRateLimit>,
}

impl fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("route", &self.route)
            .field("version", &self.version)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    /// Compiles and checks the plugin at `wasm_path` (with its optional sidecar). Blocking: call
    /// it off the async runtime.
    pub fn load(runtime: &Runtime, wasm_path: &Path) -> Result<Self, LoadError> {
        let bytes = std::fs::read(wasm_path).map_err(|source| LoadError::Read {
            path: wasm_path.to_owned(),
            source,
        })?;
        let settings = read_settings(wasm_path)?;
        let limits = settings
            .limits
            .apply(&runtime.limits().plugin)
            .map_err(|message| LoadError::Settings {
                path: wasm_path.with_extension("toml"),
                message,
            })?;
        let name = plugin_name(wasm_path);
        let version = version_id(&bytes);
        let compiled = match runtime.artifact_cache() {
            Some(cache) => cache.component(runtime.engine(), &bytes, &version),
            None => Component::new(runtime.engine(), &bytes).map(|c| (c, Origin::Compiled)),
        };
        let (component, origin) = compiled.map_err(|source| LoadError::Compile {
            path: wasm_path.to_owned(),
            source: source.into(),
        })?;
        let contract_error = |source: wasmtime::Error| LoadError::Contract {
            path: wasm_path.to_owned(),
            source: source.into(),
        };
        let instance_pre = runtime
            .linker()
            .instantiate_pre(&component)
            .map_err(contract_error)?;
        let pre = PluginPre::new(instance_pre).map_err(contract_error)?;
        Ok(Self {
            route: settings.route.clone().unwrap_or_else(|| format!("/{name}")),
            name: name.into(),
            version,
            origin,
            source: wasm_path.to_owned(),
            settings,
            pre,
            limits,
            log_limit: Arc::new(LogRateLimit::new(GUEST_LOG_LINES_PER_SEC, GUEST_LOG_BURST)),
        })
    }

    /// The plugin's name: its file stem.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The path prefix it serves.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// A short hash of the `.wasm` it was loaded from.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The `.wasm` file it was loaded from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Whether `wasm_path` (and its sidecar) still hold exactly what this version was loaded
    /// from, so a reload would change nothing.
    pub fn is_unchanged_on_disk(&self, wasm_path: &Path) -> bool {
        let Ok(bytes) = std::fs::read(wasm_path) else {
            return false;
        };
        version_id(&bytes) == self.version
            && read_settings(wasm_path).is_ok_and(|settings| settings == self.settings)
    }

    /// Whether it was compiled for this load or taken from the compiled-artifact cache.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// The limits its instances and sessions run under.
    pub fn limits(&self) -> &PluginLimits {
        &self.limits
    }

    /// A fresh instance with its own store and memory, counted in `live` while it exists.
    pub async fn instantiate(&self, live: &Arc<Gauge>) -> wasmtime::Result<PluginInstance> {
        let counted = live.enter();
        let mut store = Store::new(
            self.pre.engine(),
            InstanceState::new(
                self.name.clone(),
                self.limits.max_memory_bytes,
                self.log_limit.clone(),
            ),
        );
        store.limiter(|state| &mut state.memory);
        // Guest code reaches the meter at every epoch tick: it yields there, so it never holds
        // a tokio worker, and sessions are measured against their CPU budgets.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut store| Ok(store.data_mut().cpu.on_epoch()));
        let bindings = self.pre.instantiate_async(&mut store).await?;
        Ok(PluginInstance {
            store,
            bindings,
            _counted: counted,
        })
    }
}

/// A live instance of a plugin: the store and the exports to call.
pub struct PluginInstance {
    pub(crate) store: Store<InstanceState>,
    pub(crate) bindings: bindings::Plugin,
    /// Keeps the instance counted as live until it is dropped.
    _counted: GaugeGuard,
}

impl PluginInstance {
    /// Calls the guest's `handle`.
    pub async fn handle(
        &mut self,
        request: &bindings::Request,
    ) -> wasmtime::Result<bindings::Outgoing> {
        self.bindings
            .switchyard_plugin_handler()
            .call_handle(&mut self.store, request)
            .await
    }
}

/// `plugins/echo.wasm` → `echo`.
pub fn plugin_name(wasm_path: &Path) -> String {
    wasm_path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read_settings(wasm_path: &Path) -> Result<PluginSettings, LoadError> {
    let path = wasm_path.with_extension("toml");
    PluginSettings::read(&path).map_err(|message| LoadError::Settings { path, message })
}

fn version_id(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    hex.truncate(VERSION_ID_LEN);
    hex
}
