//! A chat member as the scale-out tests drive it: a tokio-tungstenite client connected to one
//! host (or to nginx), and the chat's JSON events exactly as the plugin documents them.
//!
//! A member is in a room on its host once its `on_open` has subscribed it, and it hears the
//! other host only once that host's messages reach its host through Redis. [`join`] therefore
//! waits until the member has received a *probe* posted through every host given (a `POST` to
//! the room); members skip probes when they read events, so each test sees only the events it
//! caused.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

pub(crate) use switchyard_tests::chat::{
    EVENT_TIMEOUT, PROBE_PREFIX, is_probe, joined, left, message, next_event, post_to_room,
};

pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long [`join`] waits for the probes of one round before posting the next.
const PROBE_WAIT: Duration = Duration::from_millis(300);
/// Probe rounds [`join`] posts at most before it gives up.
const PROBE_ROUNDS: usize = 50;

/// A connected chat member.
pub(crate) struct Member {
    pub(crate) name: String,
    pub(crate) room: String,
    pub(crate) socket: Socket,
}

/// Opens a WebSocket to `room` as `name` at `addr`; fails unless the answer is `101`.
pub(crate) async fn connect(addr: SocketAddr, room: &str, name: &str) -> Member {
    let url = format!("ws://{addr}/chat/{room}?name={name}");
    let (socket, response) = connect_async(&url)
        .await
        .unwrap_or_else(|error| panic!("{name} could not connect to {url}: {error}"));
    assert_eq!(response.status(), 101);
    Member {
        name: name.to_owned(),
        room: room.to_owned(),
        socket,
    }
}

/// Connects `name` to `room` at `addr` and returns once it hears posts made through every
/// host in `via`: it is then in the room on its host, and every host in `via` reaches it.
pub(crate) async fn join(addr: SocketAddr, room: &str, name: &str, via: &[SocketAddr]) -> Member {
    let mut member = connect(addr, room, name).await;
    member.hear_probes_via(via).await;
    member
}

impl Member {
    /// Returns once this member has received a probe posted through each host in `via`.
    pub(crate) async fn hear_probes_via(&mut self, via: &[SocketAddr]) {
        let mut heard = HashSet::new();
        for round in 0..PROBE_ROUNDS {
            let mut expected = Vec::new();
            for (index, addr) in via.iter().enumerate() {
                if heard.contains(&index) {
                    continue;
                }
                let probe = format!("{PROBE_PREFIX}{} via {index} #{round}", self.name);
                post_to_room(*addr, &self.room, &probe).await;
                expected.push((index, message(&self.room, "server", &probe)));
            }
            let deadline = tokio::time::Instant::now() + PROBE_WAIT;
            while heard.len() < via.len() {
                let Ok(frame) = tokio::time::timeout_at(deadline, self.socket.next()).await else {
                    break;
                };
                match frame {
                    Some(Ok(Message::Text(text))) => {
                        if let Some((index, _)) =
                            expected.iter().find(|(_, probe)| probe == text.as_str())
                        {
                            heard.insert(*index);
                        }
                    }
                    Some(Ok(_)) => {}
                    other => panic!("{}'s connection ended while joining: {other:?}", self.name),
                }
            }
            if heard.len() == via.len() {
                return;
            }
        }
        panic!(
            "{} heard probes through only {} of {} hosts after {PROBE_ROUNDS} rounds",
            self.name,
            heard.len(),
            via.len()
        );
    }

    /// Sends a text message.
    pub(crate) async fn say(&mut self, text: &str) {
        self.socket
            .send(Message::text(text))
            .await
            .unwrap_or_else(|error| panic!("{} could not send: {error}", self.name));
    }

    /// The next event's JSON text, skipping probes, pings and pongs.
    pub(crate) async fn next_event(&mut self) -> String {
        next_event(&mut self.socket, &self.name).await
    }

    /// Fails unless the next event is `expected`.
    pub(crate) async fn expect(&mut self, expected: &str) {
        let got = self.next_event().await;
        assert_eq!(got, expected, "what {} received", self.name);
    }

    /// Reads the join notices of `names`, in that order (members who joined after this one).
    pub(crate) async fn expect_joins(&mut self, names: &[&str]) {
        for name in names {
            let expected = joined(&self.room, name);
            self.expect(&expected).await;
        }
    }

    /// Closes the connection (close handshake).
    pub(crate) async fn leave(mut self) {
        let _ = self.socket.close(None).await;
        // Read until the host's close frame ends the stream, bounded.
        let _ = tokio::time::timeout(EVENT_TIMEOUT, async {
            while let Some(Ok(_)) = self.socket.next().await {}
        })
        .await;
    }
}

/// Proves nothing else has reached `members` (all in one room): one marker posted through
/// `addr` must be each one's next event.
pub(crate) async fn expect_nothing_more(
    members: &mut [&mut Member],
    addr: SocketAddr,
    marker: &str,
) {
    let Some(room) = members.first().map(|member| member.room.clone()) else {
        return;
    };
    post_to_room(addr, &room, marker).await;
    let expected = message(&room, "server", marker);
    for member in members {
        member.expect(&expected).await;
    }
}
