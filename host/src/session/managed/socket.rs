//! The two halves of a managed WebSocket's socket.
//!
//! Reading: tungstenite parses the client's frames from [`ReadSide`] (driven by [`Framing`]
//! straight from the connection's task), whose write side is the connection's outbox: the
//! control replies tungstenite makes (pongs, the close reply, the host's own close and pings)
//! are queued there with [`Outbox::push_control`] and are bounded with everything else, so a
//! client that floods pings and never reads cannot grow memory.
//!
//! Writing: on a plain TCP connection (always, behind hyper's HTTP/1 server) the write half is
//! shared with the outbox ([`Writer::Direct`]): a send or control frame pushed into an empty
//! outbox is written at once if the socket takes it, a publish's frames by the topics' flusher
//! right after the publish, and [`write_outbox`] only writes what the socket did not take,
//! when it can take more. Any other stream ([`Writer::Stream`]) is written by
//! [`write_outbox`] alone, in batches, with vectored writes, so a burst of messages or
//! publishes costs one system call.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::error::Error as WsError;
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, OpCode};
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocket, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::session::pump::{self, ClientReader, ClientWriter};
use crate::topics::{Batch, Flushed, Outbox, Pushed, Socket, WireFrame};

/// Most buffers handed to one vectored write (Linux's `IOV_MAX` is 1,024).
const MAX_IOVECS: usize = 64;

/// The socket's write half.
pub(crate) enum Writer {
    /// A TCP stream's, shared with the connection's outbox, which writes to it directly.
    Direct(Arc<Socket>),
    /// Any other stream's, written by [`write_outbox`] alone.
    Stream(ClientWriter),
}

/// Splits an upgraded connection into its halves, plus the bytes hyper had already read past
/// the request head.
pub(crate) fn split(upgraded: Upgraded) -> (Bytes, ClientReader, Writer) {
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => {
            let (read, write) = parts.io.into_inner().into_split();
            // Even an empty view keeps hyper's whole read buffer allocated for the session.
            let early = if parts.read_buf.is_empty() {
                Bytes::new()
            } else {
                parts.read_buf
            };
            (early, Box::pin(read), Writer::Direct(Arc::new(write)))
        }
        Err(upgraded) => {
            let (early, read, write) = pump::split(upgraded);
            (early, read, Writer::Stream(write))
        }
    }
}

/// The socket's read half, with the outbox standing in for its write half: the blocking-style
/// stream tungstenite reads and writes. A read that would wait registers the connection
/// task's own waker with the socket and reports `WouldBlock`.
pub(crate) struct ReadSide {
    reader: ClientReader,
    outbox: Arc<Outbox>,
    /// The waker of the poll in progress (see [`Framing::poll_next`]).
    waker: Waker,
}

impl ReadSide {
    pub(crate) fn new(reader: ClientReader, outbox: Arc<Outbox>) -> Self {
        Self {
            reader,
            outbox,
            waker: Waker::noop().clone(),
        }
    }

    /// The socket's read half, to drain what the client still sends after the close.
    pub(crate) fn reader(&mut self) -> &mut ClientReader {
        &mut self.reader
    }

    /// The connection's outbox.
    pub(crate) fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Reads that would wait wake `waker` once the socket is readable.
    fn set_waker(&mut self, waker: &Waker) {
        // Nearly always the same task's waker: kept, not cloned per poll.
        if !self.waker.will_wake(waker) {
            self.waker = waker.clone();
        }
    }
}

impl io::Read for ReadSide {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut cx = Context::from_waker(&self.waker);
        let mut buf = ReadBuf::new(buf);
        match self.reader.as_mut().poll_read(&mut cx, &mut buf) {
            Poll::Ready(Ok(())) => Ok(buf.filled().len()),
            Poll::Ready(Err(err)) => Err(err),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl io::Write for ReadSide {
    /// Queues tungstenite's bytes: one whole control frame per call (with no write buffer
    /// configured, tungstenite writes each frame as soon as it has formatted it, and this call
    /// always takes all of it). A close frame is queued as the last frame: nothing may follow
    /// it. Past the outbox's room the policy applies: the frame is dropped, or the connection
    /// is cut off and its writer closes it.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let frame = Bytes::copy_from_slice(buf);
        let pushed = if is_close_frame(buf) {
            self.outbox.push_final(frame)
        } else {
            self.outbox.push_control(frame)
        };
        match pushed {
            Pushed::Queued | Pushed::Dropped => Ok(buf.len()),
            Pushed::Closed => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// tungstenite's framing over a connection's [`ReadSide`], driven from the connection's task.
/// tungstenite is used directly rather than through `tokio-tungstenite`'s stream: that
/// adapter routes every read through waker proxies of its own (an extra registration and an
/// extra wake-up per message, ~2 % of a busy echo's host CPU), which a task that only reads
/// here does not need.
pub(crate) struct Framing {
    ws: WebSocket<ReadSide>,
    /// Set once the stream has ended or failed: it yields nothing more.
    ended: bool,
}

impl Framing {
    /// Server-side framing over `side`, `early` being the bytes read past the request head.
    pub(crate) fn new(side: ReadSide, early: Vec<u8>, config: WebSocketConfig) -> Self {
        Self {
            ws: WebSocket::from_partially_read(side, early, Role::Server, Some(config)),
            ended: false,
        }
    }

    /// The next message (data, or a control frame tungstenite has answered), an error (after
    /// which the stream has ended), or `None` once the connection is over. Cancel safe:
    /// tungstenite keeps a partial frame in its buffer.
    pub(crate) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Message, WsError>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        self.ws.get_mut().set_waker(cx.waker());
        match self.ws.read() {
            Ok(message) => Poll::Ready(Some(Ok(message))),
            Err(WsError::Io(err)) if err.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
            Err(WsError::AlreadyClosed | WsError::ConnectionClosed) => {
                self.ended = true;
                Poll::Ready(None)
            }
            Err(err) => {
                self.ended = true;
                Poll::Ready(Some(Err(err)))
            }
        }
    }

    /// [`Framing::poll_next`] as a future.
    pub(crate) async fn next(&mut self) -> Option<Result<Message, WsError>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Sends a ping (its frame lands in the outbox).
    pub(crate) fn ping(&mut self) -> Result<(), WsError> {
        self.ws.send(Message::Ping(tungstenite::Bytes::new()))
    }

    /// Starts the close handshake with `frame` (through tungstenite, so it knows; the frame
    /// lands in the outbox as the last one).
    pub(crate) fn close(&mut self, frame: CloseFrame) -> Result<(), WsError> {
        self.ws.close(Some(frame))?;
        self.ws.flush()
    }

    pub(crate) fn get_ref(&self) -> &ReadSide {
        self.ws.get_ref()
    }

    pub(crate) fn get_mut(&mut self) -> &mut ReadSide {
        self.ws.get_mut()
    }
}

/// Whether `bytes` start with a close frame's header (as tungstenite parses it).
fn is_close_frame(bytes: &[u8]) -> bool {
    let mut cursor = io::Cursor::new(bytes);
    matches!(
        FrameHeader::parse(&mut cursor),
        Ok(Some((header, _))) if header.opcode == OpCode::Control(Control::Close)
    )
}

/// How the writer stopped.
#[derive(Debug)]
pub(crate) enum WriterEnd {
    /// The outbox was closed and everything queued before was written.
    Drained,
    /// The client fell behind past the outbox's limit under the close policy. `clean` when no
    /// frame was left half written, so a close frame may still follow.
    Overflowed { clean: bool },
    /// Writing failed: the client is gone.
    Failed(io::Error),
}

/// Writes what the outbox holds until it is closed, cut off, or the socket fails. A write
/// blocked on a client that does not read is abandoned as soon as the outbox is cut off.
/// Meant to be polled to its end (with a [`Writer::Stream`], a batch may be half written when
/// it is dropped).
pub(crate) async fn write_outbox(writer: &mut Writer, outbox: &Outbox) -> WriterEnd {
    let end = match writer {
        Writer::Direct(socket) => write_attached(socket, outbox).await,
        Writer::Stream(stream) => write_batches(stream, outbox).await,
    };
    // The outbox no longer keeps the socket open: it closes when the connection lets go.
    outbox.detach();
    end
}

/// The writer of an outbox that writes to `socket` itself: writes only what the socket did
/// not take when it was pushed, whenever the socket can take more.
async fn write_attached(socket: &Socket, outbox: &Outbox) -> WriterEnd {
    loop {
        match outbox.write_queued() {
            Flushed::Idle => outbox.wait_ready().await,
            Flushed::Blocked => {
                tokio::select! {
                    writable = socket.writable() => {
                        if let Err(err) = writable {
                            return WriterEnd::Failed(err);
                        }
                    }
                    // More queued, or cut off: look again.
                    () = outbox.wait_ready() => {}
                }
            }
            Flushed::Closed => return WriterEnd::Drained,
            Flushed::Overflowed { clean } => return WriterEnd::Overflowed { clean },
            Flushed::Failed(err) => return WriterEnd::Failed(err),
        }
    }
}

/// The writer of an outbox without a socket: takes what is queued in batches and writes them.
async fn write_batches(writer: &mut ClientWriter, outbox: &Outbox) -> WriterEnd {
    // Swapped with the outbox's queue for every batch: no allocation per batch.
    let mut frames: VecDeque<WireFrame> = VecDeque::new();
    loop {
        if let Some(ended) = outbox.next_batch_into(&mut frames).await {
            return match ended {
                Batch::Overflowed => WriterEnd::Overflowed { clean: true },
                Batch::Closed | Batch::Frames(_) => WriterEnd::Drained,
            };
        }
        tokio::select! {
            written = write_stream(writer, &mut frames) => {
                if let Err(err) = written {
                    return WriterEnd::Failed(err);
                }
            }
            () = outbox.overflowed() => return WriterEnd::Overflowed { clean: false },
        }
    }
}

/// Writes every frame of `frames` (and empties it), straight to the socket: for the close
/// frame of a connection cut off, after its writer stopped.
pub(crate) async fn write_all(
    writer: &mut Writer,
    frames: &mut VecDeque<WireFrame>,
) -> io::Result<()> {
    match writer {
        Writer::Direct(socket) => {
            while let Some(frame) = frames.front_mut() {
                if frame.is_empty() {
                    frames.pop_front();
                    continue;
                }
                let [head, body] = frame.parts();
                match socket.try_write_vectored(&[io::IoSlice::new(head), io::IoSlice::new(body)]) {
                    Ok(written) => frame.advance(written),
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                        socket.writable().await?;
                    }
                    Err(err) => return Err(err),
                }
            }
            Ok(())
        }
        Writer::Stream(stream) => write_stream(stream, frames).await,
    }
}

/// Writes every frame of `frames` (and empties it) to a stream, up to [`MAX_IOVECS`] of them
/// per system call.
async fn write_stream(
    writer: &mut ClientWriter,
    frames: &mut VecDeque<WireFrame>,
) -> io::Result<()> {
    std::future::poll_fn(|cx| poll_write_all(writer.as_mut(), cx, frames)).await?;
    writer.flush().await
}

/// Polls vectored writes of `frames` until all are written or the socket is not ready. The
/// slices are built on the stack of each poll, so they take no room in a connection's task.
fn poll_write_all(
    mut writer: Pin<&mut (dyn AsyncWrite + Send)>,
    cx: &mut Context<'_>,
    frames: &mut VecDeque<WireFrame>,
) -> Poll<io::Result<()>> {
    while !frames.is_empty() {
        let mut slices = [io::IoSlice::new(&[]); MAX_IOVECS];
        let mut count = 0;
        let parts = frames
            .iter()
            .flat_map(WireFrame::parts)
            .filter(|part| !part.is_empty());
        for (slot, part) in slices.iter_mut().zip(parts) {
            *slot = io::IoSlice::new(part);
            count += 1;
        }
        let slices = slices.get(..count).unwrap_or_default();
        let mut written = match writer.as_mut().poll_write_vectored(cx, slices) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(written)) => written,
            Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
            Poll::Pending => return Poll::Pending,
        };
        // Drop the frames written whole, then advance into a partly written one.
        while let Some(frame) = frames.front_mut() {
            if written >= frame.len() {
                written -= frame.len();
                frames.pop_front();
            } else {
                frame.advance(written);
                break;
            }
        }
    }
    Poll::Ready(Ok(()))
}
