//! One loaded version of a plugin: compiled, linked and checked against the contract once, then
//! instantiated cheaply for every request from its pre-instantiated handle.

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{Mode, OFlags};
use sha2::{Digest, Sha256};
use wasmtime::Store;
use wasmtime::component::{Component, InstancePre, TypedFunc};

use crate::config::{GUEST_LOG_BURST, GUEST_LOG_LINES_PER_SEC, PluginLimits};
use crate::engine::bindings::{self, PluginIndices, RawUpgrade, RawUpgradeIndices};
use crate::engine::cache::{ContentHash, Origin};
use crate::engine::runtime::{EngineKind, Runtime};
use crate::engine::state::InstanceState;
use crate::engine::world;
use crate::http::gauge::{Gauge, GaugeGuard};
use crate::observe::metrics::PluginMetrics;
use crate::plugins::sidecar::{PluginSettings, check_segment};
use crate::ratelimit::LogRateLimit;
use crate::session::managed::imports::RealtimeCtx;

/// Hex digits of the content hash kept as a version id: enough to tell versions apart in logs.
const VERSION_ID_LEN: usize = 12;
/// How every WebAssembly binary starts. Checked before compiling, so that a file that is not
/// WebAssembly is reported without quoting its bytes (the parser's message would).
const WASM_MAGIC: &[u8] = b"\0asm";
/// Longest reason a load error gives, in characters: the compiler's messages can quote names
/// from the binary, which its author chose.
const MAX_REASON_CHARS: usize = 500;

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
    /// The file name does not give a name a client can reach.
    #[error("{path} cannot be served: its name becomes the route's segment, and {reason}")]
    Name {
        /// The file.
        path: PathBuf,
        /// What is wrong with the name.
        reason: String,
    },
    /// The file is a symlink to a file outside the folder holding it.
    #[error(
        "{path} leads out of the plugins folder (to {target}); symlinks are only followed inside it"
    )]
    OutsideFolder {
        /// The file.
        path: PathBuf,
        /// Where it leads.
        target: PathBuf,
    },
    /// The sidecar `.toml` is malformed.
    #[error("invalid settings in {path}: {}", one_line(.message))]
    Settings {
        /// The sidecar file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The file does not start like a WebAssembly binary.
    #[error(
        "{path} is not a valid WebAssembly component: it does not start with the WebAssembly magic number"
    )]
    NotWasm {
        /// The file.
        path: PathBuf,
    },
    /// The bytes are not a valid WebAssembly component.
    #[error("{path} is not a valid WebAssembly component: {}", one_line(&format!("{source:#}")))]
    Compile {
        /// The file.
        path: PathBuf,
        /// The compiler's reason.
        source: anyhow::Error,
    },
    /// The component imports something the host does not provide, or does not export the
    /// `switchyard:plugin/handler` contract.
    #[error("{path} does not fit the switchyard:plugin contract: {}", one_line(&format!("{source:#}")))]
    Contract {
        /// The file.
        path: PathBuf,
        /// What does not match.
        source: anyhow::Error,
    },
    /// An instance cannot even start within the plugin's limits (e.g. its initial memory is
    /// larger than `memory_mib`): serving it would fail every request.
    #[error("{path} cannot start within its limits (memory_mib = {memory_mib}): {source:#}")]
    DoesNotFit {
        /// The file.
        path: PathBuf,
        /// The memory limit it was tried with, in MiB.
        memory_mib: usize,
        /// Why instantiation failed.
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
    pre: InstancePre<InstanceState>,
    /// Where its `handler` and `events` exports are.
    exports: PluginIndices,
    /// The engine it was compiled for and runs on.
    engine: EngineKind,
    /// Where its `raw-upgrade` export is: a `raw-plugin` only.
    raw_upgrade: Option<RawUpgradeIndices>,
    /// Limits for its instances and sessions: the host's defaults with the sidecar's
    /// overrides.
    limits: PluginLimits,
    /// Whether it was compiled now or came from the compiled-artifact cache.
    origin: Origin,
    /// How many lines its instances' output may log, shared by all of them.
    log_limit: Arc<LogRateLimit>,
    /// The plugin's counters (shared by all its versions), so counting needs no lookup.
    metrics: Arc<PluginMetrics>,
    /// Set once the route table no longer serves this version (replaced or removed), so a
    /// connection can tell its version is still current without looking it up.
    retired: AtomicBool,
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
        let name = plugin_name(wasm_path);
        check_segment(&name).map_err(|reason| LoadError::Name {
            path: wasm_path.to_owned(),
            reason,
        })?;
        let bytes = read_in_folder(wasm_path)?;
        if !bytes.starts_with(WASM_MAGIC) {
            return Err(LoadError::NotWasm {
                path: wasm_path.to_owned(),
            });
        }
        let settings = read_settings(wasm_path)?;
        let limits = settings
            .limits(&runtime.limits().plugin)
            .map_err(|message| LoadError::Settings {
                path: wasm_path.with_extension("toml"),
                message,
            })?;
        let hash: ContentHash = Sha256::digest(&bytes).into();
        let version = version_id(&hash);
        // Decided from the exports before compiling: each engine compiles only its own kind.
        let engine = world::engine_for(&bytes);
        let compiled = match runtime.artifact_cache(engine) {
            Some(cache) => cache.component(runtime.engine(engine), &bytes, &hash),
            None => Component::new(runtime.engine(engine), &bytes).map(|c| (c, Origin::Compiled)),
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
            .linker(engine)
            .instantiate_pre(&component)
            .map_err(contract_error)?;
        let raw_upgrade = match engine {
            EngineKind::Concurrent => {
                Some(RawUpgradeIndices::new(&instance_pre).map_err(contract_error)?)
            }
            EngineKind::Plain => None,
        };
        let exports = PluginIndices::new(&instance_pre).map_err(contract_error)?;
        Ok(Self {
            route: settings.route.clone().unwrap_or_else(|| format!("/{name}")),
            name: name.into(),
            version,
            origin,
            source: wasm_path.to_owned(),
            settings,
            pre: instance_pre,
            exports,
            engine,
            raw_upgrade,
            limits,
            log_limit: Arc::new(LogRateLimit::new(GUEST_LOG_LINES_PER_SEC, GUEST_LOG_BURST)),
            metrics: Arc::default(),
            retired: AtomicBool::new(false),
        })
    }

    /// Makes this version count into `metrics`, the counters of its plugin name: done once,
    /// when the loader is about to serve it.
    pub(crate) fn attach_metrics(&mut self, metrics: Arc<PluginMetrics>) {
        self.log_limit = Arc::new(
            LogRateLimit::new(GUEST_LOG_LINES_PER_SEC, GUEST_LOG_BURST)
                .counting_into(metrics.guest_log_dropped.clone()),
        );
        self.metrics = metrics;
    }

    /// The counters of this plugin.
    pub(crate) fn metrics(&self) -> &PluginMetrics {
        &self.metrics
    }

    /// The counters of this plugin, to keep (e.g. by an instance's host functions).
    pub(crate) fn metrics_handle(&self) -> Arc<PluginMetrics> {
        self.metrics.clone()
    }

    /// The plugin's name: its file stem.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The plugin's name, shared rather than borrowed, for maps keyed by it.
    pub(crate) fn name_arc(&self) -> Arc<str> {
        self.name.clone()
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

    /// Whether the route table stopped serving this version (a newer one replaced it, or the
    /// plugin was removed).
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// Marks this version as no longer served: done by the route table.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    /// Whether `wasm_path` (and its sidecar) still hold exactly what this version was loaded
    /// from, so a reload would change nothing.
    pub fn is_unchanged_on_disk(&self, wasm_path: &Path) -> bool {
        let Ok(bytes) = read_in_folder(wasm_path) else {
            return false;
        };
        version_id(&Sha256::digest(&bytes).into()) == self.version
            && read_settings(wasm_path).is_ok_and(|settings| settings == self.settings)
    }

    /// The engine it runs on: [`EngineKind::Concurrent`] for a `raw-plugin`.
    pub fn engine(&self) -> EngineKind {
        self.engine
    }

    /// Whether it may answer with a raw protocol upgrade (it exports `raw-upgrade`).
    pub fn takes_raw_upgrades(&self) -> bool {
        self.raw_upgrade.is_some()
    }

    /// Whether it was compiled for this load or taken from the compiled-artifact cache.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// The limits its instances and sessions run under.
    pub fn limits(&self) -> &PluginLimits {
        &self.limits
    }

    /// Instantiates the plugin once and drops the instance, so a plugin that cannot start
    /// within its limits is refused at load instead of failing every request. A pool with no
    /// free slot right now cannot tell; the plugin is then accepted.
    pub async fn check_instantiates(&self) -> Result<(), LoadError> {
        match self.instantiate(&Arc::new(Gauge::default())).await {
            // `on-message` is called with a borrowing `MessageRef` without a type check per
            // call; this checks, once per load, that it has the type the generated code
            // expects (it always does for a plugin of this contract version).
            Ok(instance) => instance
                .bindings
                .switchyard_plugin_events()
                .func_on_message()
                .func()
                .typed::<(u64, bindings::MessageRef<'_>), ()>(&instance.store)
                .map(drop)
                .map_err(|source| LoadError::Contract {
                    path: self.source.clone(),
                    source: source.into(),
                }),
            Err(err) if err.is::<wasmtime::PoolConcurrencyLimitError>() => Ok(()),
            Err(err) => Err(LoadError::DoesNotFit {
                path: self.source.clone(),
                memory_mib: self.limits.max_memory_bytes >> 20,
                source: err.into(),
            }),
        }
    }

    /// A fresh instance with its own store and memory, counted in `live` while it exists. Its
    /// host functions for connections and topics reach nothing.
    pub async fn instantiate(&self, live: &Arc<Gauge>) -> wasmtime::Result<PluginInstance> {
        self.instantiate_with(live, RealtimeCtx::default()).await
    }

    /// A fresh instance whose host functions for connections and topics reach `realtime`.
    pub(crate) async fn instantiate_with(
        &self,
        live: &Arc<Gauge>,
        realtime: RealtimeCtx,
    ) -> wasmtime::Result<PluginInstance> {
        let counted = live.enter();
        let mut store = Store::new(
            self.pre.engine(),
            InstanceState::new(
                self.name.clone(),
                self.limits.max_memory_bytes,
                self.log_limit.clone(),
                realtime,
            ),
        );
        store.limiter(|state| &mut state.memory);
        // Guest code reaches the meter at every epoch tick: it yields there, so it never holds
        // a tokio worker, and sessions are measured against their CPU budgets.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut store| Ok(store.data_mut().cpu.on_epoch()));
        let instance = self.pre.instantiate_async(&mut store).await?;
        let bindings = self.exports.load(&mut store, &instance)?;
        let raw_upgrade = match &self.raw_upgrade {
            Some(indices) => Some(indices.load(&mut store, &instance)?),
            None => None,
        };
        Ok(PluginInstance {
            store,
            bindings,
            raw_upgrade,
            _counted: counted,
        })
    }
}

/// A live instance of a plugin: the store and the exports to call.
pub struct PluginInstance {
    pub(crate) store: Store<InstanceState>,
    pub(crate) bindings: bindings::Plugin,
    /// The `raw-upgrade` export, for a `raw-plugin`.
    pub(crate) raw_upgrade: Option<RawUpgrade>,
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

    /// Calls the guest's `on-message` for connection number `connection`, as a managed
    /// WebSocket's event does but without metering its CPU. An instance made with
    /// [`LoadedPlugin::instantiate`] reaches no connection: its `send` answers
    /// `unknown-connection`. For measuring a call in process.
    pub async fn on_message(
        &mut self,
        connection: u64,
        message: bindings::MessageRef<'_>,
    ) -> wasmtime::Result<()> {
        self.on_message_func()
            .call_async(&mut self.store, (connection, message))
            .await
    }

    /// The guest's `on-message`, typed to take the message borrowed.
    pub(crate) fn on_message_func<'message>(
        &self,
    ) -> TypedFunc<(u64, bindings::MessageRef<'message>), ()> {
        let func = *self
            .bindings
            .switchyard_plugin_events()
            .func_on_message()
            .func();
        // SAFETY: `new_unchecked` skips the check that the function's WIT type matches the
        // Rust types. It does: the plugin was type-checked against the `plugin` world when it
        // was loaded (`PluginPre::new`), so `on-message` takes `(u64, message)`; `MessageRef`
        // is `message` with borrowed payloads (the same cases, in the same order, with
        // `string` and `list<u8>` payloads), as the generated `call_on_message` passes it, and
        // the load checked this very pairing with `Func::typed` (`check_instantiates`).
        #[allow(unsafe_code)]
        unsafe {
            TypedFunc::new_unchecked(func)
        }
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
    match resolve_in_folder(&path) {
        // No sidecar (or a dangling link): default settings, as `read` says.
        Err(LoadError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
        Err(refused) => return Err(refused),
        Ok(_) => {}
    }
    PluginSettings::read(&path).map_err(|message| LoadError::Settings { path, message })
}

/// Reads the plugin file at `path`, unless it leads (through symlinks) out of the folder
/// holding it: whoever may drop files there must not make the host read, and maybe report on,
/// any other file the host can read. A symlink inside the folder (`hello.wasm ->
/// hello-v2.wasm`) is followed.
fn read_in_folder(path: &Path) -> Result<Vec<u8>, LoadError> {
    let target = resolve_in_folder(path)?;
    let read = || -> std::io::Result<Vec<u8>> {
        // The resolved path was checked just now: if a symlink has been put there since, the
        // open fails instead of following it.
        let fd = rustix::fs::open(
            &target,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut bytes = Vec::new();
        std::fs::File::from(fd).read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    read().map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The file `path` leads to after every symlink, if that lies inside the folder holding
/// `path`.
fn resolve_in_folder(path: &Path) -> Result<PathBuf, LoadError> {
    let read_error = |source| LoadError::Read {
        path: path.to_owned(),
        source,
    };
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let folder = std::fs::canonicalize(folder).map_err(read_error)?;
    let target = std::fs::canonicalize(path).map_err(read_error)?;
    if target.starts_with(&folder) {
        Ok(target)
    } else {
        Err(LoadError::OutsideFolder {
            path: path.to_owned(),
            target,
        })
    }
}

/// `text` as one log line: runs of white space (line breaks of pretty-printed values included)
/// become one space, other control characters are escaped, and it is cut after
/// [`MAX_REASON_CHARS`].
pub(crate) fn one_line(text: &str) -> String {
    let mut line = String::new();
    let mut space = false;
    for (count, c) in text.trim().chars().enumerate() {
        if count == MAX_REASON_CHARS {
            line.push_str(" …");
            break;
        }
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if std::mem::take(&mut space) {
            line.push(' ');
        }
        if c.is_control() {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    line
}

/// The first [`VERSION_ID_LEN`] hex digits of the content hash.
fn version_id(hash: &ContentHash) -> String {
    let mut hex = crate::engine::cache::hex(hash);
    hex.truncate(VERSION_ID_LEN);
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_become_one_bounded_line() {
        let pretty = "bad magic - expected=[\n    0x0,\n    0x61,\n]\tend\u{1b}[31m";
        assert_eq!(
            one_line(pretty),
            "bad magic - expected=[ 0x0, 0x61, ] end\\u{1b}[31m"
        );
        let long = "x".repeat(MAX_REASON_CHARS * 2);
        assert_eq!(one_line(&long).chars().count(), MAX_REASON_CHARS + 2);
    }
}
