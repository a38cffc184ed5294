//! The one place the WIT contract in `wit/` becomes Rust: everything else in the host uses the
//! types re-exported here.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    // `handle` runs on a fiber so a guest never blocks a tokio worker; `upgrade` is an async
    // WIT function and is driven inside `Store::run_concurrent`; the managed WebSocket events
    // are called on a fiber too, so their CPU is metered and a loop yields at epoch ticks.
    exports: { default: async },
});

pub use switchyard::plugin::types::{
    Error as GuestError, Headers, Message, Outgoing, ProtocolUpgrade, Request, Response,
    WebsocketAccept,
};
pub use switchyard::plugin::{connections, topics, types};
