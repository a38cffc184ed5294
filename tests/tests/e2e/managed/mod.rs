//! Managed WebSockets: the host runs the framing and calls the plugin's events. Checked with
//! tokio-tungstenite clients (and raw TCP where a client library would refuse to misbehave)
//! against the `echo` example and the test plugin `managed`, whose text messages are commands
//! (see `tests/plugins/managed`).

mod attachment;
mod echo;
mod events;
mod hibernation;
mod protocol;
mod shared;
mod slow;
mod topics;

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use switchyard_tests::TestHost;

/// How long a test waits for a log line, a gauge or a close.
const LOG_WAIT: Duration = Duration::from_secs(10);

/// A WebSocket client connection.
type Client = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket to `path` on `host`.
async fn connect(host: &TestHost, path: &str) -> Client {
    let (client, response) = connect_async(host.ws_url(path))
        .await
        .expect("WebSocket handshake");
    assert_eq!(response.status(), 101);
    client
}

/// Opens a WebSocket to the `managed` plugin at `path` (with its query) and reads the
/// `open:<id>` its `on-open` sends: the connection and its number.
async fn open(host: &TestHost, path: &str) -> (Client, u64) {
    let mut client = connect(host, path).await;
    let opened = text(&mut client).await;
    let id = opened
        .strip_prefix("open:")
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("expected open:<id>, got {opened:?}"));
    (client, id)
}

/// The next message, whatever it is.
async fn next_message(client: &mut Client) -> Message {
    tokio::time::timeout(LOG_WAIT, client.next())
        .await
        .expect("a message within the wait")
        .expect("the connection stayed open")
        .expect("a valid frame")
}

/// The next text message, skipping the host's pings.
async fn text(client: &mut Client) -> String {
    loop {
        match next_message(client).await {
            Message::Text(text) => return text.as_str().to_owned(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// Sends `command` and returns the text answer.
async fn ask(client: &mut Client, command: &str) -> String {
    client
        .send(Message::text(command))
        .await
        .expect("sending a command");
    text(client).await
}

/// Reads until the host's close frame and returns its code and reason, failing if the
/// connection ends without one.
async fn closed_with(client: &mut Client) -> (CloseCode, String) {
    loop {
        match tokio::time::timeout(LOG_WAIT, client.next())
            .await
            .expect("a close within the wait")
        {
            Some(Ok(Message::Close(Some(frame)))) => {
                return (frame.code, frame.reason.as_str().to_owned());
            }
            Some(Ok(Message::Close(None))) => panic!("a close frame without a code"),
            Some(Ok(_)) => {}
            Some(Err(err)) => panic!("the connection failed before a close frame: {err}"),
            None => panic!("the connection ended without a close frame"),
        }
    }
}
