//! The one place the WIT contract in `wit/` becomes Rust: everything else in the host uses the
//! types re-exported here.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    // `handle` runs on a fiber so a guest never blocks a tokio worker; the managed WebSocket
    // events are called on a fiber too, so their CPU is metered and a loop yields at epoch
    // ticks.
    exports: { default: async },
});

/// The `raw-plugin` world: what it adds to `plugin` is the `raw-upgrade` export, which the host
/// loads on its own (`RawUpgradeIndices`); the shared imports and types are the ones above.
pub mod raw {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "raw-plugin",
        // `upgrade` is an async WIT function and is driven inside `Store::run_concurrent`.
        exports: { default: async },
        with: {
            "switchyard:plugin/types": super::switchyard::plugin::types,
            "switchyard:plugin/connections": super::switchyard::plugin::connections,
            "switchyard:plugin/topics": super::switchyard::plugin::topics,
        },
    });
}

/// A live instance's `raw-upgrade` export.
pub use raw::exports::switchyard::plugin::raw_upgrade::Guest as RawUpgrade;
/// Where a `raw-plugin`'s `raw-upgrade` export is, found once per loaded plugin.
pub use raw::exports::switchyard::plugin::raw_upgrade::GuestIndices as RawUpgradeIndices;

pub use switchyard::plugin::types::{
    Error as GuestError, Headers, Message, Outgoing, ProtocolUpgrade, Request, Response,
    WebsocketAccept,
};
pub use switchyard::plugin::{connections, topics, types};

/// A WebSocket message as `on-message` takes it, borrowing the bytes the framing read, so they
/// are lowered into the guest without a copy in between. Shaped exactly like the WIT `message`
/// (the same cases, names and payload types) and lowered like it.
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lower, Debug, Clone, Copy)]
#[component(variant)]
pub enum MessageRef<'a> {
    /// A text message (checked UTF-8).
    #[component(name = "text")]
    Text(&'a str),
    /// A binary message.
    #[component(name = "binary")]
    Binary(&'a [u8]),
}

impl MessageRef<'_> {
    /// The payload's size in bytes.
    pub fn payload_len(&self) -> usize {
        match self {
            Self::Text(text) => text.len(),
            Self::Binary(bytes) => bytes.len(),
        }
    }
}

impl<'a> From<&'a Message> for MessageRef<'a> {
    fn from(message: &'a Message) -> Self {
        match message {
            Message::Text(text) => Self::Text(text),
            Message::Binary(bytes) => Self::Binary(bytes),
        }
    }
}

/// A WebSocket message as a guest's `send` passes it, still in the guest's memory: lifted
/// without copying the payload, so the host can frame and write it from there. Shaped exactly
/// like the WIT `message`.
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lift)]
#[component(variant)]
pub enum MessageView {
    /// A text message.
    #[component(name = "text")]
    Text(wasmtime::component::WasmStr),
    /// A binary message.
    #[component(name = "binary")]
    Binary(wasmtime::component::WasmList<u8>),
}

impl MessageView {
    /// The message's payload in `store`'s memory (a text the guest encoded other than as
    /// UTF-8 is decoded into a copy). Fails if the text is not valid in its encoding.
    pub fn payload<'a, T: 'static>(
        &self,
        store: impl Into<wasmtime::StoreContext<'a, T>>,
    ) -> wasmtime::Result<MessagePayload<'a>> {
        Ok(match self {
            Self::Text(text) => MessagePayload::Text(text.to_str(store)?),
            Self::Binary(bytes) => MessagePayload::Binary(bytes.as_le_slice(store)),
        })
    }
}

/// A [`MessageView`]'s payload: borrowed from the guest's memory where it can be.
#[derive(Debug)]
pub enum MessagePayload<'a> {
    /// A text message.
    Text(std::borrow::Cow<'a, str>),
    /// A binary message.
    Binary(&'a [u8]),
}

impl MessagePayload<'_> {
    /// The message as [`MessageRef`], borrowing this payload.
    pub fn message(&self) -> MessageRef<'_> {
        match self {
            Self::Text(text) => MessageRef::Text(text),
            Self::Binary(bytes) => MessageRef::Binary(bytes),
        }
    }
}
