//! The `chat` example end to end, against the Rust `chat` and the Python `chat-py` alike (each
//! test runs once per [`Chat`]): tokio-tungstenite members against the real host, checking the
//! protocol the plugin documents (the exact JSON of each event, statuses, close codes) and what
//! the host's managed WebSockets promise it (fan-out, hibernation with the attachment kept, a
//! slow member cut off without hurting the others, a thousand members, hot reload).
//!
//! A member is in a room only once its `on_open` has subscribed it, which happens after the
//! client has seen the `101`. [`join`] therefore waits until the new member has received a
//! message posted to the room after it connected (a *probe*); members skip probes when they
//! read events, so each test sees only the events it caused.

use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt as _, Stream, StreamExt as _, stream};
use http_body_util::Full;
use hyper::Request;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, client_async, connect_async};

use switchyard_host::{Limits, PluginLimits};
use switchyard_tests::chat::{
    self, EVENT_TIMEOUT, PROBE_PREFIX, is_probe, joined, left, message, next_event,
};
use switchyard_tests::client::{Reply, get, send};
use switchyard_tests::probe::raise_open_file_limit;
use switchyard_tests::{TestHost, bounded};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Which chat a test runs against: the suite is one, and both must pass it. The Python chat is
/// installed as `chat.wasm`, so it serves the same route and logs under the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chat {
    /// `plugins/chat`.
    Rust,
    /// `plugins/chat-py`.
    Python,
}

impl Chat {
    /// The entry for [`TestHost::start`]'s plugin list.
    fn plugin(self) -> &'static str {
        match self {
            Self::Rust => "chat",
            Self::Python => "chat-py as chat",
        }
    }

    /// The echo in the same language, the "new version" of the reload test.
    fn echo(self) -> &'static str {
        match self {
            Self::Rust => "echo",
            Self::Python => "echo-py",
        }
    }
}

/// Runs test `$name(chat: Chat)` as two tests, `$name::rust` and `$name::python`; the latter
/// skips loudly when the Python plugins were not built (see `switchyard_tests::python`).
macro_rules! both_chats {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn rust() {
                super::$name(super::Chat::Rust).await;
            }

            #[tokio::test]
            async fn python() {
                if switchyard_tests::python::python_plugins_ready(concat!(
                    module_path!(),
                    "::python"
                )) {
                    super::$name(super::Chat::Python).await;
                }
            }
        }
    };
}

/// How long [`join`] waits for one probe before posting the next.
const PROBE_WAIT: Duration = Duration::from_millis(300);
/// Probes [`join`] posts at most before it gives up.
const PROBE_ROUNDS: usize = 30;
/// The chat's longest message (its documented limit).
const MAX_TEXT_BYTES: usize = 4096;
/// How long a reload or hibernation may take to show before the test fails. Generous: this
/// checks behaviour, not speed.
const SETTLE_WITHIN: Duration = Duration::from_secs(10);
/// The handshake fields of a valid WebSocket request, for requests sent with the HTTP client
/// (which, unlike tungstenite's, shows the body of a refusal).
const HANDSHAKE: [(&str, &str); 4] = [
    ("connection", "upgrade"),
    ("upgrade", "websocket"),
    ("sec-websocket-version", "13"),
    ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
];

/// The query value for `name`, percent-encoded as a browser's `encodeURIComponent` would.
fn encode(name: &str) -> String {
    name.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(byte).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// `/chat/<room>?name=<name>`.
fn room_path(room: &str, name: &str) -> String {
    format!("/chat/{room}?name={}", encode(name))
}

/// Opens a WebSocket to `room` as `name`; fails unless the host answers `101`.
async fn connect(host: &TestHost, room: &str, name: &str) -> Socket {
    let (socket, response) = connect_async(host.ws_url(&room_path(room, name)))
        .await
        .unwrap_or_else(|error| panic!("{name} could not connect to {room}: {error}"));
    assert_eq!(response.status(), 101);
    socket
}

/// [`connect`] with a receive buffer of 4 KiB, so that the host's outbound buffer for this
/// member fills soon once it stops reading.
async fn connect_slow(host: &TestHost, room: &str, name: &str) -> Socket {
    let tcp = TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(4096).unwrap();
    let tcp = tcp.connect(host.addr).await.unwrap();
    let url = host.ws_url(&room_path(room, name));
    let (socket, _) = client_async(url, MaybeTlsStream::Plain(tcp))
        .await
        .unwrap_or_else(|error| panic!("{name} could not connect to {room}: {error}"));
    socket
}

/// `POST <path>` with `body`.
async fn post(host: &TestHost, path: &str, body: impl Into<Bytes>) -> Reply {
    let request = Request::post(path)
        .header("host", host.addr.to_string())
        .body(Full::new(body.into()))
        .expect("a valid request");
    send(host.addr, request).await
}

/// Posts `text` to `room` from `server`, which must answer `202`.
async fn post_to_room(host: &TestHost, room: &str, text: &str) {
    chat::post_to_room(host.addr, room, text).await;
}

/// A connected chat member.
struct Member {
    name: String,
    room: String,
    socket: Socket,
}

/// Connects `name` to `room` and returns once the member is subscribed to the room: it has
/// received a probe posted after it connected.
async fn join(host: &TestHost, room: &str, name: &str) -> Member {
    let socket = connect(host, room, name).await;
    subscribed(host, room, name, socket).await
}

/// Returns `socket`, just connected to `room` as `name`, once it has received a probe.
async fn subscribed(host: &TestHost, room: &str, name: &str, mut socket: Socket) -> Member {
    for round in 0..PROBE_ROUNDS {
        let probe = format!("{PROBE_PREFIX}{name} {round}");
        post_to_room(host, room, &probe).await;
        let expected = message(room, "server", &probe);
        let deadline = tokio::time::Instant::now() + PROBE_WAIT;
        while let Ok(frame) = tokio::time::timeout_at(deadline, socket.next()).await {
            match frame {
                Some(Ok(Message::Text(text))) if text.as_str() == expected => {
                    return Member {
                        name: name.to_owned(),
                        room: room.to_owned(),
                        socket,
                    };
                }
                Some(Ok(Message::Text(text))) => {
                    assert!(is_probe(&text), "{name} got {text} before it was in {room}")
                }
                Some(Ok(_)) => {}
                other => panic!("{name}'s connection ended while joining {room}: {other:?}"),
            }
        }
    }
    panic!("{name} was not subscribed to {room} after {PROBE_ROUNDS} probes");
}

/// Proves nothing else has reached `members` (all in one room): posts a marker to the room and
/// checks that it is each one's next event. A member's messages are written in the order they
/// were queued, so anything queued before the marker would come first.
async fn expect_nothing_more(host: &TestHost, members: &mut [&mut Member]) {
    let Some(room) = members.first().map(|member| member.room.clone()) else {
        return;
    };
    let marker = format!("nothing else in {room}");
    post_to_room(host, &room, &marker).await;
    for member in members {
        assert_eq!(
            member.room, room,
            "expect_nothing_more takes members of one room"
        );
        member.expect(&message(&room, "server", &marker)).await;
    }
}

impl Member {
    /// Sends a text message.
    async fn say(&mut self, text: &str) {
        self.socket
            .send(Message::text(text))
            .await
            .unwrap_or_else(|error| panic!("{} could not send: {error}", self.name));
    }

    /// The next event's JSON text, skipping probes, pings and pongs.
    async fn next_event(&mut self) -> String {
        next_event(&mut self.socket, &self.name).await
    }

    /// Fails unless the next event is `expected`.
    async fn expect(&mut self, expected: &str) {
        let got = self.next_event().await;
        assert_eq!(got, expected, "what {} received", self.name);
    }

    /// Proves nothing else has reached this member: see [`expect_nothing_more`].
    async fn expect_nothing_more(&mut self, host: &TestHost) {
        expect_nothing_more(host, &mut [self]).await;
    }

    /// Waits for the close frame the host sends and returns its code and reason; the client
    /// answers it, and then the connection ends.
    async fn expect_close(&mut self) -> (CloseCode, String) {
        loop {
            let frame = tokio::time::timeout(EVENT_TIMEOUT, self.socket.next())
                .await
                .unwrap_or_else(|_| {
                    panic!("{} was not closed within {EVENT_TIMEOUT:?}", self.name)
                });
            match frame {
                Some(Ok(Message::Close(Some(close)))) => {
                    return (close.code, close.reason.as_str().to_owned());
                }
                Some(Ok(Message::Text(text))) if is_probe(&text) => {}
                other => panic!("{} expected a close frame, got {other:?}", self.name),
            }
        }
    }
}

/// Everyone in a room gets every message, the sender included; joins are told to those already
/// there and not to the newcomer; another room hears nothing of it.
async fn members_of_a_room_get_every_message_and_other_rooms_nothing(chat: Chat) {
    bounded(async {
        let host = TestHost::start(&[chat.plugin()]).await;
        let mut ada = join(&host, "lobby", "ada").await;
        let mut bob = join(&host, "lobby", "bob").await;
        ada.expect(&joined("lobby", "bob")).await;
        let mut cy = join(&host, "kitchen", "cy").await;

        ada.say("hello, lobby").await;
        for member in [&mut ada, &mut bob] {
            member
                .expect(&message("lobby", "ada", "hello, lobby"))
                .await;
        }
        // Text that would break hand-written JSON arrives intact.
        let tricky = "quote \" backslash \\ newline \n tab \t nul \u{0} — 你好 🚂 </script>";
        bob.say(tricky).await;
        for member in [&mut ada, &mut bob] {
            let event = member.next_event().await;
            assert_eq!(event, message("lobby", "bob", tricky));
            let parsed: serde_json::Value = serde_json::from_str(&event).unwrap();
            assert_eq!(parsed["text"], tricky);
        }
        // The newcomer never heard of its own join, and the kitchen heard nothing.
        expect_nothing_more(&host, &mut [&mut ada, &mut bob]).await;
        cy.expect_nothing_more(&host).await;
    })
    .await;
}

/// `POST /chat/<room>` answers `202` and reaches the room's members as a message from `server`.
async fn a_post_reaches_the_room_from_server(chat: Chat) {
    bounded(async {
        let host = TestHost::start(&[chat.plugin()]).await;
        let mut ada = join(&host, "ops", "ada").await;
        let mut bob = join(&host, "ops", "bob").await;
        ada.expect(&joined("ops", "bob")).await;
        let mut cy = join(&host, "dev", "cy").await;

        let reply = post(&host, "/chat/ops", "deploy at 5 — «ok»").await;
        assert_eq!(reply.status, 202, "{}", reply.text());
        for member in [&mut ada, &mut bob] {
            member
                .expect(&message("ops", "server", "deploy at 5 — «ok»"))
                .await;
        }
        cy.expect_nothing_more(&host).await;
    })
    .await;
}

/// Those who stay hear that a member left, whether it closed properly or just went away.
async fn leaving_is_told_to_the_rest(chat: Chat) {
    bounded(async {
        let host = TestHost::start(&[chat.plugin()]).await;
        let mut ada = join(&host, "lobby", "ada").await;
        let mut bob = join(&host, "lobby", "bob").await;
        ada.expect(&joined("lobby", "bob")).await;
        let mut cy = join(&host, "lobby", "cy").await;
        for member in [&mut ada, &mut bob] {
            member.expect(&joined("lobby", "cy")).await;
        }

        bob.socket.close(None).await.unwrap();
        for member in [&mut ada, &mut cy] {
            member.expect(&left("lobby", "bob")).await;
        }
        // No close frame at all: the TCP connection just ends.
        drop(cy);
        ada.expect(&left("lobby", "cy")).await;
        ada.expect_nothing_more(&host).await;
    })
    .await;
}

/// Bad rooms and names are refused with `400` and a body saying why, before any upgrade; the
/// other refusals are as documented.
async fn bad_input_is_refused_with_the_documented_statuses(chat: Chat) {
    bounded(async {
        let host = TestHost::start(&[chat.plugin()]).await;
        let long_name = "n".repeat(33);
        let long_room = format!("/chat/{}?name=ada", "r".repeat(33));
        let refusals: [(&str, &str); 11] = [
            ("/chat/lobby", "?name="),
            ("/chat/lobby?name=", "?name="),
            ("/chat/lobby?name=+++", "only spaces"),
            (&format!("/chat/lobby?name={long_name}"), "longer than 32"),
            ("/chat/lobby?name=a%0Ab", "control characters"),
            ("/chat/lobby?name=%ZZ", "percent-encoded"),
            ("/chat/lobby?name=%FF", "percent-encoded"),
            ("/chat/lobby?name=server", "reserved"),
            ("/chat/lobby?name=Server", "reserved"),
            ("/chat/a%20b?name=ada", "A-Z"),
            (&long_room, "A-Z"),
        ];
        for (path, why) in refusals {
            let reply = get(host.addr, path, &HANDSHAKE).await;
            assert_eq!(reply.status, 400, "{path}: {}", reply.text());
            assert!(reply.text().contains(why), "{path}: {}", reply.text());
        }
        // A WebSocket client sees the refusal as a failed handshake.
        match connect_async(host.ws_url("/chat/lobby?name=server")).await {
            Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 400),
            other => panic!("expected a refused handshake, got {other:?}"),
        }
        // The longest name and room are fine; so is any UTF-8.
        let longest = format!("/chat/{}?name={}", "r".repeat(32), encode(&"é".repeat(32)));
        connect_async(host.ws_url(&longest)).await.unwrap();

        // Without a handshake the room's address is a WebSocket endpoint.
        assert_eq!(
            get(host.addr, "/chat/lobby?name=ada", &[]).await.status,
            426
        );
        assert_eq!(get(host.addr, "/chat/a/b", &[]).await.status, 404);
        let put = Request::put("/chat/lobby")
            .header("host", host.addr.to_string())
            .body(Full::default())
            .unwrap();
        let reply = send(host.addr, put).await;
        assert_eq!(reply.status, 405);
        assert_eq!(reply.headers["allow"], "GET, POST");

        // Posts: bounded, UTF-8, to a valid room.
        let longest = "x".repeat(MAX_TEXT_BYTES);
        assert_eq!(post(&host, "/chat/lobby", longest).await.status, 202);
        let over = "x".repeat(MAX_TEXT_BYTES + 1);
        assert_eq!(post(&host, "/chat/lobby", over).await.status, 413);
        let reply = post(&host, "/chat/lobby", &b"\xff\xfe"[..]).await;
        assert_eq!(reply.status, 400);
        assert!(reply.text().contains("UTF-8"), "{}", reply.text());
        assert_eq!(post(&host, "/chat/no.dots", "hi").await.status, 400);
        assert_eq!(post(&host, "/chat", "hi").await.status, 405);
    })
    .await;
}

/// `GET /chat` is one self-contained page with the elements the browser test drives.
async fn the_page_is_served_whole(chat: Chat) {
    bounded(async {
        let host = TestHost::start(&[chat.plugin()]).await;
        let reply = get(host.addr, "/chat", &[]).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.headers["content-type"], "text/html; charset=utf-8");
        let page = reply.text();
        for id in [
            "id=\"name\"",
            "id=\"room\"",
            "id=\"join\"",
            "id=\"messages\"",
            "id=\"text\"",
            "id=\"send\"",
            "id=\"status\"",
        ] {
            assert!(page.contains(id), "the page has no {id}");
        }
        for external in ["src=", "href=", "@import", "url("] {
            assert!(
                !page.contains(external),
                "the page loads something: {external}"
            );
        }
        assert_eq!(get(host.addr, "/chat/", &[]).await.status, 200);
    })
    .await;
}

/// A binary message closes the connection with 1003, a text over 4,096 bytes with 1009, each
/// with a reason; the longest allowed text goes through.
async fn binary_and_oversized_messages_close_with_the_documented_codes(chat: Chat) {
    bounded(async {
        let host = TestHost::start(&[chat.plugin()]).await;
        let mut ada = join(&host, "lobby", "ada").await;
        let longest = "é".repeat(MAX_TEXT_BYTES / 2);
        ada.say(&longest).await;
        ada.expect(&message("lobby", "ada", &longest)).await;

        ada.socket
            .send(Message::binary(vec![1u8, 2, 3]))
            .await
            .unwrap();
        let (code, reason) = ada.expect_close().await;
        assert_eq!(code, CloseCode::Unsupported);
        assert!(reason.contains("text"), "{reason}");

        let mut bob = join(&host, "lobby", "bob").await;
        bob.say(&format!("{longest}!")).await;
        let (code, reason) = bob.expect_close().await;
        assert_eq!(code, CloseCode::Size);
        assert!(reason.contains("4096"), "{reason}");
    })
    .await;
}

/// The sidecar that makes chat connections hibernate after `ms` without events.
fn hibernating_after(ms: u64) -> String {
    format!("[limits]\nhibernate_after_ms = {ms}\n")
}

/// The log lines the host writes when a chat connection hibernates.
fn hibernations(host: &TestHost) -> usize {
    host.log_lines()
        .iter()
        .filter(|line| line.contains("plugin=chat") && line.contains("hibernat"))
        .count()
}

/// Waits until the host has logged `count` hibernations of chat connections and no managed
/// WebSocket is awake.
async fn wait_for_hibernations(host: &TestHost, count: usize) {
    let deadline = tokio::time::Instant::now() + SETTLE_WITHIN;
    while hibernations(host) < count || host.stats().awake_websockets() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} hibernations logged and {} connections awake after {SETTLE_WITHIN:?}",
            hibernations(host),
            host.stats().awake_websockets(),
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A hibernated member's next message runs on a fresh instance, which finds the name and room
/// in the attachment.
async fn the_name_survives_hibernation(chat: Chat) {
    bounded(async {
        let sidecar = hibernating_after(200);
        let host = TestHost::start_configured(&[chat.plugin()], &[("chat", &sidecar)], None).await;
        let mut ada = join(&host, "lobby", "ada").await;
        let mut bob = join(&host, "lobby", "bob").await;
        ada.expect(&joined("lobby", "bob")).await;

        wait_for_hibernations(&host, 2).await;
        ada.say("after a nap").await;
        for member in [&mut ada, &mut bob] {
            member.expect(&message("lobby", "ada", "after a nap")).await;
        }
        let ada_connection = connection_of(&host, "ada").await;
        host.wait_for_log(
            &[&ada_connection, "on-message: woke from hibernation"],
            SETTLE_WITHIN,
        )
        .await;
    })
    .await;
}

/// A hibernated member that goes is still announced by name: `on_close` runs on a fresh
/// instance, which reads the attachment.
async fn a_hibernated_member_leaves_with_its_name(chat: Chat) {
    bounded(async {
        let sidecar = hibernating_after(200);
        let host = TestHost::start_configured(&[chat.plugin()], &[("chat", &sidecar)], None).await;
        let mut ada = join(&host, "lobby", "ada").await;
        let mut bob = join(&host, "lobby", "bob").await;
        ada.expect(&joined("lobby", "bob")).await;

        wait_for_hibernations(&host, 2).await;
        bob.socket.close(None).await.unwrap();
        ada.expect(&left("lobby", "bob")).await;
        let bob_connection = connection_of(&host, "bob").await;
        host.wait_for_log(
            &[&bob_connection, "on-close: woke from hibernation"],
            SETTLE_WITHIN,
        )
        .await;
    })
    .await;
}

/// The span field that names member `name`'s connection in the host's log.
async fn connection_of(host: &TestHost, name: &str) -> String {
    host.websocket_connection(&format!("?name={name}"), 0).await
}

/// The `n`th message of the slow-member test: about 2 KiB, numbered.
fn numbered(n: usize) -> String {
    format!("{n:06} {}", "x".repeat(2000))
}

/// Reads a fast member's events until `last`, checking that the publisher's numbered messages
/// arrive complete and in order. Publishes how many have arrived on `count`, and on `slow_left`
/// whether the member named `slow` has been reported gone.
async fn read_in_order<S>(
    mut frames: S,
    name: String,
    room: String,
    publisher: &'static str,
    count: watch::Sender<usize>,
    slow_left: watch::Sender<bool>,
) where
    S: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    let last = message(&room, publisher, "last");
    let gone = left(&room, "slow");
    let mut received = 0usize;
    loop {
        let event = next_event(&mut frames, &name).await;
        if event == last {
            return;
        }
        if event == gone {
            slow_left.send_replace(true);
            continue;
        }
        let expected = message(&room, publisher, &numbered(received));
        assert_eq!(event, expected, "{name} lost or reordered a message");
        received += 1;
        count.send_replace(received);
    }
}

/// Waits until `count` reaches `at_least`.
async fn wait_for_count(count: &mut watch::Receiver<usize>, at_least: usize, whose: &str) {
    let reached = tokio::time::timeout(EVENT_TIMEOUT, async {
        count.wait_for(|n| *n >= at_least).await.map(drop)
    })
    .await;
    match reached {
        Ok(Ok(_)) => {}
        Ok(Err(_)) => panic!("{whose}'s reader ended early"),
        Err(_) => panic!("{whose} had {} of {at_least} messages", *count.borrow()),
    }
}

/// A member that stops reading is cut off once its outbound buffer is full, the rest of the room
/// hears that it left, and the members that keep reading receive every message, in order.
async fn a_slow_member_is_cut_off_and_the_others_get_everything(chat: Chat) {
    bounded(async {
        /// Messages sent between checks; the fast members read them all before the next batch,
        /// so only the slow member falls behind.
        const BATCH: usize = 16;
        /// The most messages sent (~32 MB for the slow member): far more than its socket
        /// buffers and its outbound buffer hold.
        const MAX_MESSAGES: usize = 16_000;
        let sidecar = "[limits]\nmax_outbound_bytes = 65536\n";
        let host = TestHost::start_configured(&[chat.plugin()], &[("chat", sidecar)], None).await;

        let socket = connect_slow(&host, "lobby", "slow").await;
        let mut slow = subscribed(&host, "lobby", "slow", socket).await;
        let mut ada = join(&host, "lobby", "ada").await;
        let bob = join(&host, "lobby", "bob").await;
        ada.expect(&joined("lobby", "bob")).await;

        // Ada publishes; she and Bob read in tasks of their own.
        let (mut to_room, ada_frames) = ada.socket.split();
        let mut readers = Vec::new();
        let mut counts = Vec::new();
        let mut told_left = Vec::new();
        for (name, frames) in [("ada", ada_frames.boxed()), ("bob", bob.socket.boxed())] {
            let (count, count_rx) = watch::channel(0);
            let (left_tx, left_rx) = watch::channel(false);
            counts.push((name, count_rx));
            told_left.push((name, left_rx));
            let task = read_in_order(
                frames,
                name.to_owned(),
                "lobby".to_owned(),
                "ada",
                count,
                left_tx,
            );
            readers.push(tokio::spawn(task));
        }

        let slow_connection = connection_of(&host, "slow").await;
        let cut_off = |host: &TestHost| {
            host.log_lines()
                .iter()
                .any(|line| line.contains(&slow_connection) && line.contains("connection cut off"))
        };
        let mut sent = 0;
        while !cut_off(&host) {
            assert!(
                sent < MAX_MESSAGES,
                "the slow member was not cut off after {sent} messages"
            );
            for _ in 0..BATCH {
                to_room.send(Message::text(numbered(sent))).await.unwrap();
                sent += 1;
            }
            for (name, count) in &mut counts {
                wait_for_count(count, sent, name).await;
            }
        }
        println!("the slow member was cut off after {sent} messages of ~2 KiB");

        to_room.send(Message::text("last")).await.unwrap();
        for reader in readers {
            reader.await.expect("a fast member's reader failed");
        }
        for (name, count) in &counts {
            assert_eq!(*count.borrow(), sent, "{name} missed messages");
        }

        // The slow member gets what was already on its way, then the host's close frame (1008)
        // or, when the host could not write even that, the end of the connection; never
        // everything, and never a broken frame.
        let mut got = 0usize;
        let ending = loop {
            match tokio::time::timeout(EVENT_TIMEOUT, slow.socket.next()).await {
                Err(_) => panic!("the slow member's connection stayed open"),
                Ok(Some(Ok(Message::Text(_)))) => got += 1,
                Ok(Some(Ok(Message::Close(frame)))) => {
                    let code = frame.map(|frame| frame.code);
                    assert_eq!(
                        code,
                        Some(CloseCode::Policy),
                        "the slow member's close code"
                    );
                    break "a close frame with 1008".to_owned();
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(
                    error @ tungstenite::Error::Protocol(
                        tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                    ),
                ))) => break error.to_string(),
                Ok(Some(Err(tungstenite::Error::Io(error))))
                    if matches!(
                        error.kind(),
                        ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof
                    ) =>
                {
                    break error.to_string();
                }
                Ok(Some(Err(error))) => panic!("the slow member's connection broke: {error}"),
                Ok(None) => break "the end of the stream".to_owned(),
            }
        };
        println!("the slow member read {got} messages, then: {ending}");
        assert!(got < sent, "the slow member got all {sent} messages");

        // The host ran `on_close` before it logged the cut-off, so the leave was queued
        // before Ada's last message.
        for (name, left) in &told_left {
            assert!(
                *left.borrow(),
                "{name} was not told that the slow member left"
            );
        }
    })
    .await;
}

/// A thousand members of one room all receive one message posted to it.
async fn a_thousand_members_all_receive_one_message(chat: Chat) {
    bounded(async {
        const MEMBERS: usize = 1_000;
        /// Handshakes in flight at once.
        const CONNECTING_AT_ONCE: usize = 16;
        raise_open_file_limit();
        // Every member's instance is awake until it hibernates, and several handshakes are in
        // `handle` at once.
        let defaults = Limits::default();
        let limits = Limits {
            max_awake_websockets: 1_200,
            plugin: PluginLimits {
                max_concurrent_requests: CONNECTING_AT_ONCE as u32 * 2,
                ..defaults.plugin.clone()
            },
            ..defaults
        };
        let host = TestHost::start_configured(&[chat.plugin()], &[], Some(limits)).await;

        let started = tokio::time::Instant::now();
        let (events, mut arrivals) = mpsc::unbounded_channel::<(usize, bool)>();
        let probe = message("big", "server", PROBE_PREFIX);
        let probe_start: Arc<str> = probe.trim_end_matches("\"}").into();
        let last = Arc::<str>::from(message("big", "server", "to all of you"));
        let mut members = stream::iter(0..MEMBERS)
            .map(|i| {
                let host = &host;
                async move { (i, connect(host, "big", &format!("member {i}")).await) }
            })
            .buffer_unordered(CONNECTING_AT_ONCE);
        // Each member reads on its own, reporting its first probe (it is in the room) and the
        // message every member must get.
        while let Some((i, mut socket)) = members.next().await {
            let (events, probe_start, last) = (events.clone(), probe_start.clone(), last.clone());
            tokio::spawn(async move {
                let mut in_room = false;
                while let Some(Ok(frame)) = socket.next().await {
                    let Message::Text(text) = frame else { continue };
                    if !in_room && text.starts_with(&*probe_start) {
                        in_room = true;
                        let _ = events.send((i, false));
                    } else if text.as_str() == &*last {
                        let _ = events.send((i, true));
                        return;
                    }
                }
            });
        }
        let connected = started.elapsed();

        // Probe until every member is in the room.
        let mut in_room = vec![false; MEMBERS];
        let mut waiting = MEMBERS;
        for round in 0..PROBE_ROUNDS {
            post_to_room(&host, "big", &format!("{PROBE_PREFIX}{round}")).await;
            let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT / 4;
            while waiting > 0 {
                match tokio::time::timeout_at(deadline, arrivals.recv()).await {
                    Ok(Some((i, false))) if !in_room[i] => {
                        in_room[i] = true;
                        waiting -= 1;
                    }
                    Ok(Some(event)) => panic!("unexpected {event:?} while probing"),
                    Ok(None) | Err(_) => break,
                }
            }
            if waiting == 0 {
                break;
            }
        }
        assert_eq!(waiting, 0, "members not in the room after every probe");
        let subscribed = started.elapsed();

        post_to_room(&host, "big", "to all of you").await;
        let mut received = 0;
        while received < MEMBERS {
            match tokio::time::timeout(EVENT_TIMEOUT, arrivals.recv()).await {
                Ok(Some((_, true))) => received += 1,
                Ok(Some((_, false))) => {}
                Ok(None) | Err(_) => panic!("{received} of {MEMBERS} members got the message"),
            }
        }
        println!(
            "{MEMBERS} members: connected in {connected:?}, all in the room at {subscribed:?}, \
             all had the message at {:?}",
            started.elapsed()
        );
    })
    .await;
}

/// Hot reload while members are connected: the live connections keep working; an instance that
/// is alive keeps running the version it was made from, and once the connection has hibernated
/// its next event runs on the current version. The new "version" of `chat` here is `echo`,
/// whose answers are easy to tell apart: the text straight back to the sender alone.
async fn after_a_reload_live_members_keep_their_version_until_they_hibernate(chat: Chat) {
    // The new version is compiled before the clock starts (into the test hosts' artifact
    // cache): compiling a Python component on a busy machine can take longer than the reload
    // may take here, and how long compiling takes is not what this test is about.
    TestHost::start(&[chat.echo()]).await.shut_down().await;
    bounded(async {
        /// Well above the keep-alive spacing below, so Ada's instance stays alive while the
        /// new version loads.
        const HIBERNATE_AFTER_MS: u64 = 1_000;
        const KEEP_ALIVE: Duration = Duration::from_millis(100);
        let sidecar = hibernating_after(HIBERNATE_AFTER_MS);
        let host = TestHost::start_configured(&[chat.plugin()], &[("chat", &sidecar)], None).await;
        let mut ada = join(&host, "lobby", "ada").await;
        let mut bob = join(&host, "lobby", "bob").await;
        ada.expect(&joined("lobby", "bob")).await;

        host.install_plugin(chat.echo(), "chat");
        let reloaded = |host: &TestHost| {
            host.log_lines()
                .iter()
                .any(|line| line.contains("plugin=chat") && line.contains("plugin reloaded"))
        };
        let deadline = tokio::time::Instant::now() + SETTLE_WITHIN;
        let mut n = 0;
        while !reloaded(&host) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "chat was not reloaded"
            );
            let text = format!("keep-alive {n}");
            ada.say(&text).await;
            for member in [&mut ada, &mut bob] {
                member.expect(&message("lobby", "ada", &text)).await;
            }
            n += 1;
            tokio::time::sleep(KEEP_ALIVE).await;
        }

        // Ada's instance is the old version's: still the chat.
        ada.say("still chat").await;
        for member in [&mut ada, &mut bob] {
            member.expect(&message("lobby", "ada", "still chat")).await;
        }

        // Both hibernate; their next events run on the new version.
        wait_for_hibernations(&host, 2).await;
        ada.say("now echo").await;
        ada.expect("now echo").await;
        let ada_connection = connection_of(&host, "ada").await;
        host.wait_for_log(&[&ada_connection, "woke on a new version"], SETTLE_WITHIN)
            .await;
        bob.say("me too").await;
        bob.expect("me too").await;
    })
    .await;
}

mod across_hosts;

both_chats!(members_of_a_room_get_every_message_and_other_rooms_nothing);
both_chats!(a_post_reaches_the_room_from_server);
both_chats!(leaving_is_told_to_the_rest);
both_chats!(bad_input_is_refused_with_the_documented_statuses);
both_chats!(the_page_is_served_whole);
both_chats!(binary_and_oversized_messages_close_with_the_documented_codes);
both_chats!(the_name_survives_hibernation);
both_chats!(a_hibernated_member_leaves_with_its_name);
both_chats!(a_slow_member_is_cut_off_and_the_others_get_everything);
both_chats!(a_thousand_members_all_receive_one_message);
both_chats!(after_a_reload_live_members_keep_their_version_until_they_hibernate);
