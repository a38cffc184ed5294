//! The managed-WebSocket cases: connections whose framing the host runs, attacking it from
//! inside the events (`on-open`, `on-message`, `on-close`) and through the host functions
//! (`send`, `publish`).
//!
//! Events carry no path, so `handle` stores the case's name in the connection's attachment and
//! each event reads it back: a case survives hibernation the way the SDK tells plugins to keep
//! state.

use std::hint::black_box;

use switchyard_sdk::managed::{self, Connection, Error, Message};
use switchyard_sdk::{Outgoing, Request, topics};

use crate::hostile;

/// The topic `ws-flood-publish` publishes to and `ws-subscriber` joins.
pub(crate) const FLOOD_TOPIC: &str = "flood";

/// Each message `ws-flood-send` and `ws-flood-publish` send: 16 KiB, so the host's buffers
/// fill after a few sends, not after millions of tiny ones.
const FLOOD_MESSAGE: usize = 16 * 1024;

/// What a managed connection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ManagedCase {
    /// Spins forever in `on-open`.
    LoopOpen,
    /// Spins forever in `on-message`.
    LoopMessage,
    /// Spins forever in `on-close`.
    LoopClose,
    /// Panics in `on-message`.
    Panic,
    /// Executes `unreachable` in `on-message`.
    Unreachable,
    /// Loads from an address past the end of its memory in `on-message`.
    OutOfBounds,
    /// Allocates in `on-message` until the memory limit makes it trap.
    Memory,
    /// Sends to its own connection in `on-message` without end, whatever `send` answers.
    FloodSend,
    /// Publishes to [`FLOOD_TOPIC`] in `on-message` without end, whatever `publish` answers.
    FloodPublish,
    /// Joins [`FLOOD_TOPIC`] and otherwise only echoes: the flood's audience.
    Subscriber,
    /// Calls `send` in `on-message` with a binary message whose bytes lie past the end of its
    /// memory, as no SDK would.
    SendWildPointer,
    /// Calls `send` with a text message whose bytes are not UTF-8.
    SendNotUtf8,
    /// Calls `send` with a message kind the contract does not have (variant case 7).
    SendBadKind,
}

impl ManagedCase {
    /// The case named `name`, if it is a managed one.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        let case = match name {
            "ws-loop-open" => Self::LoopOpen,
            "ws-loop" => Self::LoopMessage,
            "ws-loop-close" => Self::LoopClose,
            "ws-panic" => Self::Panic,
            "ws-unreachable" => Self::Unreachable,
            "ws-out-of-bounds" => Self::OutOfBounds,
            "ws-memory" => Self::Memory,
            "ws-flood-send" => Self::FloodSend,
            "ws-flood-publish" => Self::FloodPublish,
            "ws-subscriber" => Self::Subscriber,
            "ws-send-wild-pointer" => Self::SendWildPointer,
            "ws-send-not-utf8" => Self::SendNotUtf8,
            "ws-send-bad-kind" => Self::SendBadKind,
            _ => return None,
        };
        Some(case)
    }

    /// The name [`ManagedCase::from_name`] takes, kept as the connection's attachment.
    fn name(self) -> &'static str {
        match self {
            Self::LoopOpen => "ws-loop-open",
            Self::LoopMessage => "ws-loop",
            Self::LoopClose => "ws-loop-close",
            Self::Panic => "ws-panic",
            Self::Unreachable => "ws-unreachable",
            Self::OutOfBounds => "ws-out-of-bounds",
            Self::Memory => "ws-memory",
            Self::FloodSend => "ws-flood-send",
            Self::FloodPublish => "ws-flood-publish",
            Self::Subscriber => "ws-subscriber",
            Self::SendWildPointer => "ws-send-wild-pointer",
            Self::SendNotUtf8 => "ws-send-not-utf8",
            Self::SendBadKind => "ws-send-bad-kind",
        }
    }

    /// The case of a connection, from its attachment.
    fn of(connection: Connection) -> Option<Self> {
        let attachment = connection.attachment().ok()?;
        Self::from_name(std::str::from_utf8(&attachment).ok()?)
    }

    /// Accepts the WebSocket for the host to run, remembering the case in the attachment.
    pub(crate) fn accept(self, request: &Request) -> Outgoing {
        managed::accept(request)
            .map(|accept| {
                let accept = accept.attachment(self.name());
                match self {
                    Self::Subscriber => accept.subscribe(FLOOD_TOPIC),
                    _ => accept,
                }
            })
            .into()
    }
}

/// `on-open`: only [`ManagedCase::LoopOpen`] does anything.
pub(crate) fn on_open(connection: Connection) {
    if ManagedCase::of(connection) == Some(ManagedCase::LoopOpen) {
        hostile::spin();
    }
}

/// `on-message`: the attack, set off by whatever the client sends first. Cases without an
/// attack in `on-message` echo, so a test can see the connection is alive.
pub(crate) fn on_message(connection: Connection, message: Message) {
    match ManagedCase::of(connection) {
        Some(ManagedCase::LoopMessage) => hostile::spin(),
        Some(ManagedCase::Panic) => panic!("misbehave: panic in on-message, as asked"),
        Some(ManagedCase::Unreachable) => unreachable_instruction(),
        Some(ManagedCase::OutOfBounds) => {
            let loaded = load_out_of_bounds();
            // Not reached: the load traps. If it ever did not, the client would see it.
            let _ = connection.send(format!("loaded {loaded} out of bounds"));
        }
        Some(ManagedCase::Memory) => hostile::exhaust_memory(),
        Some(ManagedCase::FloodSend) => flood(|chunk| connection.send(chunk)),
        Some(ManagedCase::FloodPublish) => flood(|chunk| topics::publish(FLOOD_TOPIC, chunk)),
        Some(ManagedCase::SendWildPointer) => {
            raw_send::call(connection, raw_send::BINARY, u32::MAX - 7, 1_000);
        }
        Some(ManagedCase::SendNotUtf8) => {
            let bytes = black_box(NOT_UTF8);
            raw_send::call(connection, raw_send::TEXT, raw_send::address(bytes), 3);
        }
        Some(ManagedCase::SendBadKind) => {
            let bytes = black_box(b"hello");
            raw_send::call(connection, 7, raw_send::address(bytes), 5);
        }
        Some(_) | None => {
            let _ = connection.send(message);
        }
    }
}

/// `on-close`: only [`ManagedCase::LoopClose`] does anything.
pub(crate) fn on_close(connection: Connection) {
    if ManagedCase::of(connection) == Some(ManagedCase::LoopClose) {
        hostile::spin();
    }
}

/// Calls `send` with 16 KiB binary messages forever, ignoring refusals (a full buffer, a closed
/// connection): only the host's limits end it. Every message differs in its first bytes, so the
/// host cannot share one buffer among them.
fn flood(send: impl Fn(Vec<u8>) -> Result<(), Error>) -> ! {
    for attempt in 0u64.. {
        let mut chunk = vec![b'x'; FLOOD_MESSAGE];
        for (byte, count) in chunk.iter_mut().zip(attempt.to_le_bytes()) {
            *byte = count;
        }
        // Refused or not, the next one goes: the attack is not to stop.
        let _ = send(chunk);
    }
    unreachable!("2^64 sends")
}

/// Bytes that are not UTF-8 (`0xff` never occurs in it), for [`ManagedCase::SendNotUtf8`].
const NOT_UTF8: &[u8; 3] = &[0xff, 0xfe, 0xfd];

/// The contract's `send` import called directly with arguments of the test's choosing, as a
/// hand-written module could: the SDK only ever passes a valid message, so this is the way to
/// hand the host a wild pointer, bytes that are not UTF-8 or a message kind that does not exist.
/// The host must turn each into a trap of this instance alone.
#[allow(unsafe_code)] // The one purpose of these cases: arguments the canonical ABI forbids.
mod raw_send {
    use switchyard_sdk::managed::Connection;

    /// The `message` variant's case numbers in the contract (`text`, then `binary`).
    pub(super) const TEXT: u32 = 0;
    pub(super) const BINARY: u32 = 1;

    #[cfg(target_arch = "wasm32")]
    #[link(wasm_import_module = "switchyard:plugin/connections@0.3.0")]
    unsafe extern "C" {
        /// `send(connection-id, message) -> result<_, error>` flattened by the canonical ABI:
        /// the connection, the variant's case, the payload's address and length, and where
        /// the result goes.
        #[link_name = "send"]
        fn send(connection: i64, case: i32, address: i32, length: i32, result: i32);
    }

    /// The address of `bytes` in linear memory.
    pub(super) fn address(bytes: &[u8]) -> u32 {
        bytes.as_ptr() as usize as u32
    }

    /// Calls `send` with these raw arguments; the result, if the host ever wrote one, is
    /// ignored (a valid call is not what this is for).
    pub(super) fn call(connection: Connection, case: u32, address: u32, length: u32) {
        #[cfg(target_arch = "wasm32")]
        {
            let mut result = [0u32; 2];
            // SAFETY: none is claimed for the arguments: they are meant to be refused. The
            // result slot is this frame's own, 4-aligned, large enough for the result.
            unsafe {
                send(
                    connection.id() as i64,
                    case as i32,
                    address as i32,
                    length as i32,
                    result.as_mut_ptr() as usize as i32,
                );
            }
        }
        // The plugin is only ever run as WebAssembly; this keeps native `cargo check` building.
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = (connection, case, address, length);
        }
    }
}

/// Executes WebAssembly's `unreachable` instruction: a trap with no panic machinery before it.
fn unreachable_instruction() -> ! {
    #[cfg(target_arch = "wasm32")]
    {
        core::arch::wasm32::unreachable()
    }
    // The plugin is only ever run as WebAssembly; this keeps native `cargo check` building.
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::process::abort()
    }
}

/// Loads 8 bytes from the last address of the 32-bit address space, far past any memory the
/// host allows a plugin: the engine's bounds check must trap.
#[allow(unsafe_code)] // The one purpose of this case: a wild load the sandbox must stop.
fn load_out_of_bounds() -> u64 {
    // `black_box` keeps the compiler from reasoning about the address.
    let address = black_box(u32::MAX as usize - 7);
    // SAFETY: none: this load is meant to fault. In WebAssembly it traps before reading
    // anything; the case is never run natively.
    unsafe { std::ptr::read_volatile(address as *const u64) }
}
