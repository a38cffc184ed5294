//! The `native-echo` role: a WebSocket echo server in plain Rust (tokio-tungstenite), the
//! physical limit the `echo` plugin is compared with. It is configured and batches the way the
//! guest SDK does, so the comparison measures the sandbox, not different settings.

use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// The guest SDK's read buffer (`switchyard_sdk::websocket::READ_BUFFER_SIZE`).
const READ_BUFFER_SIZE: usize = 4 * 1024;

/// Serves until killed.
pub(super) async fn serve() -> anyhow::Result<()> {
    let listener = super::bind_announced().await?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            // A client that goes away mid-session is normal at the end of every load.
            let _ = echo(stream).await;
        });
    }
}

/// The SDK's settings: a small read buffer, and writes handed to the socket at once (no
/// tungstenite-side write buffering).
fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_SIZE)
        .write_buffer_size(0)
}

/// Echoes text and binary messages. Like the `echo` plugin, replies to messages that arrived
/// together are fed together and flushed once no more input is waiting.
async fn echo(stream: TcpStream) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    echo_stream(stream).await
}

/// [`echo`] on any byte stream (the TLS echo's too).
pub(super) async fn echo_stream<S>(stream: S) -> anyhow::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut socket = tokio_tungstenite::accept_async_with_config(stream, Some(config())).await?;
    let mut next = socket.next().await;
    while let Some(message) = next {
        let message = message?;
        if message.is_text() || message.is_binary() {
            socket.feed(message).await?;
        }
        next = match socket.next().now_or_never() {
            Some(ready) => ready,
            None => {
                socket.flush().await?;
                socket.next().await
            }
        };
    }
    Ok(())
}
