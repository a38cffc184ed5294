//! Test-only plugin: a managed WebSocket whose text messages are commands, so the end-to-end
//! tests can drive every host function for connections and topics from a client.
//!
//! Opening (`GET /managed?...`, a WebSocket handshake), with query options: `topic=<t>` (join
//! before the first event, repeatable), `attach=<text>` (first attachment), `attach-bytes=<n>`,
//! `header=<name>` (add that response field), `raw-upgrade=1` (answer with a raw upgrade
//! instead, which a plugin without the `raw-upgrade` export may not). Subprotocols `v1` and `v2`
//! are chosen if offered. `on-open` sends `open:<id>`. Commands, one per text message (binary
//! messages are echoed):
//!
//! | command | does | answers |
//! |---|---|---|
//! | `echo:<text>` | | `<text>` |
//! | `id?` / `version?` / `count?` | | `id:<id>` / `version:<VERSION>` / `count:<n>`, messages this instance has seen |
//! | `attach:<text>`, `attach-bytes:<n>` | replaces the attachment | `attached` or `error:<e>` |
//! | `attachment?` | | `attachment:<text>` |
//! | `sub:<t>`, `unsub:<t>` | joins, leaves topic `<t>` | `subscribed:<t>`, `unsubscribed:<t>` or `error:<e>` |
//! | `pub:<t>:<text>` | publishes `<text>` to `<t>` | nothing, or `error:<e>` |
//! | `pubmany:<t>:<n>:<bytes>` | publishes `<i>:` and `bytes` × `x` for i in 0..n | `published:<n>` |
//! | `send-to:<id>:<text>` | sends `<text>` to connection `<id>` | `sent` or `error:<e>` |
//! | `flood:<n>:<bytes>` | sends `n` binary messages of `bytes` bytes to itself | `flood:<queued>:<refused>` |
//! | `close:<code>:<reason>` | closes the connection | `error:<e>` if refused |
//! | `trap` / `loop` | panics / loops forever | |
//!
//! `on-close` publishes `closed:<id>:<code>:<reason>:<attachment>:<what send answered>` to the
//! topic `closed`.
//! `POST /<route>/publish/<t>` publishes its body as text (`202`); `POST /<route>/send/<id>`
//! sends it to that connection (`202`); a refusal is `409` with `error:<e>`.

use std::sync::atomic::{AtomicU64, Ordering};

use switchyard_sdk::managed::{self, Connection, Error, Message};
use switchyard_sdk::{Outgoing, Plugin, Request, Response, topics};

/// What `version?` answers; a test tells versions apart by installing another plugin under
/// this one's name.
const VERSION: &str = "managed-1";

/// Messages this instance has handled: it starts again at zero on a fresh instance, so a test
/// can see hibernation.
static SEEN: AtomicU64 = AtomicU64::new(0);

struct Managed;

impl Plugin for Managed {
    fn handle(request: Request) -> Outgoing {
        let path = request.path().to_owned();
        if request.method() == "POST" {
            return post(&path, request.body()).into();
        }
        // A raw upgrade, which this plugin (of the `plugin` world) cannot run: the host refuses.
        if query(&request).any(|(key, _)| key == "raw-upgrade") {
            return switchyard_sdk::websocket::accept(&request).into();
        }
        let mut accept = match managed::accept_with_protocols(&request, &["v1", "v2"]) {
            Ok(accept) => accept,
            Err(refusal) => return refusal.into(),
        };
        for (key, value) in query(&request) {
            accept = match key {
                "topic" => accept.subscribe(value),
                "attach" => accept.attachment(value.as_bytes()),
                "attach-bytes" => accept.attachment(vec![b'x'; value.parse().unwrap_or(0)]),
                "header" => accept.header(value, "x"),
                _ => accept,
            };
        }
        accept.into()
    }

    fn on_open(connection: Connection) {
        let _ = connection.send(format!("open:{}", connection.id()));
    }

    fn on_message(connection: Connection, message: Message) {
        SEEN.fetch_add(1, Ordering::Relaxed);
        let text = match message {
            Message::Text(text) => text,
            binary @ Message::Binary(_) => {
                let _ = connection.send(binary);
                return;
            }
        };
        if let Some(reply) = command(connection, &text) {
            let _ = connection.send(reply);
        }
    }

    fn on_close(connection: Connection, code: u16, reason: String) {
        // The attachment is still readable here (to say who left); sending is not.
        let attachment = connection.attachment().unwrap_or_default();
        let sent = connection
            .send("too late")
            .err()
            .map(error)
            .unwrap_or_default();
        let _ = topics::publish(
            "closed",
            format!(
                "closed:{}:{code}:{reason}:{}:{sent}",
                connection.id(),
                String::from_utf8_lossy(&attachment)
            ),
        );
    }
}

/// Runs one command; what to answer, if anything.
fn command(connection: Connection, text: &str) -> Option<String> {
    let (name, rest) = text.split_once(':').unwrap_or((text, ""));
    let answer = match name {
        "echo" => Ok(rest.to_owned()),
        "id?" => Ok(format!("id:{}", connection.id())),
        "version?" => Ok(format!("version:{VERSION}")),
        "count?" => Ok(format!("count:{}", SEEN.load(Ordering::Relaxed))),
        "attach" => connection
            .set_attachment(rest.as_bytes())
            .map(|()| "attached".to_owned()),
        "attach-bytes" => connection
            .set_attachment(&vec![b'x'; rest.parse().unwrap_or(0)])
            .map(|()| "attached".to_owned()),
        "attachment?" => connection
            .attachment()
            .map(|bytes| format!("attachment:{}", String::from_utf8_lossy(&bytes))),
        "sub" => connection
            .subscribe(rest)
            .map(|()| format!("subscribed:{rest}")),
        "unsub" => connection
            .unsubscribe(rest)
            .map(|()| format!("unsubscribed:{rest}")),
        "pub" => {
            let (topic, message) = rest.split_once(':').unwrap_or((rest, ""));
            return topics::publish(topic, message).err().map(error);
        }
        "pubmany" => {
            let mut parts = rest.splitn(3, ':');
            let topic = parts.next().unwrap_or("");
            let count: u64 = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
            let pad = "x".repeat(parts.next().and_then(|n| n.parse().ok()).unwrap_or(0));
            for i in 0..count {
                if let Err(err) = topics::publish(topic, format!("{i}:{pad}")) {
                    return Some(error(err));
                }
            }
            Ok(format!("published:{count}"))
        }
        "send-to" => {
            let (id, message) = rest.split_once(':').unwrap_or((rest, ""));
            let target = Connection::from_id(id.parse().unwrap_or(u64::MAX));
            target.send(message).map(|()| "sent".to_owned())
        }
        "flood" => Ok(flood(connection, rest)),
        "close" => {
            let (code, reason) = rest.split_once(':').unwrap_or((rest, ""));
            return connection
                .close(code.parse().unwrap_or(0), reason)
                .err()
                .map(error);
        }
        "trap" => panic!("trap requested by the test"),
        "loop" => loop {
            std::hint::spin_loop();
        },
        _ => Ok(format!("unknown command {name:?}")),
    };
    Some(answer.unwrap_or_else(error))
}

/// Sends `n` binary messages of `bytes` bytes each; says how many were queued and refused.
fn flood(connection: Connection, args: &str) -> String {
    let (count, size) = args.split_once(':').unwrap_or((args, "0"));
    let count: u64 = count.parse().unwrap_or(0);
    let payload = vec![0u8; size.parse().unwrap_or(0)];
    let (mut queued, mut refused) = (0u64, 0u64);
    for _ in 0..count {
        match connection.send(payload.clone()) {
            Ok(()) => queued += 1,
            Err(_) => refused += 1,
        }
    }
    format!("flood:{queued}:{refused}")
}

/// `POST /<route>/publish/<topic>` and `POST /<route>/send/<id>`, with the body as text.
fn post(path: &str, body: &[u8]) -> Response {
    let text = String::from_utf8_lossy(body).into_owned();
    let mut segments = path.trim_start_matches('/').splitn(3, '/').skip(1);
    let done = match (segments.next(), segments.next()) {
        (Some("publish"), Some(topic)) => topics::publish(topic, text),
        (Some("send"), Some(id)) => Connection::from_id(id.parse().unwrap_or(u64::MAX)).send(text),
        _ => return Response::text(404, "no such action\n"),
    };
    match done {
        Ok(()) => Response::text(202, "done\n"),
        Err(err) => Response::text(409, format!("{}\n", error(err))),
    }
}

/// `error:<name>`, with the WIT's name of the error.
fn error(error: Error) -> String {
    let name = match error {
        Error::UnknownConnection => "unknown-connection",
        Error::TooLarge => "too-large",
        Error::Backpressure => "backpressure",
        Error::InvalidTopic => "invalid-topic",
        Error::TooManyTopics => "too-many-topics",
        Error::InvalidCloseCode => "invalid-close-code",
    };
    format!("error:{name}")
}

/// The `key=value` pairs of the query (no percent-decoding: tests send plain values).
fn query(request: &Request) -> impl Iterator<Item = (&str, &str)> {
    request
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
}

switchyard_sdk::export!(Managed);
