//! Example plugin: a key-value store spoken over a raw upgraded connection (`Upgrade: kv/1`).
//!
//! Each connection gets its own store. The protocol is line-based (`\n`, or `\r\n`):
//!
//! ```text
//! KV/1 READY                  sent on connect
//! SET <key> <value...>   ->   OK
//! GET <key>              ->   VALUE <value>  |  NIL
//! DEL <key>              ->   DELETED 1  |  DELETED 0
//! KEYS                   ->   KEYS <key> <key>...   (sorted)
//! QUIT                   ->   BYE, then the connection closes
//! ```
//!
//! Try it with `curl --http1.1 -N -H 'Connection: Upgrade' -H 'Upgrade: kv/1' ...` or any raw
//! TCP client that sends the upgrade request first. Build with
//! `cargo build --profile plugin --target wasm32-wasip2 -p kv`.
//!
//! Layout: this file answers the upgrade and moves bytes; `protocol` turns lines into replies;
//! `store` holds the bounded map.

mod protocol;
mod store;

use std::mem;

use protocol::Flow;
use store::Store;
use switchyard_sdk::{Outgoing, Plugin, Request, Response, Session, Upgrade};

/// The protocol token clients must offer in `Upgrade:`.
const PROTOCOL: &str = "kv/1";

/// The first line of every session.
const GREETING: &[u8] = b"KV/1 READY\n";

struct Kv;

impl Plugin for Kv {
    fn handle(request: Request) -> Outgoing {
        // Answer with the token as the client spelled it, since protocol names compare
        // case-insensitively but the host matches our answer against the offer.
        match request
            .header_tokens("upgrade")
            .find(|token| token.eq_ignore_ascii_case(PROTOCOL))
        {
            Some(offered) => Upgrade::to(offered).into(),
            None => Response::text(
                426,
                "this endpoint speaks kv/1: send `Connection: upgrade` and `Upgrade: kv/1`\n",
            )
            .header("upgrade", PROTOCOL)
            .into(),
        }
    }

    async fn upgrade(_request: Request, mut session: Session) {
        let mut store = Store::default();
        let mut input = Vec::new();
        let mut replies = GREETING.to_vec();
        loop {
            // Replies to everything that arrived together go out in one write.
            let flow = protocol::process(&mut store, &mut input, &mut replies);
            if session.write_all(mem::take(&mut replies)).await.is_err() || flow == Flow::Close {
                return;
            }
            if session.read(&mut input).await == 0 {
                return;
            }
        }
    }
}

switchyard_sdk::export!(Kv);
