//! Managed WebSockets: the host runs the framing and calls the plugin when something happens.
//!
//! [`Plugin::handle`](crate::Plugin::handle) answers a handshake with [`accept`] (or
//! [`accept_with_protocols`]); the host then answers `101` and calls
//! [`Plugin::on_open`](crate::Plugin::on_open), [`Plugin::on_message`](crate::Plugin::on_message)
//! and [`Plugin::on_close`](crate::Plugin::on_close) with the [`Connection`]. The plugin answers
//! through the connection ([`Connection::send`], [`Connection::close`]) and through
//! [`topics`](crate::topics), which reach every subscribed connection without plugin code
//! running per recipient.
//!
//! # State lives in the attachment
//!
//! An idle connection's instance is dropped (the connection *hibernates*: its socket stays
//! open and the host still answers pings), and its next event runs on a fresh instance. Globals,
//! `static`s and anything kept in memory between events are therefore gone at some point you do
//! not choose. What an event needs to know about its connection belongs in the connection's
//! [attachment](Connection::attachment): a few bytes the host keeps for it (4 KiB unless the
//! operator says otherwise).
//!
//! ```
//! use switchyard_sdk::managed::{self, Connection, Message};
//! use switchyard_sdk::{Outgoing, Plugin, Request};
//!
//! struct Echo;
//!
//! impl Plugin for Echo {
//!     fn handle(request: Request) -> Outgoing {
//!         managed::accept(&request).into()
//!     }
//!
//!     fn on_message(connection: Connection, message: Message) {
//!         // A client that falls behind loses the echo; nothing else to do about it here.
//!         let _ = connection.send(message);
//!     }
//! }
//! # switchyard_sdk::export!(Echo);
//! # fn main() {}
//! ```

mod accept;
mod connection;
mod message;

pub use accept::{WebSocketAccept, accept, accept_with_protocols};
pub use connection::Connection;
pub use message::{Error, Message};
