//! Example plugin: a WebSocket echo server that runs the framing itself, inside the guest, over
//! the raw upgrade (the `upgrade` export owns the connection's bytes). `echo` does the same with
//! the host running the framing; the tests and the benchmark compare the two paths.
//!
//! Text and binary messages come back as they were sent; pings and the close handshake are
//! answered by the SDK. Answers to messages that arrive together are sent together. Build with
//! `cargo build --profile plugin --target wasm32-wasip2 -p echo-raw`, then connect with any WebSocket
//! client, e.g. `websocat ws://127.0.0.1:8080/echo-raw`.

use switchyard_sdk::websocket::{self, WebSocket};
use switchyard_sdk::{Outgoing, Plugin, Request, Session};

/// The subprotocol this plugin names if the client offers it; clients offering none are
/// welcome too.
const PROTOCOLS: &[&str] = &["echo"];

struct Echo;

impl Plugin for Echo {
    fn handle(request: Request) -> Outgoing {
        websocket::accept_with_protocols(&request, PROTOCOLS).into()
    }

    async fn upgrade(_request: Request, session: Session) {
        let mut socket = WebSocket::new(session);
        // Ends when the close handshake completes, the client goes away, or it breaks the
        // protocol (the SDK has then told it why).
        while let Some(Ok(message)) = socket.recv().await {
            if (message.is_text() || message.is_binary()) && socket.feed(message).await.is_err() {
                break;
            }
        }
    }
}

switchyard_sdk::export!(Echo);
