//! The wasmtime engine and linker every plugin shares: compiled once per host, configured for
//! component-model async (the upgraded session's `stream<u8>`), with a pooling allocator sized
//! from [`Limits`] so instantiation is cheap and the number of live instances is bounded, and
//! with epoch interruption driven by a ticker thread so guest code can be preempted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use anyhow::{Context as _, Result};
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::config::Limits;
use crate::engine::cache::ArtifactCache;
use crate::engine::cpu::EPOCH_TICK;
use crate::engine::state::InstanceState;

/// Core instances a typical Rust component carries (its code plus the small shims
/// `wasm-component-ld` adds); pool slots are reserved per plugin instance in this ratio.
const CORE_INSTANCES_PER_COMPONENT: u32 = 4;
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

/// The engine plus the host functions plugins may import.
pub struct Runtime {
    engine: Engine,
    linker: Linker<InstanceState>,
    limits: Limits,
    /// Compiled plugins kept on disk, if enabled.
    cache: Option<ArtifactCache>,
    _ticker: EpochTicker,
}

impl Runtime {
    /// Builds the engine and links WASI into a fresh linker.
    pub fn new(limits: &Limits) -> Result<Self> {
        let engine = Engine::new(&engine_config(limits))
            .map_err(anyhow::Error::from)
            .context("creating the wasmtime engine")?;
        let mut linker: Linker<InstanceState> = Linker::new(&engine);
        // Guests built for wasm32-wasip2 import WASI 0.2 from std (stdio, clocks, random).
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking WASI")?;
        // The contract's own imports: managed WebSocket connections and topics.
        crate::session::managed::imports::add_to_linker(&mut linker, |state| &mut state.realtime)
            .map_err(anyhow::Error::from)
            .context("linking the host functions")?;
        Ok(Self {
            _ticker: EpochTicker::start(engine.clone())?,
            engine,
            linker,
            limits: limits.clone(),
            cache: None,
        })
    }

    /// Keeps compiled plugins in `dir`, so unchanged plugins load without recompiling. A
    /// folder that others could write is not used (logged); plugins are then compiled.
    pub fn with_artifact_cache(mut self, dir: &std::path::Path) -> Result<Self> {
        self.cache = ArtifactCache::open(dir, &self.engine)?;
        Ok(self)
    }

    /// The compiled-plugin cache, if enabled.
    pub fn artifact_cache(&self) -> Option<&ArtifactCache> {
        self.cache.as_ref()
    }

    /// The engine plugins are compiled for.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The linker plugins are instantiated with.
    pub fn linker(&self) -> &Linker<InstanceState> {
        &self.linker
    }

    /// The limits this runtime was built with.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

fn engine_config(limits: &Limits) -> Config {
    let instances = limits.max_instances();
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
        .total_memories(instances)
        .total_tables(instances.saturating_mul(TABLES_PER_COMPONENT))
        // Every live instance may be suspended on its own fiber stack (an upgraded session
        // waiting for bytes), so there must be a stack per instance.
        .total_stacks(instances)
        .max_memory_size(limits.plugin.max_memory_bytes)
        .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT_BYTES)
        .table_keep_resident(KEEP_RESIDENT_BYTES)
        .async_stack_keep_resident(KEEP_RESIDENT_BYTES);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .wasm_component_model_async(true)
        .concurrency_support(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("switchyard-epoch".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
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
