//! The one place the WIT contract in `wit/` becomes Rust: everything else in the host uses the
//! types re-exported here.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    // `handle` runs on a fiber so a guest never blocks a tokio worker; `upgrade` is an async
    // WIT function and is driven inside `Store::run_concurrent`.
    exports: { default: async },
});

pub use switchyard::plugin::types::{Headers, Outgoing, ProtocolUpgrade, Request, Response};
