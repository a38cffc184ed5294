//! Example plugin: chat rooms over managed WebSockets, with a page a browser can use.
//!
//! The host runs the WebSocket framing and the rooms (topics); this plugin only decides who may
//! join and what a message looks like. It keeps nothing in memory between events: who a
//! connection is and which room it is in live in the connection's *attachment*, which the host
//! keeps while the connection hibernates (its instance dropped) and hands to the next instance.
//!
//! # Protocol
//!
//! Served at `/chat` (the default route of `chat.wasm`; any one-segment route works the same):
//!
//! | request | answer |
//! |---|---|
//! | `GET /chat` | `200`, the chat page (`text/html`, self-contained) |
//! | `GET /chat/<room>?name=<name>` as a WebSocket handshake | `101`; the connection joins `<room>` |
//! | `POST /chat/<room>` with a text body | `202`; the body is sent to `<room>` from `server` |
//!
//! Members receive JSON text messages, spelled exactly so (keys in this order, no spaces):
//!
//! - `{"type":"message","room":"<room>","from":"<name>","text":"<text>"}`: every text message a
//!   member sends, to every member of the room, the sender included; `from` is `server` for a
//!   `POST`;
//! - `{"type":"join","room":"<room>","from":"<name>"}`: to the members already in the room when
//!   someone joins (not to the one who joins);
//! - `{"type":"leave","room":"<room>","from":"<name>"}`: to the remaining members when one goes.
//!
//! A member is in the room once its `on_open` has run, a moment after the `101`; what is
//! published in between does not reach it.
//!
//! Delivery is the host's topics': at most once, in the order messages were published. A member
//! too slow to take its messages is closed by the host with `1008` once its outbound buffer is
//! full (sidecar `max_outbound_bytes`), and the room is told it left.
//!
//! # Rules and refusals
//!
//! - Room: 1 to 32 characters of `A-Z a-z 0-9 _ -`.
//! - Name: the query's first `name` parameter, percent-decoded as a form encodes it (`%XX` of
//!   UTF-8, `+` for a space): 1 to 32 characters, no control characters, not only spaces, and not
//!   `server` (in any case), which is reserved for messages posted over HTTP.
//! - A bad room or name: `400` with a text body saying which rule was broken, before any upgrade.
//! - `GET /chat/<room>?name=<name>` that does not ask for a WebSocket: `426`; a malformed
//!   handshake: `400` (`426` for a missing or wrong version).
//! - A `POST` body over 4,096 bytes: `413`; one that is not UTF-8: `400`.
//! - Another method: `405` with `allow`; a deeper path: `404`.
//! - On the WebSocket: a binary message closes the connection with `1003` ("chat takes text
//!   messages only"); a text message over 4,096 bytes with `1009` ("a message is at most 4096
//!   bytes"). `1011` means the plugin could not go on with the connection (the room could not
//!   be joined).
//!
//! Build with `cargo build --profile plugin --target wasm32-wasip2 -p chat` and open
//! `http://127.0.0.1:8080/chat` in two browser tabs.
//!
//! Layout: this file answers requests and events; `input` reads paths and names, `said` the
//! rules for messages, `member` the attachment, `event` the JSON; the page is `page.html`.

mod event;
mod input;
mod member;
mod said;

use event::Event;
use input::{InputError, SERVER_NAME, Target};
use member::Member;
use switchyard_sdk::managed::{self, Connection, Error, Message};
use switchyard_sdk::{Outgoing, Plugin, Request, Response, topics};

/// The chat page: plain HTML, CSS and JavaScript in one file, nothing loaded from elsewhere.
const PAGE: &str = include_str!("page.html");

/// The page may run its own inline script and style and talk back to this host, nothing else.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
    style-src 'unsafe-inline'; connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'";

struct Chat;

impl Plugin for Chat {
    fn handle(request: Request) -> Outgoing {
        match (input::target(request.path()), request.method()) {
            (Target::Page, "GET") => page(),
            (Target::Page, _) => not_allowed("GET"),
            (Target::Room(room), "GET") => return join(room, &request),
            (Target::Room(room), "POST") => post(room, &request),
            (Target::Room(_), _) => not_allowed("GET, POST"),
            (Target::Unknown, _) => Response::text(
                404,
                "not found: the chat page is /chat, rooms are /chat/<room>\n",
            ),
        }
        .into()
    }

    fn on_open(connection: Connection) {
        let Some(member) = member(connection) else {
            return;
        };
        // Tell those already in the room, and only then join it: the newcomer does not hear of
        // its own arrival.
        publish(
            &member.room,
            Event::Join {
                room: &member.room,
                from: &member.name,
            },
        );
        if let Err(error) = connection.subscribe(&member.room) {
            eprintln!(
                "chat: {} could not join room {}: {error}",
                member.name, member.room
            );
            let _ = connection.close(said::CLOSE_INTERNAL, "could not join the room");
        }
    }

    fn on_message(connection: Connection, message: Message) {
        let text = match said::from_member(&message) {
            Ok(text) => text,
            Err(refusal) => {
                // Closing fails only if the connection is already gone.
                let _ = connection.close(refusal.code, refusal.reason);
                return;
            }
        };
        let Some(member) = member(connection) else {
            return;
        };
        publish(
            &member.room,
            Event::Message {
                room: &member.room,
                from: &member.name,
                text,
            },
        );
    }

    fn on_close(connection: Connection, _code: u16, _reason: String) {
        // The host has already taken the connection out of the room; the attachment still says
        // which room and who.
        let member = match connection.attachment() {
            Ok(bytes) => Member::from_attachment(&bytes),
            Err(error) => {
                eprintln!(
                    "chat: cannot tell the room who left: connection {}'s attachment: {error}",
                    connection.id()
                );
                None
            }
        };
        if let Some(member) = member {
            publish(
                &member.room,
                Event::Leave {
                    room: &member.room,
                    from: &member.name,
                },
            );
        }
    }
}

switchyard_sdk::export!(Chat);

/// `GET /chat`: the page.
fn page() -> Response {
    Response::new(200)
        .header("content-type", "text/html; charset=utf-8")
        .header("content-security-policy", PAGE_POLICY)
        .header("x-content-type-options", "nosniff")
        .body(PAGE)
}

/// `GET /chat/<room>?name=<name>`: checks the room and name, then accepts the WebSocket with the
/// member in its attachment. It joins the room in `on_open`.
fn join(room: &str, request: &Request) -> Outgoing {
    let member = match input::room(room).and_then(|room| Ok((room, input::name(request.query())?)))
    {
        Ok((room, name)) => Member {
            room: room.to_owned(),
            name,
        },
        Err(error) => return bad_input(error).into(),
    };
    let asks_for_websocket = request
        .header_tokens("upgrade")
        .any(|token| token.eq_ignore_ascii_case("websocket"));
    if !asks_for_websocket {
        return Response::text(
            426,
            "this address is a chat room for WebSocket clients; open /chat in a browser\n",
        )
        .header("upgrade", "websocket")
        .into();
    }
    managed::accept(request)
        .map(|accept| accept.attachment(member.to_attachment()))
        .into()
}

/// `POST /chat/<room>`: the body goes to the room from `server`.
fn post(room: &str, request: &Request) -> Response {
    let room = match input::room(room) {
        Ok(room) => room,
        Err(error) => return bad_input(error),
    };
    let text = match said::from_post(request.body()) {
        Ok(text) => text,
        Err((status, why)) => return Response::text(status, why),
    };
    let event = Event::Message {
        room,
        from: SERVER_NAME,
        text,
    };
    match topics::publish(room, event.to_json()) {
        Ok(()) => Response::text(202, format!("sent to room {room}\n")),
        Err(Error::TooLarge) => Response::text(413, "the message is longer than the host allows\n"),
        Err(error) => {
            eprintln!("chat: publishing to room {room} failed: {error}");
            Response::text(500, format!("could not send to room {room}: {error}\n"))
        }
    }
}

/// The connection's member, from its attachment. `None` when the connection is gone, or when its
/// attachment is not one this version wrote (then the connection is closed: without a name and
/// room the plugin cannot serve it).
fn member(connection: Connection) -> Option<Member> {
    match connection.attachment() {
        Ok(bytes) => {
            let member = Member::from_attachment(&bytes);
            if member.is_none() {
                eprintln!(
                    "chat: connection {} has an unknown attachment",
                    connection.id()
                );
                let _ = connection.close(said::CLOSE_INTERNAL, "unknown connection state");
            }
            member
        }
        // Closed meanwhile: nothing left to do for it.
        Err(Error::UnknownConnection) => None,
        Err(error) => {
            eprintln!(
                "chat: reading connection {}'s attachment failed: {error}",
                connection.id()
            );
            None
        }
    }
}

/// Sends `event` to everyone in `room`. The host refuses only a topic or message it cannot take,
/// which the checks on rooms and texts rule out; if it happens all the same it is logged.
fn publish(room: &str, event: Event<'_>) {
    if let Err(error) = topics::publish(room, event.to_json()) {
        eprintln!("chat: publishing to room {room} failed: {error}");
    }
}

/// A `400` saying which rule the room or name broke.
fn bad_input(error: InputError) -> Response {
    Response::text(400, format!("{error}\n"))
}

/// A `405` naming the methods `allow`ed.
fn not_allowed(allow: &str) -> Response {
    Response::text(405, format!("method not allowed here; use {allow}\n")).header("allow", allow)
}
