//! Everything wasmtime: the two engines and their linkers, which of them a plugin runs on
//! (`world`), compiled artifacts kept on disk, CPU preemption and budgets, the per-instance
//! sandbox state and the guest's output.

// Generated code: its docs come from the WIT comments, where there are any.
#[allow(missing_docs)]
pub mod bindings;
pub mod cache;
pub(crate) mod cpu;
pub(crate) mod guest_log;
pub mod runtime;
pub(crate) mod state;
pub(crate) mod world;
