//! Managed WebSockets: the host runs the framing (RFC 6455, with tungstenite) and calls the
//! plugin's `events` when something happens; the plugin answers through host functions
//! (`connections`, `topics`).
//!
//! One task per connection ([`run`]) owns the socket: it reads frames, delivers messages to the
//! plugin one at a time, writes what the connection's outbox holds, pings a silent client,
//! closes an idle one, and drops the instance of a connection with no events for a while
//! (hibernation), all with one timer.
//!
//! - `handshake`: the client's opening checked again, the plugin's answer checked, the `101`.
//! - `registry`: connection numbers and each plugin's connections (who may address whom).
//! - `imports`: the host functions behind `connections` and `topics`.
//! - `events`: calling the plugin, and the instance's life (hibernation and wake).
//! - `awake`: the budget of connections holding an instance, and waiting for a slot in it.
//! - `socket`: the socket's halves: tungstenite reads, the outbox writes.
//! - `frames`: the frames the host formats itself (with tungstenite).

pub(crate) mod awake;
mod events;
pub(crate) mod frames;
pub(crate) mod handshake;
pub(crate) mod imports;
pub(crate) mod registry;
mod socket;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::upgrade::OnUpgrade;
use tokio::io::AsyncReadExt as _;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_util::sync::CancellationToken;

use crate::config::PluginLimits;
use crate::engine::bindings::MessageRef;
use crate::http::gauge::GaugeGuard;
use crate::observe::{
    self,
    metrics::{EndReason, PluginMetrics, SessionKind},
};
use crate::plugins::plugin::{LoadedPlugin, PluginInstance};
use crate::session::pump;
use awake::AwakeSlot;
pub(crate) use events::WakeContext;
use events::{EventFailure, Guest};
use registry::{Connection, PluginScope};
use socket::{Framing, ReadSide, Writer, WriterEnd};

/// tungstenite's read buffer per connection. Its default (128 KiB) would be most of a
/// hibernated connection's memory; small messages fit in one read of this size, and a large
/// one is read into a buffer of its own size anyway.
const READ_BUFFER_BYTES: usize = 4096;
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
/// Close codes (RFC 6455 §7.4.1) the host uses.
mod code {
    pub(super) const GOING_AWAY: u16 = 1001;
    pub(super) const PROTOCOL_ERROR: u16 = 1002;
    pub(super) const NO_STATUS: u16 = 1005;
    pub(super) const ABNORMAL: u16 = 1006;
    pub(super) const INVALID_DATA: u16 = 1007;
    pub(super) const POLICY_VIOLATION: u16 = 1008;
    pub(super) const TOO_BIG: u16 = 1009;
}

/// A connection whose `101` is on its way: what the task needs to run it.
pub(crate) struct Accepted {
    /// The version that answered `handle`, whose instance runs `on-open`.
    pub(crate) plugin: Arc<LoadedPlugin>,
    pub(crate) instance: PluginInstance,
    /// The instance's place among the awake connections; without one, the connection
    /// hibernates as soon as `on-open` has run.
    pub(crate) awake_slot: Option<AwakeSlot>,
    /// The connection's place among the open managed WebSockets.
    pub(crate) websocket_slot: GaugeGuard,
    pub(crate) connection: Arc<Connection>,
    pub(crate) scope: Arc<PluginScope>,
}

/// What every connection's task shares.
pub(crate) struct Hooks {
    pub(crate) wake: Arc<WakeContext>,
    /// Cancelled when the drain timeout has passed at shutdown: connections close with 1001.
    pub(crate) shutdown: CancellationToken,
    /// Whether to write an access-log line when a connection ends.
    pub(crate) access_log: bool,
}

/// Who started the close, and with what.
#[derive(Debug, Clone)]
enum Closing {
    /// The client sent a close frame (code, reason); the host replied.
    ByClient(u16, String),
    /// The host or the plugin sent one (code, reason) and waits for the client's reply.
    ByUs {
        code: u16,
        reason: String,
        /// The client's reply, once it came.
        reply: Option<(u16, String)>,
    },
}

/// How the connection ended, for the log and `on-close`.
#[derive(Debug)]
enum End {
    /// A close handshake took place (or was started by us and not answered in time).
    Closed(Closing),
    /// The client went away without a close frame.
    ClientGone(String),
    /// The host failed the connection (`code`, `reason`), e.g. a protocol error.
    Failed { code: u16, reason: String },
    /// The client fell behind past its outbound buffer; `clean` when a close frame can still
    /// be sent (no frame was left half written).
    SlowConsumer { clean: bool },
    /// The plugin failed; no more events.
    PluginFailed(EventFailure),
    /// The `101` was never handed over.
    NotOpened(String),
}

/// Counters for the connection's log line.
struct Traffic {
    opened: Instant,
    messages_in: u64,
    /// Payload bytes of those messages.
    bytes_in: u64,
}

/// Runs one managed connection from the `101` to its end.
pub(crate) async fn run(accepted: Accepted, on_upgrade: OnUpgrade, hooks: Arc<Hooks>) {
    let Accepted {
        plugin,
        instance,
        awake_slot,
        websocket_slot: _websocket_slot,
        connection,
        scope,
    } = accepted;
    let limits = plugin.limits().clone();
    let id = connection.id;
    let mut guest = Guest::new(
        plugin,
        instance,
        awake_slot,
        scope.clone(),
        connection.clone(),
        hooks.wake.clone(),
    );
    let mut traffic = Traffic {
        opened: Instant::now(),
        messages_in: 0,
        bytes_in: 0,
    };
    plugin_metrics_of(&guest).session_started(SessionKind::Managed);
    let end = match open_socket(on_upgrade, &limits, &connection).await {
        Ok((ws, writer)) => {
            let session = Session {
                id,
                connection: &connection,
                limits: &limits,
                guest: &mut guest,
                traffic: &mut traffic,
                shutdown: &hooks.shutdown,
            };
            session.serve(ws, writer).await
        }
        Err(why) => End::NotOpened(why),
    };
    // Out of every topic and unreachable before `on-close`, as the contract says.
    scope.remove(&connection);
    connection.outbox.close();
    let opened = !matches!(end, End::NotOpened(_));
    let (code, reason) = close_status(&end);
    if opened
        && !matches!(end, End::PluginFailed(_))
        && let Err(failure) = guest.on_close(id, code, &reason).await
    {
        tracing::error!("{failure}");
    }
    guest.hibernate();
    log_end(&end, &connection, &traffic, &guest);
    count_end(&end, &connection, &traffic, &guest, hooks.access_log);
}

fn plugin_metrics_of(guest: &Guest) -> &PluginMetrics {
    guest.plugin().metrics()
}

/// Counts the ended connection in its plugin's metrics, and writes its access-log line.
fn count_end(
    end: &End,
    connection: &Connection,
    traffic: &Traffic,
    guest: &Guest,
    access_log: bool,
) {
    let reason = match end {
        End::Closed(Closing::ByClient(..)) => EndReason::Client,
        End::Closed(Closing::ByUs { code, .. }) if *code == code::GOING_AWAY => EndReason::Shutdown,
        End::Closed(Closing::ByUs { .. }) => EndReason::Plugin,
        End::ClientGone(_) => EndReason::ClientGone,
        End::Failed { .. } => EndReason::Failed,
        End::SlowConsumer { .. } => EndReason::Limit,
        End::PluginFailed(EventFailure::Trap { .. }) => EndReason::Trap,
        End::PluginFailed(_) => EndReason::Limit,
        End::NotOpened(_) => EndReason::Timeout,
    };
    let metrics = plugin_metrics_of(guest);
    metrics.session_ended(SessionKind::Managed, reason);
    if reason == EndReason::Trap {
        observe::metrics::add(&metrics.traps, 1);
    }
    let bytes_out = connection.outbox.queued_bytes();
    observe::metrics::add(&metrics.bytes_in, traffic.bytes_in);
    observe::metrics::add(&metrics.bytes_out, bytes_out);
    observe::metrics::add(
        &metrics.cpu_nanos,
        u64::try_from(guest.cpu_spent().as_nanos()).unwrap_or(u64::MAX),
    );
    if access_log {
        let plugin = guest.plugin();
        observe::access_log::session(&observe::access_log::SessionLine {
            plugin: plugin.name(),
            version: plugin.version(),
            kind: SessionKind::Managed,
            duration: traffic.opened.elapsed(),
            bytes_in: traffic.bytes_in,
            bytes_out,
            reason,
        });
    }
}

/// Waits for hyper to hand over the connection (within the handshake timeout), then sets up
/// the framing on it: tungstenite reading, the outbox writing.
async fn open_socket(
    on_upgrade: OnUpgrade,
    limits: &PluginLimits,
    connection: &Connection,
) -> Result<(Ws, Writer), String> {
    let upgraded = match tokio::time::timeout(limits.handshake_timeout, on_upgrade).await {
        Ok(Ok(upgraded)) => upgraded,
        Ok(Err(err)) => return Err(format!("upgrade failed: {err}")),
        Err(_elapsed) => return Err("upgrade handshake timed out".to_owned()),
    };
    let (early, reader, writer) = socket::split(upgraded);
    if let Writer::Direct(socket) = &writer {
        connection.outbox.attach(socket.clone());
    }
    let read_side = ReadSide::new(reader, connection.outbox.clone());
    let ws = Framing::new(read_side, early.to_vec(), ws_config(limits));
    Ok((ws, writer))
}

/// The tungstenite settings for a connection of a plugin with `limits`.
fn ws_config(limits: &PluginLimits) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        // Writes go through the outbox; tungstenite writes only its control frames, at once.
        .write_buffer_size(0)
        .max_message_size(Some(limits.max_message_bytes))
        .max_frame_size(Some(limits.max_message_bytes))
        .accept_unmasked_frames(false)
}

/// The code and reason `on-close` reports: the client's close frame, 1005 if it had no code,
/// 1006 if the client never sent one.
fn close_status(end: &End) -> (u16, String) {
    match end {
        End::Closed(Closing::ByClient(code, reason))
        | End::Closed(Closing::ByUs {
            reply: Some((code, reason)),
            ..
        }) => (*code, reason.clone()),
        _ => (code::ABNORMAL, String::new()),
    }
}

fn log_end(end: &End, connection: &Connection, traffic: &Traffic, guest: &Guest) {
    let duration_ms = traffic.opened.elapsed().as_millis() as u64;
    let messages_in = traffic.messages_in;
    let messages_out = connection.outbox.queued();
    let dropped = connection.outbox.dropped();
    let cpu_ms = guest.cpu_spent().as_millis() as u64;
    macro_rules! closed {
        ($level:ident, $($what:tt)+) => {
            tracing::$level!(duration_ms, messages_in, messages_out, dropped, cpu_ms, $($what)+)
        };
    }
    match end {
        End::Closed(Closing::ByClient(code, reason)) => {
            closed!(
                info,
                code,
                "connection closed by the client ({code} {reason:?})"
            )
        }
        End::Closed(Closing::ByUs {
            code,
            reason,
            reply,
            ..
        }) => {
            let answered = if reply.is_some() {
                "answered"
            } else {
                "not answered in time"
            };
            closed!(
                info,
                code,
                "connection closed by the host or plugin ({code} {reason:?}, {answered})"
            )
        }
        End::ClientGone(why) => closed!(info, "connection closed: client went away ({why})"),
        End::Failed { code, reason } => {
            closed!(
                info,
                code,
                "connection failed by the host ({code} {reason})"
            )
        }
        End::SlowConsumer { .. } => closed!(
            warn,
            code = code::POLICY_VIOLATION,
            "connection cut off: the client fell behind past its outbound buffer (1008)"
        ),
        End::PluginFailed(failure) => {
            closed!(
                error,
                code = failure.code(),
                "connection closed ({}): {failure}",
                failure.code()
            )
        }
        End::NotOpened(why) => closed!(info, "connection never opened: {why}"),
    }
}

type Ws = Framing;

/// One open connection, while its task serves it.
struct Session<'a> {
    id: u64,
    connection: &'a Arc<Connection>,
    limits: &'a PluginLimits,
    guest: &'a mut Guest,
    traffic: &'a mut Traffic,
    shutdown: &'a CancellationToken,
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
    async fn serve(self, mut ws: Ws, writer: Writer) -> End {
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
    ws: &mut Ws,
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
    ws: &mut Ws,
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
    ws: &mut Ws,
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
fn read_failed(ws: &mut Ws, err: WsError) -> Phase {
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
fn fail_plugin(ws: &mut Ws, failure: EventFailure) -> Phase {
    let _ = ws.close(frames::close_payload(failure.code(), failure.reason()));
    Phase::Done(End::PluginFailed(failure))
}

/// Sends a close frame (through tungstenite, so it knows) and waits for the reply.
fn start_close(ws: &mut Ws, code: u16, reason: String) -> Phase {
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
    mut ws: Ws,
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
