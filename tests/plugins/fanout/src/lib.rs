//! Benchmark-only plugin: rooms on managed WebSockets, for the fan-out section of
//! `switchyard-bench`. A WebSocket to `/fanout/<room>` joins topic `<room>`; every message a
//! member sends is published to the room as it came (every member receives it, the sender
//! included, as in a chat room), and `POST /fanout/<room>` publishes its body as text.
//!
//! Unlike the `chat` example it announces no joins or leaves (filling a room of 10,000 would
//! otherwise deliver 50 million notices) and wraps nothing: the benchmark measures the host's
//! fan-out of exactly the bytes a native server sends.

use switchyard_sdk::managed::{self, Connection, Message};
use switchyard_sdk::{Outgoing, Plugin, Request, Response, topics};

/// The route this plugin serves under (its file name).
const ROUTE: &str = "/fanout/";

struct Fanout;

/// The room a path names: the one segment after the route.
fn room(path: &str) -> Option<&str> {
    let room = path.strip_prefix(ROUTE)?;
    (!room.is_empty() && !room.contains('/')).then_some(room)
}

impl Plugin for Fanout {
    fn handle(request: Request) -> Outgoing {
        let Some(room) = room(request.path()) else {
            return Response::text(404, "use /fanout/<room>\n").into();
        };
        if request.method() == "POST" {
            let Ok(text) = std::str::from_utf8(request.body()) else {
                return Response::text(400, "the body must be UTF-8 text\n").into();
            };
            return match topics::publish(room, text) {
                Ok(()) => Response::new(202).into(),
                Err(err) => Response::text(400, format!("cannot publish: {err}\n")).into(),
            };
        }
        // The room is kept in the attachment: the instance that answers a later message may be
        // a fresh one, after hibernation.
        managed::accept(&request)
            .map(|accept| accept.subscribe(room).attachment(room.as_bytes()))
            .into()
    }

    fn on_message(connection: Connection, message: Message) {
        let Ok(room) = connection.attachment() else {
            return;
        };
        let Ok(room) = String::from_utf8(room) else {
            return;
        };
        // A member that falls behind is the host's to handle (its outbound buffer policy).
        let _ = topics::publish(&room, message);
    }
}

switchyard_sdk::export!(Fanout);
