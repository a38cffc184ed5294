//! The `chat` example's protocol as every chat test speaks it (the end-to-end suite, the
//! scale-out suite): its JSON events spelled exactly as the plugin documents them, the probes
//! tests post to learn when a member is subscribed, and reading the next event of a member.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use http_body_util::Full;
use hyper::Request;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::client::send;

/// How long a member waits for an event it expects before the test fails.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
/// What every probe's text starts with; members skip such messages from `server`.
pub const PROBE_PREFIX: &str = "probe ";

/// A JSON string as serde_json spells it: the tests compare the chat's hand-written JSON with
/// a real encoder's.
fn json(value: &str) -> String {
    serde_json::to_string(value).expect("a string encodes")
}

/// `{"type":"message",…}` exactly as the chat documents it.
pub fn message(room: &str, from: &str, text: &str) -> String {
    format!(
        r#"{{"type":"message","room":{},"from":{},"text":{}}}"#,
        json(room),
        json(from),
        json(text)
    )
}

/// `{"type":"join",…}` exactly as the chat documents it.
pub fn joined(room: &str, from: &str) -> String {
    format!(
        r#"{{"type":"join","room":{},"from":{}}}"#,
        json(room),
        json(from)
    )
}

/// `{"type":"leave",…}` exactly as the chat documents it.
pub fn left(room: &str, from: &str) -> String {
    format!(
        r#"{{"type":"leave","room":{},"from":{}}}"#,
        json(room),
        json(from)
    )
}

/// Whether `text` is a probe: a message from `server` whose text starts with [`PROBE_PREFIX`].
pub fn is_probe(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text).is_ok_and(|event| {
        event["from"] == "server"
            && event["text"]
                .as_str()
                .is_some_and(|text| text.starts_with(PROBE_PREFIX))
    })
}

/// `POST /chat/<room>` with `text` through `addr`, which must answer `202`.
pub async fn post_to_room(addr: SocketAddr, room: &str, text: &str) {
    let request = Request::post(format!("/chat/{room}"))
        .header("host", addr.to_string())
        .body(Full::new(Bytes::from(text.to_owned())))
        .expect("a valid request");
    let reply = send(addr, request).await;
    assert_eq!(
        reply.status,
        202,
        "POST to {room} via {addr}: {}",
        reply.text()
    );
}

/// The next text message on `frames` (a member's socket or its reading half), skipping probes,
/// pings and pongs; fails if none comes within [`EVENT_TIMEOUT`] or the connection ends.
pub async fn next_event<S>(frames: &mut S, name: &str) -> String
where
    S: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    loop {
        let frame = tokio::time::timeout(EVENT_TIMEOUT, frames.next())
            .await
            .unwrap_or_else(|_| panic!("{name} got no event within {EVENT_TIMEOUT:?}"));
        match frame {
            Some(Ok(Message::Text(text))) if is_probe(&text) => {}
            Some(Ok(Message::Text(text))) => return text.as_str().to_owned(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("{name} expected an event, got {other:?}"),
        }
    }
}
