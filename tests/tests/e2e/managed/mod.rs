//! Managed WebSockets: the host runs the framing and calls the plugin's events. Checked with
//! tokio-tungstenite clients (and raw TCP where a client library would refuse to misbehave)
//! against the `echo` example and the test plugin `managed`, whose messages are commands.

mod echo;

use std::time::Duration;

use futures_util::StreamExt as _;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use switchyard_tests::TestHost;

/// How long a test waits for a log line or a gauge.
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

/// The next message, whatever it is.
async fn next_message(client: &mut Client) -> Message {
    client
        .next()
        .await
        .expect("the connection stayed open")
        .expect("a valid frame")
}
