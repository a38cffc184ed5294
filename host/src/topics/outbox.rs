//! A connection's outbound queue: frames waiting to be written to one socket, bounded in bytes
//! so that a client that reads slower than messages arrive can never grow host memory.
//!
//! Publishing never waits: [`Outbox::push`] queues the frame or, when the queue is full, applies
//! the connection's [`Overflow`] policy at once. A plugin's own `send` uses
//! [`Outbox::try_push`], which refuses instead (the plugin hears `backpressure`), and the
//! framing's control replies (pong, close) use [`Outbox::push_control`], which has a little room
//! of its own beyond the limit so a close can always be queued. The connection's writer task
//! takes everything queued in one go ([`Outbox::next_batch`]), so a burst of publishes becomes
//! one write.
//!
//! An empty outbox takes one frame of any size (message sizes are bounded before a frame is
//! made), so the limit can never make a message undeliverable. What one connection holds is at
//! most the limit (plus that one frame and the control room) queued, plus the batch its writer
//! is writing.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// One connection's bounded queue of frames waiting to be written.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    /// Wakes the writer when frames arrive or the outbox closes.
    ready: Notify,
    /// Most bytes queued at once.
    max_bytes: usize,
    policy: Overflow,
    /// Frames refused because the outbox was full, for metrics and logs.
    dropped: AtomicU64,
    /// Data frames queued since the start, for the connection's log line.
    queued: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<WireFrame>,
    bytes: usize,
    overflowed: bool,
    closed: bool,
}

impl Outbox {
    /// An empty outbox holding at most `max_bytes` of frames.
    pub fn new(max_bytes: usize, policy: Overflow) -> Self {
        Self {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            max_bytes,
            policy,
            dropped: AtomicU64::new(0),
            queued: AtomicU64::new(0),
        }
    }

    /// Queues a data `frame` without waiting; when it does not fit, the outbox's [`Overflow`]
    /// policy decides. For publishes: a publisher is never held up by a subscriber.
    pub fn push(&self, frame: impl Into<WireFrame>) -> Pushed {
        self.push_within(frame.into(), self.max_bytes, true)
    }

    /// Queues a data `frame` if it fits; otherwise refuses it and changes nothing, so the
    /// sender can decide (a plugin's `send` hears `backpressure`).
    pub fn try_push(&self, frame: impl Into<WireFrame>) -> Result<(), Refused> {
        let frame = frame.into();
        let state = self.lock();
        if state.closed || state.overflowed {
            return Err(Refused::Closed);
        }
        if !fits(&state, frame.len(), self.max_bytes) {
            return Err(Refused::Full);
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.enqueue(state, frame);
        Ok(())
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
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return match self.policy {
                Overflow::DropMessage => Pushed::Dropped,
                Overflow::Close => {
                    state.overflowed = true;
                    state.frames.clear();
                    state.bytes = 0;
                    drop(state);
                    self.ready.notify_one();
                    Pushed::Closed
                }
            };
        }
        if data {
            self.queued.fetch_add(1, Ordering::Relaxed);
        }
        self.enqueue(state, frame);
        Pushed::Queued
    }

    fn enqueue(&self, mut state: std::sync::MutexGuard<'_, State>, frame: WireFrame) {
        state.bytes = state.bytes.saturating_add(frame.len());
        state.frames.push_back(frame);
        drop(state);
        self.ready.notify_one();
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
        self.dropped.load(Ordering::Relaxed)
    }

    /// Data frames queued since the outbox was made.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
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

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the queue inconsistent (every update is
        // a single push or drain), so a poisoned lock is used as is.
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// Whether `len` more bytes fit within `limit`: an empty queue takes any one frame.
fn fits(state: &State, len: usize, limit: usize) -> bool {
    state.frames.is_empty() || state.bytes.saturating_add(len) <= limit
}

#[cfg(test)]
mod tests {
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
