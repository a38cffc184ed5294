//! The per-instance state a plugin's store carries: its WASI context (no files, environment,
//! arguments or network), its resource table, and its memory limit.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::guest_log::{GuestLog, GuestStream};

/// Data owned by one plugin instance's store.
pub struct InstanceState {
    /// What the guest's WASI imports see: only stdout/stderr (into the host log), clocks and
    /// randomness. Nothing is granted by default.
    wasi: WasiCtx,
    /// Handles to host resources (streams, WASI objects) the guest holds.
    table: ResourceTable,
    /// Caps the guest's linear memory; growth past it fails inside the guest.
    limits: StoreLimits,
}

impl InstanceState {
    /// State for a new instance of the plugin `plugin`, with memory capped at
    /// `max_memory_bytes`.
    pub fn new(plugin: Arc<str>, max_memory_bytes: usize) -> Self {
        let wasi = WasiCtxBuilder::new()
            .stdout(GuestLog::new(plugin.clone(), GuestStream::Stdout))
            .stderr(GuestLog::new(plugin, GuestStream::Stderr))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let limits = StoreLimitsBuilder::new()
            .memory_size(max_memory_bytes)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limits,
        }
    }

    /// The limiter wasmtime consults whenever the guest grows memory or tables.
    pub fn limiter(&mut self) -> &mut StoreLimits {
        &mut self.limits
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
