//! The life of one open managed connection: the loop that reads frames and hands messages to
//! the plugin, writes the outbox, answers the close handshake, pings a silent client, closes an
//! idle one and hibernates the instance between events, all with one timer; then the last
//! flush.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt as _;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_util::sync::CancellationToken;

use crate::config::PluginLimits;
use crate::engine::bindings::MessageRef;
use crate::session::pump;

use super::code;
use super::end::{Closing, End, Traffic};
use super::events::{EventFailure, Guest};
use super::frames;
use super::registry::Connection;
use super::socket::{self, Framing, Writer, WriterEnd};

/// How long the client has to answer the host's close frame before the socket is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long what is still queued may take to be written once the connection ends.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);
/// After the host failed the connection (a protocol error, an oversized message), how long it
/// goes on reading and discarding what the client is still sending, so the kernel does not
/// answer those bytes with a reset that could destroy the close frame before the client read
/// it.
const LINGER: Duration = Duration::from_secs(1);
/// How many reads in a row the connection's task makes, while the socket stays readable,
/// before it looks at its other wake-ups (its writer's end, shutdown, a nudge, its timer) first
/// once. Bounds how long a client that keeps the socket readable delays them: at most this many
/// messages.
const READS_BEFORE_CHECKING: u32 = 16;

/// One open connection, while its task serves it.
pub(super) struct Session<'a> {
    pub(super) id: u64,
    pub(super) connection: &'a Arc<Connection>,
    pub(super) limits: &'a PluginLimits,
    pub(super) guest: &'a mut Guest,
    pub(super) traffic: &'a mut Traffic,
    pub(super) shutdown: &'a CancellationToken,
}

/// What the loop is doing.
enum Phase {
    /// Messages are delivered to the plugin.
    Open,
    /// A close was sent or received; waiting for the handshake to finish until `deadline`.
    Closing { how: Closing, deadline: Instant },
    /// Over.
    Done(End),
}

impl Phase {
    fn closing(how: Closing) -> Self {
        Self::Closing {
            how,
            deadline: Instant::now() + CLOSE_TIMEOUT,
        }
    }
}

/// The clock readings the one timer is computed from.
struct Clock {
    /// When the plugin last got an event.
    last_event: Instant,
    /// When anything last arrived from the client.
    last_received: Instant,
    /// Whether a ping went out since then.
    pinged: bool,
}

impl Session<'_> {
    /// Opens the connection (`on-open`), then serves it until it ends.
    pub(super) async fn serve(self, mut ws: Framing, writer: Writer) -> End {
        let Session {
            id,
            connection,
            limits,
            guest,
            traffic,
            shutdown,
        } = self;
        let outbox = connection.outbox.clone();
        let writing = async move {
            let mut writer = writer;
            let end = socket::write_outbox(&mut writer, &outbox).await;
            (end, writer)
        };
        tokio::pin!(writing);
        let mut written: Option<(WriterEnd, Writer)> = None;
        // Registered once and kept: a cancelled token and a notified `Notify` stay ready.
        let stopping = shutdown.cancelled();
        tokio::pin!(stopping);
        let nudged = connection.nudge.notified();
        tokio::pin!(nudged);
        let now = Instant::now();
        let mut clock = Clock {
            last_event: now,
            last_received: now,
            pinged: false,
        };
        tracing::debug!(version = %guest.version(), "connection open");
        let mut phase = match guest.on_open(id).await {
            Ok(()) => Phase::Open,
            Err(failure) => fail_plugin(&mut ws, failure),
        };
        hibernate_if_wanted(guest);
        let timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(timer);
        let mut armed = None;
        let mut reads_in_a_row = 0u32;
        loop {
            if let Phase::Open = phase
                && let Some(request) = connection.take_close()
            {
                phase = start_close(&mut ws, request.code, request.reason);
            }
            if let Phase::Done(_) = phase {
                break;
            }
            let due = next_deadline(&phase, &clock, guest, limits);
            if armed.is_none_or(|at| due < at) {
                timer.as_mut().reset(due.into());
                armed = Some(due);
            }
            let open = matches!(phase, Phase::Open);
            let read_first = reads_in_a_row < READS_BEFORE_CHECKING;
            tokio::select! {
                biased;
                // Read first: a wake-up is nearly always the client's bytes, and each branch
                // polled before this one (the writer, the shutdown token, the nudge: a lock
                // each) would be polled in vain once per message. Every
                // `READS_BEFORE_CHECKING` reads in a row, the others go first, so a client that
                // keeps the socket readable cannot keep the host from seeing them.
                // Cancel safety: tungstenite keeps partial frames in its buffer.
                received = ws.next(), if read_first => {
                    reads_in_a_row += 1;
                    let now = Instant::now();
                    clock.last_received = now;
                    clock.pinged = false;
                    phase = match phase {
                        Phase::Open => on_received(received, &mut ws, guest, id, traffic, &mut clock, now).await,
                        Phase::Closing { how, deadline } => closing_received(received, how, deadline, &mut ws),
                        done @ Phase::Done(_) => done,
                    };
                }
                // Cancel safety: the writing future lives outside the loop and is never
                // dropped early; once finished it is not polled again.
                (end, writer) = &mut writing, if written.is_none() => {
                    reads_in_a_row = 0;
                    phase = writer_stopped(&end, phase);
                    written = Some((end, writer));
                }
                // Cancel safety: both futures live outside the loop.
                () = &mut stopping, if open => {
                    reads_in_a_row = 0;
                    phase = start_close(&mut ws, code::GOING_AWAY, "server shutting down".into());
                }
                // A close was asked for (taken at the top of the loop), or others wait for
                // an awake slot.
                () = &mut nudged, if open => {
                    reads_in_a_row = 0;
                    nudged.set(connection.nudge.notified());
                    hibernate_if_wanted(guest);
                }
                () = &mut timer => {
                    reads_in_a_row = 0;
                    armed = None;
                    phase = on_timer(phase, &mut ws, guest, limits, &mut clock);
                }
                // The others were checked and none is ready: reading resumes (the socket's
                // bytes may be in tungstenite's buffer already, which no wake-up announces).
                () = std::future::ready(()), if !read_first => reads_in_a_row = 0,
            }
        }
        let Phase::Done(end) = phase else {
            unreachable!("the loop ends only when done")
        };
        // Boxed: it runs once, at the end, and inline its state would make every connection's
        // task larger for its whole life.
        Box::pin(finish(end, ws, written, writing, connection)).await
    }
}

/// Hibernates an awake connection between events if its instance holds no awake slot or
/// other connections wait for one.
fn hibernate_if_wanted(guest: &mut Guest) {
    if guest.should_hibernate_early() {
        guest.hibernate();
        tracing::debug!("hibernating early: the awake slots are all taken");
    }
}

/// When the one timer must next fire: the earliest of hibernation (while awake), the ping and
/// the idle timeout (while open), and the close deadline (while closing).
fn next_deadline(phase: &Phase, clock: &Clock, guest: &Guest, limits: &PluginLimits) -> Instant {
    let after = |from: Instant, wait: Duration| {
        from.checked_add(wait)
            .unwrap_or_else(|| from + Duration::from_secs(86_400))
    };
    match phase {
        Phase::Open => {
            let mut due = after(clock.last_received, limits.websocket_idle_timeout);
            if !clock.pinged {
                due = due.min(after(clock.last_received, limits.ping_interval));
            }
            if guest.is_awake() {
                due = due.min(after(clock.last_event, limits.hibernate_after));
            }
            due
        }
        Phase::Closing { deadline, .. } => *deadline,
        Phase::Done(_) => after(clock.last_received, Duration::from_secs(86_400)),
    }
}

/// The timer fired: hibernate, ping, close an idle connection or give up waiting for a close
/// reply, whichever is due (nothing may be: the timer is not moved for every message).
fn on_timer(
    phase: Phase,
    ws: &mut Framing,
    guest: &mut Guest,
    limits: &PluginLimits,
    clock: &mut Clock,
) -> Phase {
    let now = Instant::now();
    match phase {
        Phase::Open => {
            if guest.is_awake() && now >= clock.last_event + limits.hibernate_after {
                guest.hibernate();
                tracing::debug!("hibernating: no events for {:?}", limits.hibernate_after);
            }
            if now >= clock.last_received + limits.websocket_idle_timeout {
                let idle = format!("idle for {:?}", limits.websocket_idle_timeout);
                return start_close(ws, code::GOING_AWAY, idle);
            }
            if !clock.pinged && now >= clock.last_received + limits.ping_interval {
                clock.pinged = true;
                // Through tungstenite, so its state knows; the frame lands in the outbox.
                let _ = ws.ping();
            }
            Phase::Open
        }
        Phase::Closing { how, deadline } if now >= deadline => Phase::Done(End::Closed(how)),
        waiting => waiting,
    }
}

/// Something arrived while the connection is open.
async fn on_received(
    received: Option<Result<WsMessage, WsError>>,
    ws: &mut Framing,
    guest: &mut Guest,
    id: u64,
    traffic: &mut Traffic,
    clock: &mut Clock,
    now: Instant,
) -> Phase {
    let message = match received {
        Some(Ok(message @ (WsMessage::Text(_) | WsMessage::Binary(_)))) => message,
        // tungstenite has queued the pong; it goes out with its next read.
        Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_))) => {
            return Phase::Open;
        }
        Some(Ok(WsMessage::Close(frame))) => {
            // tungstenite has queued its reply; the next read sends it and ends the stream.
            let (code, reason) = close_of(frame);
            return Phase::closing(Closing::ByClient(code, reason));
        }
        Some(Err(err)) => return read_failed(ws, err),
        None => return Phase::Done(End::ClientGone("connection ended".to_owned())),
    };
    // Lent to the plugin straight from the framing's buffer.
    let lent = match &message {
        WsMessage::Text(text) => MessageRef::Text(text.as_str()),
        WsMessage::Binary(bytes) => MessageRef::Binary(bytes),
        _ => return Phase::Open,
    };
    traffic.messages_in += 1;
    traffic.bytes_in += lent.payload_len() as u64;
    clock.last_event = now;
    match guest.on_message(id, lent).await {
        Ok(()) => {
            hibernate_if_wanted(guest);
            Phase::Open
        }
        Err(failure) => fail_plugin(ws, failure),
    }
}
/// Something arrived while closing: data is discarded (no event but `on-close` follows a
/// close), the client's close frame answers ours, and the end of the stream ends the wait.
fn closing_received(
    received: Option<Result<WsMessage, WsError>>,
    how: Closing,
    deadline: Instant,
    ws: &mut Framing,
) -> Phase {
    match (received, how) {
        (Some(Ok(WsMessage::Close(frame))), Closing::ByUs { code, reason, .. }) => Phase::Closing {
            how: Closing::ByUs {
                code,
                reason,
                reply: Some(close_of(frame)),
            },
            deadline,
        },
        (Some(Ok(_)), how) => Phase::Closing { how, deadline },
        (Some(Err(err)), Closing::ByUs { reply: None, .. }) => read_failed(ws, err),
        (Some(Err(_)) | None, how) => Phase::Done(End::Closed(how)),
    }
}

/// The code and reason of a close frame; 1005 for one without a code.
fn close_of(frame: Option<tungstenite::protocol::CloseFrame>) -> (u16, String) {
    frame.map_or((code::NO_STATUS, String::new()), |frame| {
        (u16::from(frame.code), frame.reason.as_str().to_owned())
    })
}

/// A read error: the client broke the protocol (closed with the matching code), or it is gone.
fn read_failed(ws: &mut Framing, err: WsError) -> Phase {
    // tungstenite's pong (or close reply) did not fit: the client reads too slowly. The
    // writer may be half-way through a frame, so no close frame follows.
    if ws.get_ref().outbox().is_overflowed() {
        return Phase::Done(End::SlowConsumer { clean: false });
    }
    let (code, reason) = match &err {
        WsError::Utf8(_) => (
            code::INVALID_DATA,
            "invalid UTF-8 in a text message".to_owned(),
        ),
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => (
            code::TOO_BIG,
            format!("message of {size} bytes, more than the {max_size} allowed"),
        ),
        WsError::Capacity(other) => (code::TOO_BIG, other.to_string()),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)
        | WsError::Io(_)
        | WsError::ConnectionClosed
        | WsError::AlreadyClosed => {
            return Phase::Done(End::ClientGone(err.to_string()));
        }
        WsError::Protocol(protocol) => {
            (code::PROTOCOL_ERROR, format!("protocol error: {protocol}"))
        }
        other => (code::PROTOCOL_ERROR, other.to_string()),
    };
    // tungstenite will not be read or written again: the close frame goes straight into the
    // outbox, as the last frame.
    ws.get_mut()
        .outbox()
        .push_final(frames::close_frame(code, &reason));
    Phase::Done(End::Failed { code, reason })
}

/// The plugin failed: the connection is closed with the failure's code, and no event follows.
fn fail_plugin(ws: &mut Framing, failure: EventFailure) -> Phase {
    let _ = ws.close(frames::close_payload(failure.code(), failure.reason()));
    Phase::Done(End::PluginFailed(failure))
}

/// Sends a close frame (through tungstenite, so it knows) and waits for the reply.
fn start_close(ws: &mut Framing, code: u16, reason: String) -> Phase {
    let _ = ws.close(frames::close_payload(code, &reason));
    Phase::closing(Closing::ByUs {
        code,
        reason,
        reply: None,
    })
}

/// The writer stopped: after the close frame was written (the close handshake goes on), or
/// because the client fell behind or went away.
fn writer_stopped(end: &WriterEnd, phase: Phase) -> Phase {
    match (end, phase) {
        (WriterEnd::Drained, closing @ (Phase::Closing { .. } | Phase::Done(_))) => closing,
        (WriterEnd::Drained, Phase::Open) => {
            Phase::Done(End::ClientGone("connection ended".to_owned()))
        }
        (WriterEnd::Overflowed { clean }, _) => Phase::Done(End::SlowConsumer { clean: *clean }),
        (WriterEnd::Failed(err), _) => Phase::Done(End::ClientGone(format!("write failed: {err}"))),
    }
}

/// Ends the connection: what is queued is written (within a bounded time), a client cut off
/// for falling behind gets its close frame directly, and after a failure the client's last
/// bytes are read and discarded for a moment before the socket is dropped.
async fn finish(
    end: End,
    mut ws: Framing,
    written: Option<(WriterEnd, Writer)>,
    writing: std::pin::Pin<&mut impl std::future::Future<Output = (WriterEnd, Writer)>>,
    connection: &Connection,
) -> End {
    connection.outbox.close();
    let writer = match written {
        Some((_, writer)) => Some(writer),
        None => tokio::time::timeout(FLUSH_TIMEOUT, writing)
            .await
            .ok()
            .map(|(_, writer)| writer),
    };
    // A writer that did not finish in time must not leave the socket open through the outbox.
    connection.outbox.detach();
    if let (End::SlowConsumer { clean: true }, Some(mut writer)) = (&end, writer) {
        let mut close = std::collections::VecDeque::from([frames::close_frame(
            code::POLICY_VIOLATION,
            "client too slow",
        )
        .into()]);
        let _ =
            tokio::time::timeout(FLUSH_TIMEOUT, socket::write_all(&mut writer, &mut close)).await;
    }
    if matches!(end, End::Failed { .. }) {
        linger(ws.get_mut().reader()).await;
    }
    end
}

/// Reads and discards what the client still sends, for at most [`LINGER`].
async fn linger(reader: &mut pump::ClientReader) {
    // On the heap: an array here would be part of every connection's task, for its whole life.
    let mut discard = vec![0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(read) = reader.read(&mut discard).await {
            if read == 0 {
                break;
            }
        }
    })
    .await;
}
