//! The `native-broadcast` role: WebSocket rooms in plain Rust, the physical limit the host's
//! topics are compared with. A member joins the room named by its request path;
//! tokio-tungstenite runs its handshake and reads its messages. A text or binary message a
//! member sends is framed once, and the same bytes are written to every member of the room (the
//! sender included, as in a chat room), in the order they joined, straight from the sender's
//! task: one non-blocking write
//! per member, no task woken per member. A member whose socket cannot take the bytes at once
//! gets the rest queued, in order, for a writer task of its own, so nobody waits for a slow
//! member; one that falls further behind than [`MAX_QUEUED`] is dropped from the room.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};

use futures_util::StreamExt as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// The read buffer every benchmarked server uses (the guest SDK's).
const READ_BUFFER_SIZE: usize = 4 * 1024;
/// Bytes a member may have waiting for its socket before it is dropped from its room (what
/// uWebSockets allows by default, `maxBackpressure`).
const MAX_QUEUED: usize = 64 * 1024;
/// Opcodes of the frames the server sends.
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
/// The FIN bit: every message goes out as one frame.
const FIN: u8 = 0x80;

/// Members, per room (the request path), in the order they joined: a broadcast walks them in
/// order, touching memory in order (the host's topics and Node's `Set` do the same).
type Rooms = Mutex<HashMap<String, Vec<(u64, Arc<Member>)>>>;

/// Serves until killed.
pub(super) async fn serve() -> anyhow::Result<()> {
    let listener = super::bind_announced().await?;
    let rooms: Arc<Rooms> = Arc::default();
    let next_id = AtomicU64::new(0);
    loop {
        let (stream, _) = listener.accept().await?;
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let rooms = rooms.clone();
        tokio::spawn(async move {
            // A member going away is how every room ends.
            let _ = session(stream, id, &rooms).await;
        });
    }
}

/// One member from handshake to leaving.
async fn session(stream: TcpStream, id: u64, rooms: &Rooms) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let member = Arc::new(Member::new(stream));
    let mut path = String::new();
    // The error type is tungstenite's, fixed by its callback trait.
    #[allow(clippy::result_large_err)]
    let remember_path = |request: &Request, response: Response| {
        path = request.uri().path().to_owned();
        Ok(response)
    };
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_SIZE)
        .write_buffer_size(0);
    let mut socket = tokio_tungstenite::accept_hdr_async_with_config(
        MemberStream(member.clone()),
        remember_path,
        Some(config),
    )
    .await?;
    lock(rooms)
        .entry(path.clone())
        .or_default()
        .push((id, member.clone()));
    let writer = tokio::spawn(write_queued(member));
    let mut result = Ok(());
    while let Some(message) = socket.next().await {
        match message {
            Ok(Message::Text(text)) => broadcast(rooms, &path, TEXT, text.as_bytes()),
            Ok(Message::Binary(bytes)) => broadcast(rooms, &path, BINARY, &bytes),
            Ok(_) => {}
            Err(err) => {
                result = Err(err.into());
                break;
            }
        }
    }
    if let Some(room) = lock(rooms).get_mut(&path) {
        room.retain(|(member, _)| *member != id);
    }
    writer.abort();
    result
}

/// Frames `payload` once and writes it to every member of `room`; members that cannot take it
/// leave the room (their sessions end when their sockets do).
fn broadcast(rooms: &Rooms, room: &str, opcode: u8, payload: &[u8]) {
    let frame = server_frame(opcode, payload);
    if let Some(members) = lock(rooms).get_mut(room) {
        members.retain(|(_, member)| member.send(&frame).is_ok());
    }
}

/// An unmasked single-frame message, as a server sends it.
fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 10);
    frame.push(FIN | opcode);
    match payload.len() {
        len @ 0..=125 => frame.push(len as u8),
        len @ 126..=0xFFFF => {
            frame.push(126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    frame
}

/// A member's socket, shared by its reading task, whoever broadcasts to its room, and its
/// writer task; and the bytes waiting for the socket, kept in order.
struct Member {
    socket: TcpStream,
    queued: Mutex<Vec<u8>>,
    wake: Notify,
}

impl Member {
    fn new(socket: TcpStream) -> Self {
        Self {
            socket,
            queued: Mutex::new(Vec::new()),
            wake: Notify::new(),
        }
    }

    /// Writes `bytes` after anything already queued, without waiting: at once if the socket
    /// takes them, else (what is left of them) through the writer task.
    fn send(&self, bytes: &[u8]) -> io::Result<()> {
        let mut queued = lock(&self.queued);
        let rest = if queued.is_empty() {
            match self.socket.try_write(bytes) {
                Ok(written) => bytes.get(written..).unwrap_or_default(),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => bytes,
                Err(err) => return Err(err),
            }
        } else {
            bytes
        };
        if rest.is_empty() {
            return Ok(());
        }
        if queued.len() + rest.len() > MAX_QUEUED {
            return Err(io::Error::other("the member fell too far behind"));
        }
        queued.extend_from_slice(rest);
        drop(queued);
        self.wake.notify_one();
        Ok(())
    }
}

/// Writes what [`Member::send`] could not, whenever there is some, until aborted.
async fn write_queued(member: Arc<Member>) -> io::Result<()> {
    loop {
        member.wake.notified().await;
        loop {
            member.socket.writable().await?;
            let mut queued = lock(&member.queued);
            if queued.is_empty() {
                break;
            }
            match member.socket.try_write(&queued) {
                Ok(written) => {
                    let written = written.min(queued.len());
                    queued.drain(..written);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return Err(err),
            }
        }
    }
}

/// The member's socket as tokio-tungstenite sees it: reads straight from the socket; writes
/// (the handshake's answer, pongs, the close reply) go through [`Member::send`], so they stay
/// in order with what broadcasts write.
struct MemberStream(Arc<Member>);

impl AsyncRead for MemberStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.socket.poll_read_ready(cx))?;
            match self.0.socket.try_read(buf.initialize_unfilled()) {
                Ok(read) => {
                    buf.advance(read);
                    return Poll::Ready(Ok(()));
                }
                // Readiness was stale: `try_read` cleared it, so the next poll registers.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
    }
}

impl AsyncWrite for MemberStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(self.0.send(buf).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // What is queued is the writer task's to flush; nothing here waits for it.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Locks `mutex`; a panic elsewhere while it was held leaves nothing inconsistent here.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_unmasked_with_all_three_length_forms() {
        assert_eq!(server_frame(TEXT, b"hi"), [0x81, 2, b'h', b'i']);
        assert_eq!(
            server_frame(BINARY, &[0; 300])[..4],
            [0x82, 126, 0x01, 0x2c]
        );
        let big = server_frame(BINARY, &[0; 70_000]);
        assert_eq!(big[1], 127);
        assert_eq!(big.len(), 10 + 70_000);
    }
}
