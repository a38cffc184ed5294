//! The byte pump between an upgraded connection and a plugin's `stream<u8>`s.
//!
//! [`ClientBytes`] feeds the client's bytes into the guest's `input` stream, reading the socket
//! straight into the guest's buffer; [`ClientSink`] writes the guest's output stream to the
//! socket straight from the guest's buffer. Backpressure is the streams' own: the socket is only
//! read when the guest reads, and a guest write only completes when the socket took the bytes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use wasmtime::StoreContextMut;
use wasmtime::component::{Destination, Source, StreamConsumer, StreamProducer, StreamResult};

/// Buffer size used only if a host (not a guest) ever reads from [`ClientBytes`].
const HOST_READ_CAPACITY: usize = 16 * 1024;

/// The read half of an upgraded connection, as a boxed reader.
pub(crate) type ClientReader = Pin<Box<dyn AsyncRead + Send>>;
/// The write half of an upgraded connection, as a boxed writer.
pub(crate) type ClientWriter = Pin<Box<dyn AsyncWrite + Send>>;

/// Splits an upgraded connection into its halves, plus the bytes hyper had already read past
/// the request head (a client may send them before it sees our `101`).
pub(crate) fn split(upgraded: Upgraded) -> (Bytes, ClientReader, ClientWriter) {
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        // The common case: a plain TCP connection splits without a lock.
        Ok(parts) => {
            let (read, write) = parts.io.into_inner().into_split();
            // Even an empty view keeps hyper's whole read buffer allocated for the session.
            let early = if parts.read_buf.is_empty() {
                Bytes::new()
            } else {
                parts.read_buf
            };
            (early, Box::pin(read), Box::pin(write))
        }
        Err(upgraded) => {
            let (read, write) = tokio::io::split(TokioIo::new(upgraded));
            (Bytes::new(), Box::pin(read), Box::pin(write))
        }
    }
}

/// Why the byte pump stopped carrying the guest's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutputEnd {
    /// The guest dropped its output stream: it finished the session.
    GuestClosed,
    /// Writing to the client failed: it disconnected.
    ClientGone,
}

/// What the pump has seen of a session's traffic: when bytes last moved, and whether the
/// client has closed its side.
#[derive(Debug)]
pub(crate) struct Activity {
    started: Instant,
    /// Milliseconds after `started` when bytes last moved either way.
    last_active_ms: AtomicU64,
    client_closed: AtomicBool,
    /// Bytes from the client given to the guest, for the metrics and the access log.
    bytes_in: AtomicU64,
    /// Bytes from the guest written to the client.
    bytes_out: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Self {
            started: Instant::now(),
            last_active_ms: AtomicU64::new(0),
            client_closed: AtomicBool::new(false),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
        }
    }

    /// Bytes moved so far: (from the client, to the client).
    pub(crate) fn bytes(&self) -> (u64, u64) {
        (
            self.bytes_in.load(Ordering::Relaxed),
            self.bytes_out.load(Ordering::Relaxed),
        )
    }

    fn touch(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.last_active_ms.store(now, Ordering::Relaxed);
    }

    /// When bytes last moved either way.
    pub(crate) fn last_active(&self) -> Instant {
        self.started + Duration::from_millis(self.last_active_ms.load(Ordering::Relaxed))
    }

    /// Whether the client has closed (or reset) its side.
    pub(crate) fn client_closed(&self) -> bool {
        self.client_closed.load(Ordering::Relaxed)
    }
}

/// The host's request that a session's input end (at shutdown), so the guest can finish
/// politely: a WebSocket plugin then sends its close frame.
#[derive(Debug, Default)]
pub(crate) struct EndInput {
    /// Checked on every poll of the input: a plain load, where the token's check takes a lock.
    requested: AtomicBool,
    /// Wakes an input read that is waiting for bytes.
    wake: CancellationToken,
}

impl EndInput {
    /// Ends the input: a read in progress or the next one reports the end of the stream.
    pub(crate) fn request(&self) {
        self.requested.store(true, Ordering::Release);
        self.wake.cancel();
    }

    fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }
}

/// Produces the client's bytes for the guest's `input` stream.
pub(crate) struct ClientBytes {
    /// Bytes read by hyper beyond the request head; delivered before anything else.
    early: Bytes,
    reader: ClientReader,
    activity: Arc<Activity>,
    end_input: Arc<EndInput>,
    /// Completes when the input is asked to end; polled only by a read that waits.
    end_input_wake: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Told once the guest's input is finished: ended, or dropped by the guest.
    input_done: Option<oneshot::Sender<()>>,
}

impl ClientBytes {
    pub(crate) fn new(
        early: Bytes,
        reader: ClientReader,
        activity: Arc<Activity>,
        end_input: Arc<EndInput>,
        input_done: oneshot::Sender<()>,
    ) -> Self {
        Self {
            early,
            reader,
            activity,
            end_input_wake: Box::pin(end_input.wake.clone().cancelled_owned()),
            end_input,
            input_done: Some(input_done),
        }
    }

    /// The guest's input has ended: no more bytes will be produced.
    fn ended(&mut self) -> Poll<wasmtime::Result<StreamResult>> {
        if let Some(done) = self.input_done.take() {
            // The session may have stopped listening already; nothing to tell then.
            let _ = done.send(());
        }
        Poll::Ready(Ok(StreamResult::Dropped))
    }
}

impl Drop for ClientBytes {
    fn drop(&mut self) {
        // wasmtime drops the producer when the guest drops its input stream.
        if let Some(done) = self.input_done.take() {
            let _ = done.send(());
        }
    }
}

impl<D> StreamProducer<D> for ClientBytes {
    type Item = u8;
    type Buffer = Bytes;

    fn poll_produce<'a>(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut store: StoreContextMut<'a, D>,
        dst: Destination<'a, u8, Bytes>,
        finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        if self.end_input.is_requested() {
            return self.ended();
        }
        // A zero-length read asks "would a read succeed?". `AsyncRead` cannot answer without
        // reading, so say yes; the guest's next real read waits properly.
        if dst.remaining(&mut store) == Some(0) {
            return Poll::Ready(Ok(StreamResult::Completed));
        }
        if !self.early.is_empty() {
            let mut direct = dst.as_direct(store, HOST_READ_CAPACITY);
            let target = direct.remaining();
            let n = target.len().min(self.early.len());
            target[..n].copy_from_slice(&self.early[..n]);
            direct.mark_written(n);
            self.activity
                .bytes_in
                .fetch_add(n as u64, Ordering::Relaxed);
            self.early.advance(n);
            if self.early.is_empty() {
                // Let go of hyper's read buffer, which the early bytes were a view of.
                self.early = Bytes::new();
            }
            return Poll::Ready(Ok(StreamResult::Completed));
        }
        let mut direct = dst.as_direct(store, HOST_READ_CAPACITY);
        let mut buf = ReadBuf::new(direct.remaining());
        match self.reader.as_mut().poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len();
                if n == 0 {
                    // The client closed its side: end of the guest's input.
                    self.activity.client_closed.store(true, Ordering::Relaxed);
                    return self.ended();
                }
                direct.mark_written(n);
                self.activity
                    .bytes_in
                    .fetch_add(n as u64, Ordering::Relaxed);
                self.activity.touch();
                Poll::Ready(Ok(StreamResult::Completed))
            }
            // A reset connection is the same as a closed one to the guest: no more input.
            Poll::Ready(Err(_)) => {
                self.activity.client_closed.store(true, Ordering::Relaxed);
                self.ended()
            }
            Poll::Pending if finish => Poll::Ready(Ok(StreamResult::Cancelled)),
            // A waiting read must be woken when the input is asked to end.
            Poll::Pending if self.end_input_wake.as_mut().poll(cx).is_ready() => self.ended(),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Consumes the guest's output stream into the client connection, and reports how it ended
/// when it is dropped.
pub(crate) struct ClientSink {
    writer: ClientWriter,
    activity: Arc<Activity>,
    /// A write went out but its flush has not finished yet.
    flush_pending: bool,
    /// How the output ended, reported once (on failure, or on drop).
    end: OutputEnd,
    ended: Option<oneshot::Sender<OutputEnd>>,
}

impl ClientSink {
    /// A sink writing to `writer` that sends how the output ended on `ended`.
    pub(crate) fn new(
        writer: ClientWriter,
        activity: Arc<Activity>,
        ended: oneshot::Sender<OutputEnd>,
    ) -> Self {
        Self {
            writer,
            activity,
            flush_pending: false,
            end: OutputEnd::GuestClosed,
            ended: Some(ended),
        }
    }

    fn client_gone(&mut self, err: &io::Error) -> Poll<wasmtime::Result<StreamResult>> {
        tracing::debug!("writing to the upgraded connection failed: {err}");
        self.end = OutputEnd::ClientGone;
        self.report();
        Poll::Ready(Ok(StreamResult::Dropped))
    }

    fn poll_flush(
        &mut self,
        cx: &mut Context<'_>,
        finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        match self.writer.as_mut().poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                self.flush_pending = false;
                Poll::Ready(Ok(StreamResult::Completed))
            }
            Poll::Ready(Err(err)) => self.client_gone(&err),
            // The bytes were taken; a cancelled flush finishes with the next write.
            Poll::Pending if finish => Poll::Ready(Ok(StreamResult::Completed)),
            Poll::Pending => {
                self.flush_pending = true;
                Poll::Pending
            }
        }
    }

    fn report(&mut self) {
        if let Some(ended) = self.ended.take() {
            // The session may already have stopped listening; nothing to tell then.
            let _ = ended.send(self.end);
        }
    }
}

impl Drop for ClientSink {
    fn drop(&mut self) {
        // wasmtime drops the consumer when the guest drops its end of the stream: that is how
        // the host learns the session is over.
        self.report();
    }
}

impl<D> StreamConsumer<D> for ClientSink {
    type Item = u8;

    fn poll_consume(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        store: StoreContextMut<D>,
        src: Source<'_, u8>,
        finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        if self.ended.is_none() {
            return Poll::Ready(Ok(StreamResult::Dropped));
        }
        if self.flush_pending {
            return self.poll_flush(cx, finish);
        }
        let mut src = src.as_direct(store);
        let bytes = src.remaining();
        // A zero-length write asks "would a write succeed?"; `AsyncWrite` cannot tell without
        // writing, so say yes and let the real write wait.
        if bytes.is_empty() {
            return Poll::Ready(Ok(StreamResult::Completed));
        }
        match self.writer.as_mut().poll_write(cx, bytes) {
            Poll::Ready(Ok(0)) => self.client_gone(&io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(n)) => {
                src.mark_read(n);
                self.activity
                    .bytes_out
                    .fetch_add(n as u64, Ordering::Relaxed);
                self.activity.touch();
                self.poll_flush(cx, finish)
            }
            Poll::Ready(Err(err)) => self.client_gone(&err),
            Poll::Pending if finish => Poll::Ready(Ok(StreamResult::Cancelled)),
            Poll::Pending => Poll::Pending,
        }
    }
}
