//! An upgraded session: once hyper has switched the connection, the client's bytes are piped
//! into the `upgrade` export of the same instance that answered `handle`, and its output back to
//! the client, until one of the ends in [`SessionEnd`] — each logged with its reason.

pub(crate) mod managed;
pub(crate) mod pump;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::upgrade::OnUpgrade;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wasmtime::component::StreamReader;

use crate::config::PluginLimits;
use crate::engine::bindings;
use crate::engine::cpu::{CpuExceeded, Metered, SessionCpu};
use crate::http::admission::SessionPermit;
use crate::observe::access_log;
use crate::observe::metrics::{self, EndReason, SessionKind};
use crate::plugins::plugin::{LoadedPlugin, PluginInstance};
use pump::{Activity, ClientBytes, ClientSink, EndInput, OutputEnd};

/// After shutdown ends a session's input, how long the plugin has to say goodbye (a WebSocket
/// close frame) before the connection is dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// How the server keeps track of sessions: to wait for them, and to end them at shutdown.
#[derive(Clone, Default)]
pub(crate) struct SessionHooks {
    /// Every session task, so shutdown can wait for them to finish.
    pub(crate) tracker: TaskTracker,
    /// Cancelled when the drain timeout has passed: live sessions are then closed.
    pub(crate) shutdown: CancellationToken,
}

impl SessionHooks {
    /// Runs `session` on its own task, tracked.
    pub(crate) fn spawn(&self, session: impl Future<Output = ()> + Send + 'static) {
        self.tracker.spawn(session);
    }
}

/// What a session needs besides its instance.
pub(crate) struct SessionContext {
    /// The plugin version that accepted the upgrade; held so it outlives a reload.
    pub(crate) plugin: Arc<LoadedPlugin>,
    /// The session's slot; freed when the session ends.
    pub(crate) _permit: SessionPermit,
    /// Cancelled when the host shuts down and the drain timeout has passed.
    pub(crate) shutdown: CancellationToken,
    /// Whether to write an access-log line when the session ends.
    pub(crate) access_log: bool,
}

/// Why a session ended.
#[derive(Debug)]
enum SessionEnd {
    /// The plugin dropped its output stream on its own.
    GuestFinished,
    /// The client closed its side, and the plugin then finished.
    ClientClosed,
    /// Writing to the client failed: it reset the connection or vanished.
    ClientGone,
    /// The connection was never handed over in time.
    HandshakeTimeout,
    /// No bytes either way for the idle timeout.
    Idle(Duration),
    /// The session reached its maximum length.
    MaxDuration(Duration),
    /// The guest used up a CPU budget and was interrupted.
    Cpu(CpuExceeded),
    /// The guest asked for more memory than its limit, then trapped.
    Memory,
    /// The guest trapped.
    Trap(anyhow::Error),
    /// The host shut down.
    Shutdown,
}

impl SessionEnd {
    /// The metric label of this end.
    fn reason(&self) -> EndReason {
        match self {
            Self::GuestFinished => EndReason::Plugin,
            Self::ClientClosed => EndReason::Client,
            Self::ClientGone => EndReason::ClientGone,
            Self::HandshakeTimeout | Self::Idle(_) | Self::MaxDuration(_) => EndReason::Timeout,
            Self::Cpu(_) | Self::Memory => EndReason::Limit,
            Self::Trap(_) => EndReason::Trap,
            Self::Shutdown => EndReason::Shutdown,
        }
    }
}

impl std::fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::GuestFinished => f.write_str("plugin closed it"),
            Self::ClientClosed => f.write_str("client closed it"),
            Self::ClientGone => f.write_str("client went away"),
            Self::HandshakeTimeout => f.write_str("upgrade handshake timed out"),
            Self::Idle(after) => write!(f, "idle for {after:?}"),
            Self::MaxDuration(after) => write!(f, "reached its maximum length of {after:?}"),
            Self::Cpu(CpuExceeded::SessionBudget) => f.write_str("CPU budget used up"),
            Self::Cpu(CpuExceeded::RunLimit) => {
                f.write_str("CPU limit per wake-up exceeded (plugin stuck in a loop?)")
            }
            Self::Memory => f.write_str("memory limit reached"),
            Self::Trap(trap) => write!(f, "plugin trapped in upgrade: {trap:#}"),
            Self::Shutdown => f.write_str("host shutting down"),
        }
    }
}

/// Waits for hyper to hand over the connection, then runs the guest's session to its end.
pub(crate) async fn run(
    mut instance: PluginInstance,
    request: bindings::Request,
    on_upgrade: OnUpgrade,
    context: SessionContext,
) {
    let plugin = &context.plugin;
    let limits = plugin.limits().clone();
    let started = Instant::now();
    let cpu = Arc::new(SessionCpu::new(
        limits.session_cpu_budget,
        limits.run_cpu_limit,
    ));
    plugin.metrics().session_started(SessionKind::Raw);
    let activity = Arc::new(Activity::new());
    let end = match tokio::time::timeout(limits.handshake_timeout, on_upgrade).await {
        Ok(Ok(upgraded)) => {
            let (early, reader, writer) = pump::split(upgraded);
            let io = SessionIo {
                early,
                reader,
                writer,
                activity: activity.clone(),
            };
            drive(&mut instance, request, io, &limits, &cpu, &context.shutdown).await
        }
        Ok(Err(err)) => {
            tracing::debug!("upgrade failed: {err}");
            SessionEnd::ClientGone
        }
        Err(_elapsed) => SessionEnd::HandshakeTimeout,
    };
    let cpu_ms = cpu.spent().as_millis() as u64;
    let duration = started.elapsed();
    let duration_ms = duration.as_millis() as u64;
    let (bytes_in, bytes_out) = activity.bytes();
    let metrics = plugin.metrics();
    metrics.session_ended(SessionKind::Raw, end.reason());
    if matches!(end, SessionEnd::Trap(_)) {
        metrics::add(&metrics.traps, 1);
    }
    metrics::add(&metrics.bytes_in, bytes_in);
    metrics::add(&metrics.bytes_out, bytes_out);
    metrics::add(
        &metrics.cpu_nanos,
        u64::try_from(cpu.spent().as_nanos()).unwrap_or(u64::MAX),
    );
    if context.access_log {
        access_log::session(&access_log::SessionLine {
            plugin: plugin.name(),
            version: plugin.version(),
            kind: SessionKind::Raw,
            duration,
            bytes_in,
            bytes_out,
            reason: end.reason(),
        });
    }
    match &end {
        SessionEnd::GuestFinished
        | SessionEnd::ClientClosed
        | SessionEnd::ClientGone
        | SessionEnd::Shutdown => {
            tracing::info!(duration_ms, cpu_ms, "session ended: {end}")
        }
        SessionEnd::HandshakeTimeout | SessionEnd::Idle(_) | SessionEnd::MaxDuration(_) => {
            tracing::warn!(duration_ms, cpu_ms, "session ended: {end}")
        }
        SessionEnd::Cpu(_) | SessionEnd::Memory | SessionEnd::Trap(_) => {
            tracing::error!(duration_ms, cpu_ms, "session ended: {end}")
        }
    }
    // Dropping the instance here frees its pool slot and closes the connection; dropping the
    // context frees the session slot.
}

/// The connection's halves and what the pump records about them.
struct SessionIo {
    early: bytes::Bytes,
    reader: pump::ClientReader,
    writer: pump::ClientWriter,
    activity: Arc<Activity>,
}

/// Calls `upgrade` with the client's bytes and pipes its output to the client until the
/// session ends one way or another.
async fn drive(
    instance: &mut PluginInstance,
    request: bindings::Request,
    io: SessionIo,
    limits: &PluginLimits,
    cpu: &Arc<SessionCpu>,
    shutdown: &CancellationToken,
) -> SessionEnd {
    // Dispatch hands only a `raw-plugin`'s upgrades to a session; any other answered `500`.
    let Some(exports) = instance.raw_upgrade.clone() else {
        return SessionEnd::Trap(anyhow::anyhow!(
            "the plugin does not export raw-upgrade, so it cannot run an upgraded session"
        ));
    };
    instance.store.data_mut().cpu.start_session(cpu.clone());
    let end_input = Arc::new(EndInput::default());
    let session = instance
        .store
        .run_concurrent(async |accessor| -> anyhow::Result<SessionEnd> {
            let (input_done_tx, mut input_done_rx) = oneshot::channel();
            let producer = ClientBytes::new(
                io.early,
                io.reader,
                io.activity.clone(),
                end_input.clone(),
                input_done_tx,
            );
            let input = accessor.with(|mut store| StreamReader::new(&mut store, producer))?;
            let output = exports.call_upgrade(accessor, request, input).await?;
            let (ended_tx, mut ended_rx) = oneshot::channel();
            let sink = ClientSink::new(io.writer, io.activity.clone(), ended_tx);
            accessor.with(|mut store| output.pipe(&mut store, sink))?;
            // The guest's session keeps running inside `run_concurrent` while this waits.
            Ok(tokio::select! {
                // Cancel safety: a oneshot receiver polled again loses nothing.
                ended = output_then_input(&mut ended_rx, &mut input_done_rx) => output_end(ended, &io.activity),
                end = watch_time_limits(&io.activity, limits) => end,
                () = shutdown.cancelled() => {
                    // End the guest's input so it can finish politely (the SDK's WebSocket
                    // sends a 1001 close), then stop waiting after a grace period.
                    end_input.request();
                    let _ = tokio::time::timeout(SHUTDOWN_GRACE, ended_rx).await;
                    SessionEnd::Shutdown
                }
            })
        });
    // Every poll of the session is CPU time spent on it: the guest runs inside these polls.
    let outcome = Metered::new(session, cpu.clone())
        .await
        .map_err(anyhow::Error::from)
        .and_then(|inner| inner);
    match outcome {
        Ok(end) => end,
        Err(trap) => {
            let state = instance.store.data();
            if let Some(exceeded) = state.cpu.exceeded() {
                SessionEnd::Cpu(exceeded)
            } else if state.memory.refused {
                SessionEnd::Memory
            } else {
                SessionEnd::Trap(trap)
            }
        }
    }
}

/// Waits for the guest's output to end. A guest that closes its output while still holding its
/// input has half-closed the connection (the client got a FIN and may go on sending): the
/// session then lasts until the input is finished too, as with TCP.
async fn output_then_input(
    output_ended: &mut oneshot::Receiver<OutputEnd>,
    input_done: &mut oneshot::Receiver<()>,
) -> Result<OutputEnd, oneshot::error::RecvError> {
    let ended = output_ended.await;
    if matches!(ended, Ok(OutputEnd::GuestClosed)) {
        let _ = input_done.await;
    }
    ended
}

/// Names how the output stream ended.
fn output_end(
    ended: Result<OutputEnd, oneshot::error::RecvError>,
    activity: &Activity,
) -> SessionEnd {
    match ended {
        Ok(OutputEnd::ClientGone) => SessionEnd::ClientGone,
        Ok(OutputEnd::GuestClosed) | Err(_) if activity.client_closed() => SessionEnd::ClientClosed,
        Ok(OutputEnd::GuestClosed) | Err(_) => SessionEnd::GuestFinished,
    }
}

/// Resolves when the session has been idle for too long or has lasted too long.
async fn watch_time_limits(activity: &Activity, limits: &PluginLimits) -> SessionEnd {
    let max_duration = async {
        match limits.max_session_duration {
            Some(max) => {
                tokio::time::sleep(max).await;
                SessionEnd::MaxDuration(max)
            }
            None => std::future::pending().await,
        }
    };
    let idle = async {
        loop {
            // An idle timeout too large to add to a clock reading never comes.
            let Some(idle_until) = activity.last_active().checked_add(limits.idle_timeout) else {
                return std::future::pending().await;
            };
            if Instant::now() >= idle_until {
                return SessionEnd::Idle(limits.idle_timeout);
            }
            tokio::time::sleep_until(idle_until.into()).await;
        }
    };
    tokio::select! {
        end = max_duration => end,
        end = idle => end,
    }
}
