//! The wasmtime engines and linkers plugins run on. Two, because the component-model
//! concurrency machinery that a raw upgrade's async `stream<u8>` session needs makes every
//! other guest call dearer too (a task, waitable sets and resource-table entries per call:
//! measured ~1.2 µs per managed WebSocket event with it, ~0.40 µs without; DESIGN §7), and the
//! setting is engine-wide:
//! - [`EngineKind::Plain`]: no component-model async. Plugins of the `plugin` world
//!   (responses and managed WebSockets) run here.
//! - [`EngineKind::Concurrent`]: `concurrency_support` + component-model async. Plugins of the
//!   `raw-plugin` world (those exporting `raw-upgrade`) run here.
//!
//! Each has its own pooling allocator, sized from [`Limits`] for what can run on it, so
//! instantiation is cheap and the number of live instances is bounded; one ticker thread drives
//! both engines' epochs so guest code can be preempted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use anyhow::{Context as _, Result};
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::config::{Limits, REQUEST_INSTANCE_HEADROOM};
use crate::engine::cache::ArtifactCache;
use crate::engine::cpu::EPOCH_TICK;
use crate::engine::state::InstanceState;

/// Core instances a plugin instance may carry; the pool counts them against this ratio. A Rust
/// component has about 4 (its code plus the small shims `wasm-component-ld` adds), a Python one
/// (componentize-py) 14: the interpreter, libc and the other shared libraries it links are
/// separate modules. Sized for Python, so awake Python connections reach
/// `max_awake_websockets` before the pool runs out (with 4, requests got `503` at about 30% of
/// it). The limit is only a counter in wasmtime's pool: nothing is reserved per slot.
const CORE_INSTANCES_PER_COMPONENT: u32 = 16;
/// Tables a typical Rust component carries, for the same reason.
const TABLES_PER_COMPONENT: u32 = 3;
/// Bytes at the start of each pooled table and fiber stack that are zeroed in place when a slot
/// is reused, instead of being handed back to the kernel and faulted in again.
const KEEP_RESIDENT_BYTES: usize = 128 << 10;
/// Bytes at the start of each pooled linear memory zeroed in place (kept resident) when its
/// slot is freed; the rest is handed back to the kernel. None: with managed WebSockets
/// hibernating, instances come and go all the time, and every slot ever used kept up to this
/// much resident for good: measured at 10,000 hibernated connections, 128 KiB here cost 28.5
/// KiB of host RSS per connection against 12.1 KiB with none, while a new instance + `handle`
/// (median 20.6 vs 21.1 µs) and a wake from hibernation (first round trip +60 vs +53 µs over a
/// warm one) did not measurably change.
const MEMORY_KEEP_RESIDENT_BYTES: usize = 0;

/// Which engine a plugin runs on; decided by its exports when it is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EngineKind {
    /// No component-model async: plugins of the `plugin` world.
    Plain,
    /// Component-model concurrency: plugins of the `raw-plugin` world.
    Concurrent,
}

impl EngineKind {
    /// The name logs and cache entries use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Concurrent => "concurrent",
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One engine, the linker for it, and its compiled-plugin cache.
struct EngineSlot {
    engine: Engine,
    linker: Linker<InstanceState>,
    cache: Option<ArtifactCache>,
}

impl EngineSlot {
    fn new(kind: EngineKind, limits: &Limits) -> Result<Self> {
        let engine = Engine::new(&engine_config(kind, limits))
            .map_err(anyhow::Error::from)
            .with_context(|| format!("creating the {kind} wasmtime engine"))?;
        let mut linker: Linker<InstanceState> = Linker::new(&engine);
        // Guests built for wasm32-wasip2 import WASI 0.2 from std (stdio, clocks, random).
        // Linked for async calls on both engines: every guest entry is `call_async` on a
        // fiber, so a loop yields at epoch ticks instead of holding a tokio worker.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking WASI")?;
        // The contract's own imports: managed WebSocket connections and topics.
        crate::session::managed::imports::add_to_linker(&mut linker, |state| &mut state.realtime)
            .map_err(anyhow::Error::from)
            .context("linking the host functions")?;
        Ok(Self {
            engine,
            linker,
            cache: None,
        })
    }
}

/// The engines plus the host functions plugins may import.
pub struct Runtime {
    plain: EngineSlot,
    concurrent: EngineSlot,
    limits: Limits,
    _ticker: EpochTicker,
}

impl Runtime {
    /// Builds both engines and links WASI and the host functions into a linker for each.
    pub fn new(limits: &Limits) -> Result<Self> {
        let plain = EngineSlot::new(EngineKind::Plain, limits)?;
        let concurrent = EngineSlot::new(EngineKind::Concurrent, limits)?;
        Ok(Self {
            _ticker: EpochTicker::start(vec![plain.engine.clone(), concurrent.engine.clone()])?,
            plain,
            concurrent,
            limits: limits.clone(),
        })
    }

    /// Keeps compiled plugins in `dir`, so unchanged plugins load without recompiling. Each
    /// engine's entries are its own (their names carry the engine's key). A folder that others
    /// could write is not used (logged); plugins are then compiled.
    pub fn with_artifact_cache(mut self, dir: &std::path::Path) -> Result<Self> {
        self.plain.cache = ArtifactCache::open(dir, &self.plain.engine, EngineKind::Plain)?;
        // The folder is checked (and refused, with a warning) once for both.
        self.concurrent.cache = self
            .plain
            .cache
            .as_ref()
            .map(|cache| cache.for_engine(&self.concurrent.engine, EngineKind::Concurrent));
        Ok(self)
    }

    fn slot(&self, kind: EngineKind) -> &EngineSlot {
        match kind {
            EngineKind::Plain => &self.plain,
            EngineKind::Concurrent => &self.concurrent,
        }
    }

    /// The compiled-plugin cache of `kind`'s engine, if enabled.
    pub fn artifact_cache(&self, kind: EngineKind) -> Option<&ArtifactCache> {
        self.slot(kind).cache.as_ref()
    }

    /// The engine plugins of `kind` are compiled for.
    pub fn engine(&self, kind: EngineKind) -> &Engine {
        &self.slot(kind).engine
    }

    /// The linker plugins of `kind` are instantiated with.
    pub fn linker(&self, kind: EngineKind) -> &Linker<InstanceState> {
        &self.slot(kind).linker
    }

    /// The limits this runtime was built with.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

/// Instances `kind`'s pool reserves. Raw sessions live only on the concurrent engine; awake
/// managed WebSockets and plain requests may be on either (a `raw-plugin` may accept managed
/// WebSockets too), so each pool has room for all of them. The host's admission limits bound
/// the live instances of both together.
fn pool_instances(kind: EngineKind, limits: &Limits) -> u32 {
    match kind {
        EngineKind::Concurrent => limits.max_instances(),
        EngineKind::Plain => limits
            .max_awake_websockets
            .saturating_add(REQUEST_INSTANCE_HEADROOM),
    }
}

fn engine_config(kind: EngineKind, limits: &Limits) -> Config {
    let instances = pool_instances(kind, limits);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
        .total_memories(instances)
        .total_tables(instances.saturating_mul(TABLES_PER_COMPONENT))
        // Every live instance may be suspended on its own fiber stack (an upgraded session
        // waiting for bytes, an event yielding at a tick), so there must be a stack per
        // instance.
        .total_stacks(instances)
        .max_memory_size(limits.plugin.max_memory_bytes)
        .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT_BYTES)
        .table_keep_resident(KEEP_RESIDENT_BYTES)
        .async_stack_keep_resident(KEEP_RESIDENT_BYTES);

    let concurrent = kind == EngineKind::Concurrent;
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .wasm_component_model_async(concurrent)
        .concurrency_support(concurrent)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// Advances every engine's epoch every [`EPOCH_TICK`] until dropped: one thread for both.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engines: Vec<Engine>) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("switchyard-epoch".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    for engine in &engines {
                        engine.increment_epoch();
                    }
                }
            })
            .context("starting the epoch ticker thread")?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // It wakes within one tick; a panic there has nothing left to clean up.
            let _ = thread.join();
        }
    }
}
