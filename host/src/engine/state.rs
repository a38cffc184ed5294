//! The per-instance state a plugin's store carries: its WASI context (no files, environment,
//! arguments or network), its resource table, its memory limit, its CPU meter and what its
//! host functions for managed WebSockets and topics reach.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::engine::cpu::CpuMeter;
use crate::engine::guest_log::{GuestLog, GuestStream};
use crate::ratelimit::LogRateLimit;
use crate::session::managed::imports::RealtimeCtx;

/// Data owned by one plugin instance's store.
pub struct InstanceState {
    /// What the guest's WASI imports see: only stdout/stderr (into the host log), clocks and
    /// randomness. Nothing is granted by default.
    wasi: WasiCtx,
    /// Handles to host resources (streams, WASI objects) the guest holds.
    table: ResourceTable,
    /// Caps the guest's linear memory and remembers whether it ever said no.
    pub(crate) memory: MemoryLimiter,
    /// Enforces a session's CPU budgets at epoch ticks.
    pub(crate) cpu: CpuMeter,
    /// What the plugin's host functions for managed WebSockets and topics reach.
    pub(crate) realtime: RealtimeCtx,
}

impl InstanceState {
    /// State for a new instance of the plugin `plugin`, with memory capped at
    /// `max_memory_bytes` and its output logged within the plugin's `log_limit`.
    pub(crate) fn new(
        plugin: Arc<str>,
        max_memory_bytes: usize,
        log_limit: Arc<LogRateLimit>,
        realtime: RealtimeCtx,
    ) -> Self {
        let wasi = WasiCtxBuilder::new()
            .stdout(GuestLog::new(
                plugin.clone(),
                GuestStream::Stdout,
                log_limit.clone(),
            ))
            .stderr(GuestLog::new(plugin, GuestStream::Stderr, log_limit))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            memory: MemoryLimiter {
                limits: StoreLimitsBuilder::new()
                    .memory_size(max_memory_bytes)
                    .build(),
                refused: false,
            },
            cpu: CpuMeter::default(),
            realtime,
        }
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// wasmtime's store limits, plus a note of whether a memory growth was refused, so that the
/// trap that usually follows can be reported as "memory limit" rather than a plain trap.
pub(crate) struct MemoryLimiter {
    limits: StoreLimits,
    /// Set once the guest asked for more memory than its limit.
    pub(crate) refused: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        self.refused |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }
}
