//! A connection's outbound queue: frames waiting to be written to one socket, bounded in bytes
//! so that a client that reads slower than messages arrive can never grow host memory.
//!
//! Publishing never waits: [`Outbox::push`] queues the frame or, when the queue is full, applies
//! the connection's [`Overflow`] policy at once. A plugin's own `send` uses
//! [`Outbox::try_push`], which refuses instead (the plugin hears `backpressure`), and the
//! framing's control replies (pong, close) use [`Outbox::push_control`], which has a little room
//! of its own beyond the limit so a close can always be queued.
//!
//! Once the connection's socket is attached ([`Outbox::attach`]), a frame pushed into an empty
//! outbox is written to the socket at once, by whoever pushes it, if the socket takes it
//! without waiting. A publish's frame ([`Outbox::push_shared`]) is only queued, and written by
//! the [`Outbox::flush`] the topic registry's flusher makes right after: a publish to 10,000
//! subscribers is 10,000 non-blocking writes from one task, not 10,000 task wake-ups, and not
//! the publisher's CPU time. What the socket does not take stays queued, and then the
//! connection's writer is woken to write it ([`Outbox::write_queued`], under the same lock, as
//! soon as the socket can take more). Nothing is written directly while anything is
//! queued, so frames reach the wire in the order they were pushed. Without a socket (before it
//! is attached, or a connection that is not plain TCP) every frame is queued and the writer
//! takes them out in batches ([`Outbox::next_batch`]), so a burst of publishes becomes one
//! write.
//!
//! An empty outbox takes one frame of any size (message sizes are bounded before a frame is
//! made), so the limit can never make a message undeliverable. What one connection holds is at
//! most the limit (plus that one frame and the control room) queued, plus, without a socket,
//! the batch its writer is writing.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::Notify;

/// What happens to a frame that does not fit in a full outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// The connection is cut off: its writer sees [`Batch::Overflowed`] and closes it (a
    /// WebSocket with `1008`), so a client that falls behind learns it and can reconnect.
    Close,
    /// The frame is dropped and counted; the connection stays.
    DropMessage,
}

/// One frame as written to the wire: its header and its payload, kept apart so that a large
/// payload is never copied to put a header in front of it (a vectored write sends both), and
/// so that a published payload is shared by every subscriber's outbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WireFrame {
    head: Bytes,
    body: Bytes,
}

impl WireFrame {
    /// A frame made of `head` followed by `body`.
    pub fn new(head: Bytes, body: Bytes) -> Self {
        Self { head, body }
    }

    /// Bytes on the wire.
    pub fn len(&self) -> usize {
        self.head.len().saturating_add(self.body.len())
    }

    /// Whether nothing is left to write.
    pub fn is_empty(&self) -> bool {
        self.head.is_empty() && self.body.is_empty()
    }

    /// The parts still to write, in order (empty ones included).
    pub fn parts(&self) -> [&[u8]; 2] {
        [&self.head, &self.body]
    }

    /// Drops the first `count` bytes (written already); at most [`WireFrame::len`].
    pub fn advance(&mut self, count: usize) {
        let from_head = count.min(self.head.len());
        bytes::Buf::advance(&mut self.head, from_head);
        let from_body = (count - from_head).min(self.body.len());
        bytes::Buf::advance(&mut self.body, from_body);
    }
}

impl From<Bytes> for WireFrame {
    fn from(whole: Bytes) -> Self {
        Self {
            head: whole,
            body: Bytes::new(),
        }
    }
}

/// Bytes of control frames (pongs, pings, the close) an outbox takes beyond its limit: a close
/// frame must fit even when the queue is full, and a client flooding pings without reading
/// must still run out of room.
pub const CONTROL_ROOM: usize = 1024;

/// Why [`Outbox::try_push`] refused a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The frame does not fit in what is left of the limit.
    Full,
    /// The outbox is closed (cut off for falling behind, or the connection ended).
    Closed,
}

/// What [`Outbox::push`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued for the writer.
    Queued,
    /// Not queued: the outbox was full and its policy drops.
    Dropped,
    /// Not queued: the outbox is closed (cut off for falling behind, or the connection ended).
    Closed,
}

/// What the writer gets from [`Outbox::next_batch`].
#[derive(Debug, PartialEq, Eq)]
pub enum Batch {
    /// Frames to write, oldest first.
    Frames(Vec<WireFrame>),
    /// The client fell behind past the limit under [`Overflow::Close`]: close the connection.
    Overflowed,
    /// The outbox was closed and everything queued before was handed out: stop writing.
    Closed,
}

/// The socket an outbox writes to directly: the write half of the connection's TCP stream.
pub type Socket = tokio::net::tcp::OwnedWriteHalf;

/// What the writer of an attached outbox gets from [`Outbox::write_queued`].
#[derive(Debug)]
pub enum Flushed {
    /// Everything queued is written; wait for the outbox to be ready again.
    Idle,
    /// The socket takes no more for now; wait until it is writable (or the outbox is ready).
    Blocked,
    /// The outbox was closed and everything queued before is written: stop writing.
    Closed,
    /// The client fell behind past the limit under [`Overflow::Close`].
    Overflowed {
        /// No frame was left half written, so a close frame may still follow.
        clean: bool,
    },
    /// Writing failed: the client is gone.
    Failed(std::io::Error),
}

/// One connection's bounded queue of frames waiting to be written.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    /// Wakes the writer when frames are queued or the outbox closes.
    ready: Notify,
    /// Most bytes queued at once.
    max_bytes: usize,
    policy: Overflow,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<WireFrame>,
    /// Bytes of `frames` not written yet.
    bytes: usize,
    overflowed: bool,
    /// Whether a frame was left half written when the outbox was cut off.
    torn: bool,
    closed: bool,
    /// The front frame is partly written already (it cannot be dropped any more).
    front_started: bool,
    /// Where frames are written directly, once attached.
    socket: Option<Arc<Socket>>,
    /// Frames refused because the outbox was full, for metrics and logs.
    dropped: u64,
    /// Data frames taken since the start, for the connection's log line.
    queued: u64,
    /// Bytes of those frames (as framed on the wire), for the metrics and the access log.
    queued_bytes: u64,
}

impl Outbox {
    /// An empty outbox holding at most `max_bytes` of frames.
    pub fn new(max_bytes: usize, policy: Overflow) -> Self {
        Self {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            max_bytes,
            policy,
        }
    }

    /// From now on, frames pushed while nothing is queued are written to `socket` at once when
    /// it takes them without waiting; the writer must then use [`Outbox::write_queued`].
    pub fn attach(&self, socket: Arc<Socket>) {
        self.lock().socket = Some(socket);
    }

    /// Forgets the socket, so that the outbox no longer keeps it open.
    pub fn detach(&self) {
        let socket = self.lock().socket.take();
        drop(socket);
    }

    /// Queues a data `frame` without waiting; when it does not fit, the outbox's [`Overflow`]
    /// policy decides. For publishes: a publisher is never held up by a subscriber.
    pub fn push(&self, frame: impl Into<WireFrame>) -> Pushed {
        self.push_within(frame.into(), self.max_bytes, true)
    }

    /// [`Outbox::push`] of a frame shared with other outboxes (a publish), queued but not
    /// written: with a socket attached, whoever publishes then calls [`Outbox::flush`] (outside
    /// the publishing call, so that the writes to every subscriber are not the publisher's CPU
    /// time), and the connection's writer is not woken for it.
    pub fn push_shared(&self, frame: &WireFrame) -> Pushed {
        let mut state = self.lock();
        if state.closed || state.overflowed {
            return Pushed::Closed;
        }
        if !fits(&state, frame.len(), self.max_bytes) {
            return self.overflow(state);
        }
        state.queued += 1;
        state.queued_bytes += frame.len() as u64;
        let was_empty = state.frames.is_empty();
        let flusher_writes = state.socket.is_some();
        state.bytes = state.bytes.saturating_add(frame.len());
        state.frames.push_back(frame.clone());
        drop(state);
        if was_empty && !flusher_writes {
            self.ready.notify_one();
        }
        Pushed::Queued
    }

    /// Writes what is queued as far as the socket takes it without waiting, and wakes the
    /// connection's writer for what it does not take (or when writing failed: the writer
    /// meets the same error and ends the connection). For whoever queued frames with
    /// [`Outbox::push_shared`]; without a socket it does nothing (the writer was woken).
    pub fn flush(&self) {
        let mut state = self.lock();
        if state.frames.is_empty() || state.socket.is_none() {
            return;
        }
        let flushed = write_locked(&mut state);
        drop(state);
        if !matches!(flushed, Flushed::Idle | Flushed::Closed) {
            self.ready.notify_one();
        }
    }

    /// Queues a data `frame` if it fits; otherwise refuses it and changes nothing, so the
    /// sender can decide (a plugin's `send` hears `backpressure`).
    pub fn try_push(&self, frame: impl Into<WireFrame>) -> Result<(), Refused> {
        let frame = frame.into();
        let state = self.admit_data(frame.len())?;
        self.take(state, frame);
        Ok(())
    }

    /// [`Outbox::try_push`] for a frame whose payload is borrowed (from a guest's memory): when
    /// nothing is queued and the socket takes the frame at once, it is written from where it is;
    /// only what the socket leaves is copied into the queue.
    pub fn try_push_borrowed(&self, head: Bytes, body: &[u8]) -> Result<(), Refused> {
        let len = head.len().saturating_add(body.len());
        let state = self.admit_data(len)?;
        let written = write_now(&state, [&head, body]);
        if written < len {
            let frame = WireFrame::new(head, Bytes::copy_from_slice(body));
            self.queue_rest(state, frame, written);
        }
        Ok(())
    }

    /// The lock, with a data frame of `len` bytes counted in, if the outbox is open and the
    /// frame fits; refused otherwise, with nothing changed.
    fn admit_data(&self, len: usize) -> Result<MutexGuard<'_, State>, Refused> {
        let mut state = self.lock();
        if state.closed || state.overflowed {
            return Err(Refused::Closed);
        }
        if !fits(&state, len, self.max_bytes) {
            return Err(Refused::Full);
        }
        state.queued += 1;
        state.queued_bytes += len as u64;
        Ok(state)
    }

    /// Queues a control frame of the framing (a pong, a ping, the close), which may use
    /// [`CONTROL_ROOM`] bytes beyond the limit; past that, the policy decides as for
    /// [`Outbox::push`].
    pub fn push_control(&self, frame: impl Into<WireFrame>) -> Pushed {
        let limit = self.max_bytes.saturating_add(CONTROL_ROOM);
        self.push_within(frame.into(), limit, false)
    }

    /// Queues `frame` as the last one (a close frame): nothing is taken after it, and the
    /// writer gets [`Batch::Closed`] once it is written. Like a control frame, it has
    /// [`CONTROL_ROOM`] beyond the limit.
    pub fn push_final(&self, frame: impl Into<WireFrame>) -> Pushed {
        let limit = self.max_bytes.saturating_add(CONTROL_ROOM);
        let pushed = self.push_within(frame.into(), limit, false);
        self.close();
        pushed
    }

    fn push_within(&self, frame: WireFrame, limit: usize, data: bool) -> Pushed {
        let mut state = self.lock();
        if state.closed || state.overflowed {
            return Pushed::Closed;
        }
        if !fits(&state, frame.len(), limit) {
            return self.overflow(state);
        }
        if data {
            state.queued += 1;
            state.queued_bytes += frame.len() as u64;
        }
        self.take(state, frame);
        Pushed::Queued
    }

    /// A frame did not fit: the policy decides.
    fn overflow(&self, mut state: MutexGuard<'_, State>) -> Pushed {
        state.dropped += 1;
        match self.policy {
            Overflow::DropMessage => Pushed::Dropped,
            Overflow::Close => {
                state.overflowed = true;
                state.torn = state.front_started;
                state.frames.clear();
                state.bytes = 0;
                drop(state);
                self.ready.notify_one();
                Pushed::Closed
            }
        }
    }

    /// Writes `frame` at once if nothing is queued and the socket takes it whole; queues what
    /// is left of it otherwise and wakes the writer if it was idle.
    fn take(&self, state: MutexGuard<'_, State>, frame: WireFrame) {
        let written = write_now(&state, frame.parts());
        if written < frame.len() {
            self.queue_rest(state, frame, written);
        }
    }

    /// Queues what is left of `frame` after its first `written` bytes went to the socket, and
    /// wakes the writer if the queue was empty.
    fn queue_rest(&self, mut state: MutexGuard<'_, State>, mut frame: WireFrame, written: usize) {
        frame.advance(written);
        if written > 0 {
            state.front_started = true;
        }
        let was_empty = state.frames.is_empty();
        state.bytes = state.bytes.saturating_add(frame.len());
        state.frames.push_back(frame);
        drop(state);
        // A writer with frames queued already is busy with them or waits for the socket; only
        // the first frame needs to wake it.
        if was_empty {
            self.ready.notify_one();
        }
    }

    /// For the writer of an attached outbox: writes what is queued, as far as the socket takes
    /// it without waiting. Under the outbox's lock, so nothing pushed meanwhile can overtake
    /// it.
    pub fn write_queued(&self) -> Flushed {
        write_locked(&mut self.lock())
    }

    /// Waits until the writer of an attached outbox has something to do: frames queued, the
    /// outbox closed or cut off. Returns at once if that happened since the last wait.
    pub async fn wait_ready(&self) {
        self.ready.notified().await;
    }

    /// Waits until there is something for the writer, then hands out everything queued.
    /// Cancel safe: nothing is taken out of the queue until the wait is over.
    pub async fn next_batch(&self) -> Batch {
        let mut frames = VecDeque::new();
        match self.next_batch_into(&mut frames).await {
            Some(ended) => ended,
            None => Batch::Frames(frames.into()),
        }
    }

    /// Like [`Outbox::next_batch`], but swaps the queued frames into `frames` (which must be
    /// empty), so the writer's buffer and the queue's are reused instead of allocated per
    /// batch. `None` when frames were handed out; otherwise why there are none any more.
    /// For an outbox without a socket.
    pub async fn next_batch_into(&self, frames: &mut VecDeque<WireFrame>) -> Option<Batch> {
        loop {
            // Registered before the check, so a push between the check and the wait still
            // wakes this writer.
            let notified = self.ready.notified();
            {
                let mut state = self.lock();
                if state.overflowed {
                    return Some(Batch::Overflowed);
                }
                if !state.frames.is_empty() {
                    state.bytes = 0;
                    std::mem::swap(&mut state.frames, frames);
                    return None;
                }
                if state.closed {
                    return Some(Batch::Closed);
                }
            }
            notified.await;
        }
    }

    /// Waits until the outbox is cut off for falling behind (under [`Overflow::Close`]), so a
    /// writer blocked on a client that does not read can give up. Meant for the writer while
    /// it writes a batch, when it is not waiting in [`Outbox::next_batch`] (both wait for the
    /// same wake-up).
    pub async fn overflowed(&self) {
        loop {
            let notified = self.ready.notified();
            if self.lock().overflowed {
                return;
            }
            notified.await;
        }
    }

    /// No more frames will be accepted; the writer gets what was queued, then
    /// [`Batch::Closed`].
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    /// Frames refused because the outbox was full.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Data frames taken since the outbox was made (written or queued).
    pub fn queued(&self) -> u64 {
        self.lock().queued
    }

    /// Bytes of the data frames taken since the outbox was made, headers included.
    pub fn queued_bytes(&self) -> u64 {
        self.lock().queued_bytes
    }

    /// Whether the outbox was cut off for falling behind (under [`Overflow::Close`]).
    pub fn is_overflowed(&self) -> bool {
        self.lock().overflowed
    }

    /// Whether the outbox no longer takes frames (closed, or cut off).
    pub fn is_closed(&self) -> bool {
        let state = self.lock();
        state.closed || state.overflowed
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the queue inconsistent (every update is
        // a single push or drain), so a poisoned lock is used as is.
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// Writes what `state` holds queued as far as its socket takes it without waiting.
fn write_locked(state: &mut State) -> Flushed {
    loop {
        if state.overflowed {
            return Flushed::Overflowed { clean: !state.torn };
        }
        if state.frames.is_empty() {
            return if state.closed {
                Flushed::Closed
            } else {
                Flushed::Idle
            };
        }
        let Some(socket) = &state.socket else {
            return Flushed::Failed(std::io::ErrorKind::NotConnected.into());
        };
        // One frame waiting (the common case): a plain write of it, with no array of slices
        // to set up.
        let tried = match state.frames.front() {
            Some(frame) if state.frames.len() == 1 => try_write(socket, frame.parts()),
            _ => try_write_all_parts(socket, &state.frames),
        };
        let mut written = match tried {
            Ok(written) => written,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                return Flushed::Blocked;
            }
            Err(err) => return Flushed::Failed(err),
        };
        state.bytes = state.bytes.saturating_sub(written);
        while let Some(frame) = state.frames.front_mut() {
            if written >= frame.len() {
                written -= frame.len();
                state.frames.pop_front();
                state.front_started = false;
            } else {
                frame.advance(written);
                state.front_started = state.front_started || written > 0;
                break;
            }
        }
    }
}

/// Most buffers handed to one vectored write (Linux's `IOV_MAX` is 1,024).
const MAX_IOVECS: usize = 64;

/// Bytes of a frame (`parts`) written straight to the attached socket when nothing is queued
/// (so it cannot overtake anything), as far as the socket takes them without waiting; 0 when
/// something is queued or no socket is attached. A failed write counts as 0: the frame is then
/// queued, and the writer meets the same error and ends the connection.
fn write_now(state: &State, parts: [&[u8]; 2]) -> usize {
    match &state.socket {
        Some(socket) if state.frames.is_empty() => try_write(socket, parts).unwrap_or(0),
        _ => 0,
    }
}

/// One non-blocking write of a frame's parts; how many bytes the socket took.
fn try_write(socket: &Socket, parts: [&[u8]; 2]) -> std::io::Result<usize> {
    match parts {
        [head, []] => socket.try_write(head),
        [head, body] => socket.try_write_vectored(&[IoSlice::new(head), IoSlice::new(body)]),
    }
}

/// One non-blocking vectored write of the front of `frames` (up to [`MAX_IOVECS`] parts). The
/// slices are built on the stack.
fn try_write_all_parts(socket: &Socket, frames: &VecDeque<WireFrame>) -> std::io::Result<usize> {
    let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
    let mut count = 0;
    let parts = frames
        .iter()
        .flat_map(WireFrame::parts)
        .filter(|part| !part.is_empty());
    for (slot, part) in slices.iter_mut().zip(parts) {
        *slot = IoSlice::new(part);
        count += 1;
    }
    socket.try_write_vectored(slices.get(..count).unwrap_or_default())
}

/// Whether `len` more bytes fit within `limit`: an empty queue takes any one frame.
fn fits(state: &State, len: usize, limit: usize) -> bool {
    state.frames.is_empty() || state.bytes.saturating_add(len) <= limit
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A frame split into a header and a shared payload advances across both parts.
    #[test]
    fn a_wire_frame_advances_across_its_parts() {
        let mut frame = WireFrame::new(Bytes::from_static(b"ab"), Bytes::from_static(b"cdef"));
        assert_eq!(frame.len(), 6);
        frame.advance(3);
        assert_eq!(frame.parts(), [&b""[..], &b"def"[..]]);
        frame.advance(3);
        assert!(frame.is_empty());
    }

    fn frame(text: &str) -> WireFrame {
        Bytes::copy_from_slice(text.as_bytes()).into()
    }

    /// A connected pair on loopback: the outbox's socket (the write half of a stream with a
    /// small send buffer, so a reader that does not read soon holds it up), and its peer.
    pub(in crate::topics) async fn socket_pair() -> (Arc<Socket>, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_send_buffer_size(4096).unwrap();
        let (connected, accepted) = tokio::join!(
            socket.connect(listener.local_addr().unwrap()),
            listener.accept()
        );
        let (_read, write) = connected.unwrap().into_split();
        // The read half may go: the write half keeps the stream open.
        (Arc::new(write), accepted.unwrap().0)
    }

    /// The writer of an attached outbox, as the connection's task runs it.
    async fn writer(outbox: Arc<Outbox>, socket: Arc<Socket>) -> &'static str {
        loop {
            match outbox.write_queued() {
                Flushed::Idle => outbox.wait_ready().await,
                Flushed::Blocked => {
                    tokio::select! {
                        writable = socket.writable() => writable.unwrap(),
                        () = outbox.wait_ready() => {}
                    }
                }
                Flushed::Closed => return "closed",
                Flushed::Overflowed { clean: true } => return "overflowed",
                Flushed::Overflowed { clean: false } => return "overflowed, torn",
                Flushed::Failed(err) => panic!("write failed: {err}"),
            }
        }
    }

    async fn read_exactly(peer: &mut tokio::net::TcpStream, len: usize) -> Vec<u8> {
        use tokio::io::AsyncReadExt as _;
        let mut bytes = vec![0; len];
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            peer.read_exact(&mut bytes),
        )
        .await
        .expect("the bytes arrive in time")
        .unwrap();
        bytes
    }

    /// A frame pushed into an empty attached outbox is written by the push itself, and a
    /// publish's frame by the flush after it: either reaches the peer with no writer running,
    /// and nothing stays queued.
    #[tokio::test]
    async fn a_push_into_an_empty_attached_outbox_is_written_at_once() {
        let (socket, mut peer) = socket_pair().await;
        let outbox = Outbox::new(100, Overflow::Close);
        assert_eq!(outbox.push(frame("queued first")), Pushed::Queued);
        outbox.attach(socket);
        // Something is queued: the next frame must wait behind it.
        assert_eq!(outbox.push_shared(&frame(" then")), Pushed::Queued);
        assert!(matches!(outbox.write_queued(), Flushed::Idle));
        assert_eq!(read_exactly(&mut peer, 17).await, b"queued first then");
        let own = WireFrame::new(Bytes::from_static(b"head "), Bytes::from_static(b"body"));
        assert_eq!(outbox.push(own), Pushed::Queued);
        assert!(outbox.lock().frames.is_empty(), "written, not queued");
        assert_eq!(read_exactly(&mut peer, 9).await, b"head body");
        // A publish's frame is queued, and written by the flush that follows it.
        assert_eq!(outbox.push_shared(&frame(", shared")), Pushed::Queued);
        assert_eq!(outbox.lock().frames.len(), 1);
        outbox.flush();
        assert!(outbox.lock().frames.is_empty(), "flushed");
        assert_eq!(read_exactly(&mut peer, 8).await, b", shared");
        assert_eq!(outbox.queued(), 4);
        outbox.close();
        assert!(matches!(outbox.write_queued(), Flushed::Closed));
    }

    /// Under a reader that does not keep up, frames written directly and frames queued for the
    /// writer reach the peer in the order they were pushed, every one of them.
    #[tokio::test]
    async fn direct_and_queued_writes_keep_the_push_order_under_a_slow_reader() {
        let (socket, mut peer) = socket_pair().await;
        let outbox = Arc::new(Outbox::new(16 << 20, Overflow::Close));
        outbox.attach(socket.clone());
        let writing = tokio::spawn(writer(outbox.clone(), socket));
        // Numbered frames, 1 KiB each: far more than the socket's buffers hold, so some are
        // written by the push and the rest queued, while the writer drains the queue as the
        // peer reads.
        const FRAMES: usize = 4096;
        const SIZE: usize = 1024;
        let pushing = tokio::spawn({
            let outbox = outbox.clone();
            async move {
                let mut queued_at_some_point = false;
                for i in 0..FRAMES {
                    let mut payload = vec![b'.'; SIZE];
                    payload[..8].copy_from_slice(format!("{i:08}").as_bytes());
                    // Publishes (queued, then flushed) and the connection's own sends
                    // (written at once when nothing is queued), mixed.
                    let payload = WireFrame::from(Bytes::from(payload));
                    if i % 3 == 0 {
                        assert_eq!(outbox.push(payload), Pushed::Queued);
                    } else {
                        assert_eq!(outbox.push_shared(&payload), Pushed::Queued);
                        outbox.flush();
                    }
                    queued_at_some_point |= !outbox.lock().frames.is_empty();
                    if i % 256 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                outbox.close();
                queued_at_some_point
            }
        });
        // Read slowly at first, so the socket fills up.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let received = read_exactly(&mut peer, FRAMES * SIZE).await;
        assert!(
            pushing.await.unwrap(),
            "the slow reader made frames wait in the queue"
        );
        for (i, chunk) in received.chunks(SIZE).enumerate() {
            assert_eq!(
                &chunk[..8],
                format!("{i:08}").as_bytes(),
                "frame {i} in order"
            );
        }
        assert_eq!(writing.await.unwrap(), "closed");
    }

    /// A borrowed frame is written from where it is when the socket takes it, and what the
    /// socket leaves is copied into the queue: under a reader that does not keep up, every
    /// borrowed frame still reaches the peer whole and in order, behind what was queued.
    #[tokio::test]
    async fn borrowed_frames_are_copied_only_for_what_must_wait() {
        let (socket, mut peer) = socket_pair().await;
        let outbox = Arc::new(Outbox::new(16 << 20, Overflow::Close));
        outbox.attach(socket.clone());
        let mut payload = vec![b'x'; 32];
        assert_eq!(
            outbox.try_push_borrowed(Bytes::from_static(b"head "), &payload),
            Ok(())
        );
        assert!(outbox.lock().frames.is_empty(), "written, not queued");
        assert_eq!(read_exactly(&mut peer, 37).await[..6], *b"head x");
        let writing = tokio::spawn(writer(outbox.clone(), socket));
        // 64 KiB frames, far more than the socket's buffers hold: some go out whole, one is
        // cut by the socket and the rest of it queued, later ones queued behind it.
        const FRAMES: usize = 64;
        const SIZE: usize = 64 << 10;
        let mut queued_at_some_point = false;
        for i in 0..FRAMES {
            payload.clear();
            payload.extend(format!("{i:08}").bytes());
            payload.resize(SIZE, b'.');
            // The borrowed bytes change right after: the queue must hold its own copy.
            assert_eq!(outbox.try_push_borrowed(Bytes::new(), &payload), Ok(()));
            payload.fill(b'!');
            queued_at_some_point |= !outbox.lock().frames.is_empty();
        }
        outbox.close();
        assert!(queued_at_some_point, "the slow reader made frames wait");
        let received = read_exactly(&mut peer, FRAMES * SIZE).await;
        for (i, chunk) in received.chunks(SIZE).enumerate() {
            assert_eq!(
                &chunk[..8],
                format!("{i:08}").as_bytes(),
                "frame {i} in order"
            );
            assert!(chunk[8..].iter().all(|&b| b == b'.'), "frame {i} whole");
        }
        assert_eq!(writing.await.unwrap(), "closed");
        assert_eq!(outbox.queued(), FRAMES as u64 + 1);
    }

    /// A subscriber that does not read is cut off at its bound, with nothing half written
    /// when the frames it did take were all written whole.
    #[tokio::test]
    async fn an_attached_outbox_is_cut_off_at_its_bound() {
        let (socket, _peer) = socket_pair().await;
        let outbox = Arc::new(Outbox::new(64 * 1024, Overflow::Close));
        outbox.attach(socket.clone());
        let mut pushed = 0;
        while outbox.push(Bytes::from(vec![b'x'; 1024])) == Pushed::Queued {
            pushed += 1;
            assert!(pushed < 100_000, "the outbox is bounded");
        }
        let held = outbox.lock().bytes;
        assert!(held <= 64 * 1024, "at most the limit queued: {held}");
        assert!(outbox.is_overflowed());
        assert_eq!(outbox.dropped(), 1);
        let end = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            writer(outbox.clone(), socket),
        )
        .await
        .unwrap();
        assert!(end.starts_with("overflowed"), "{end}");
    }

    #[tokio::test]
    async fn the_writer_gets_every_queued_frame_in_order_in_one_batch() {
        let outbox = Outbox::new(100, Overflow::Close);
        for text in ["a", "b", "c"] {
            assert_eq!(outbox.push(frame(text)), Pushed::Queued);
        }
        assert_eq!(
            outbox.next_batch().await,
            Batch::Frames(vec![frame("a"), frame("b"), frame("c")])
        );
        outbox.close();
        assert_eq!(outbox.push(frame("late")), Pushed::Closed);
        assert_eq!(outbox.next_batch().await, Batch::Closed);
    }

    #[tokio::test]
    async fn a_waiting_writer_is_woken_by_a_push() {
        let outbox = std::sync::Arc::new(Outbox::new(100, Overflow::Close));
        let writer = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.next_batch().await }
        });
        tokio::task::yield_now().await;
        outbox.push(frame("hello"));
        let batch = tokio::time::timeout(std::time::Duration::from_secs(5), writer)
            .await
            .expect("the writer was woken")
            .unwrap();
        assert_eq!(batch, Batch::Frames(vec![frame("hello")]));
    }

    /// An empty outbox takes one frame larger than its limit, so no message within the
    /// message size limit is ever undeliverable; the next one must wait for the writer.
    #[tokio::test]
    async fn an_empty_outbox_takes_one_frame_of_any_size() {
        let outbox = Outbox::new(4, Overflow::Close);
        assert_eq!(outbox.try_push(frame("too big for the limit")), Ok(()));
        assert_eq!(outbox.try_push(frame("x")), Err(Refused::Full));
        assert_eq!(
            outbox.next_batch().await,
            Batch::Frames(vec![frame("too big for the limit")])
        );
        assert_eq!(outbox.try_push(frame("x")), Ok(()));
        assert_eq!(outbox.queued(), 2);
        assert_eq!(
            outbox.dropped(),
            0,
            "a refused send is the sender's to count"
        );
    }

    /// Control frames have a little room beyond the limit, but not unbounded room.
    #[tokio::test]
    async fn control_frames_have_bounded_room_beyond_the_limit() {
        let outbox = Outbox::new(4, Overflow::DropMessage);
        assert_eq!(outbox.push(frame("abcd")), Pushed::Queued);
        assert_eq!(outbox.push(frame("e")), Pushed::Dropped);
        assert_eq!(outbox.push_control(frame("close")), Pushed::Queued);
        let flood = Bytes::from(vec![0u8; CONTROL_ROOM]);
        assert_eq!(outbox.push_control(flood), Pushed::Dropped);
        assert_eq!(outbox.queued(), 1, "control frames are not messages");
    }

    #[tokio::test]
    async fn a_full_outbox_cuts_the_connection_off_under_the_close_policy() {
        let outbox = Outbox::new(4, Overflow::Close);
        assert_eq!(outbox.push(frame("abc")), Pushed::Queued);
        assert_eq!(outbox.push(frame("de")), Pushed::Closed);
        assert_eq!(outbox.push(frame("f")), Pushed::Closed);
        assert_eq!(outbox.next_batch().await, Batch::Overflowed);
        assert_eq!(outbox.dropped(), 1);
    }

    #[tokio::test]
    async fn a_full_outbox_drops_the_frame_under_the_drop_policy() {
        let outbox = Outbox::new(4, Overflow::DropMessage);
        assert_eq!(outbox.push(frame("abc")), Pushed::Queued);
        assert_eq!(outbox.push(frame("de")), Pushed::Dropped);
        assert_eq!(outbox.push(frame("f")), Pushed::Queued);
        assert_eq!(
            outbox.next_batch().await,
            Batch::Frames(vec![frame("abc"), frame("f")])
        );
        // The written bytes no longer count against the limit.
        assert_eq!(outbox.push(frame("ghij")), Pushed::Queued);
        assert_eq!(outbox.dropped(), 1);
    }
}
