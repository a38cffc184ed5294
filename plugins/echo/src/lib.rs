//! Example plugin: a WebSocket echo server whose framing the host runs (a managed WebSocket).
//!
//! Text and binary messages come back as they were sent; pings, the close handshake and idle
//! connections are the host's business. The plugin keeps no state, so hibernation changes
//! nothing for it. Build with `cargo build --profile plugin --target wasm32-wasip2 -p echo`, then
//! connect with any WebSocket client, e.g. `websocat ws://127.0.0.1:8080/echo`. `echo-raw` is
//! the same echo with the framing inside the guest.

use switchyard_sdk::managed::{self, Connection, Message};
use switchyard_sdk::{Outgoing, Plugin, Request};

/// The subprotocol this plugin names if the client offers it; clients offering none are
/// welcome too.
const PROTOCOLS: &[&str] = &["echo"];

struct Echo;

impl Plugin for Echo {
    fn handle(request: Request) -> Outgoing {
        managed::accept_with_protocols(&request, PROTOCOLS).into()
    }

    fn on_message(connection: Connection, message: Message) {
        // A client too slow to take its echoes is the host's to handle (its outbound buffer
        // policy); there is nothing better to do with the error here.
        let _ = connection.send(message);
    }
}

switchyard_sdk::export!(Echo);
