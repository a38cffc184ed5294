//! WebSocket (RFC 6455) for plugins: the opening handshake and a WebSocket over a [`Session`].
//!
//! The framing is [tungstenite]'s, driven without I/O of its own: bytes from the session go
//! into an in-memory buffer it reads, and what it writes is batched out to the session. Pings are
//! answered and close frames returned automatically.
//!
//! A WebSocket over a session is for `raw-plugin`s (the `raw-upgrade` feature, which the example
//! needs to build):
//!
#![cfg_attr(feature = "raw-upgrade", doc = "```")]
#![cfg_attr(not(feature = "raw-upgrade"), doc = "```ignore")]
//! use switchyard_sdk::websocket::{self, WebSocket};
//! use switchyard_sdk::{Outgoing, Plugin, Request, Session};
//!
//! struct Echo;
//!
//! impl Plugin for Echo {
//!     fn handle(request: Request) -> Outgoing {
//!         websocket::accept(&request).into()
//!     }
//!
//!     async fn upgrade(_request: Request, session: Session) {
//!         let mut socket = WebSocket::new(session);
//!         while let Some(Ok(message)) = socket.recv().await {
//!             if (message.is_text() || message.is_binary()) && socket.feed(message).await.is_err() {
//!                 break;
//!             }
//!         }
//!     }
//! }
//! # switchyard_sdk::export!(Echo);
//! # fn main() {}
//! ```
//!
//! [`Session`]: crate::Session
//! [tungstenite]: https://docs.rs/tungstenite

pub(crate) mod handshake;
mod memory;
mod socket;

pub use handshake::{accept, accept_with_protocols};
pub use socket::{OUTBOUND_FLUSH_THRESHOLD, WebSocket};
pub use tungstenite::protocol::frame::coding::CloseCode;
pub use tungstenite::{Bytes, Error, Message, Utf8Bytes, protocol::CloseFrame};

/// WebSocket settings: buffer sizes and message limits. Start from [`default_config`].
pub type Config = tungstenite::protocol::WebSocketConfig;

/// The read buffer tungstenite keeps per connection; small, since most sessions idle.
pub const READ_BUFFER_SIZE: usize = 4 * 1024;
/// The largest message accepted from a client.
pub const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;
/// The largest frame accepted from a client.
pub const MAX_FRAME_SIZE: usize = 16 * 1024 * 1024;

/// The settings [`WebSocket::new`] uses, tuned for many mostly idle sessions.
///
/// tungstenite's own defaults allocate a 128 KiB read buffer per connection and buffer writes
/// up to 128 KiB; here the read buffer is [`READ_BUFFER_SIZE`], writes go straight to the
/// WebSocket's own outbound buffer (flushed past [`OUTBOUND_FLUSH_THRESHOLD`] and whenever it
/// waits for input), and messages and frames are capped at [`MAX_MESSAGE_SIZE`] and
/// [`MAX_FRAME_SIZE`].
pub fn default_config() -> Config {
    Config::default()
        .read_buffer_size(READ_BUFFER_SIZE)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_MESSAGE_SIZE))
        .max_frame_size(Some(MAX_FRAME_SIZE))
}
