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
//! - `serve`: one open connection's loop, from `on-open` to the last flush.
//! - `end`: how a connection ended: `on-close`'s code, the log line, the metrics.
//! - `events`: calling the plugin, and the instance's life (hibernation and wake).
//! - `awake`: the budget of connections holding an instance, and waiting for a slot in it.
//! - `socket`: the socket's halves: tungstenite reads, the outbox writes.
//! - `frames`: the frames the host formats itself (with tungstenite).

pub(crate) mod awake;
mod end;
mod events;
pub(crate) mod frames;
pub(crate) mod handshake;
pub(crate) mod imports;
pub(crate) mod registry;
mod serve;
mod socket;

use std::sync::Arc;
use std::time::Instant;

use hyper::upgrade::OnUpgrade;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use crate::config::PluginLimits;
use crate::http::gauge::GaugeGuard;
use crate::observe::metrics::SessionKind;
use crate::plugins::plugin::{LoadedPlugin, PluginInstance};
use awake::AwakeSlot;
use end::{End, Traffic, close_status, count_end, log_end, plugin_metrics_of};
use events::Guest;
pub(crate) use events::WakeContext;
use registry::{Connection, PluginScope};
use serve::Session;
use socket::{Framing, ReadSide, Writer};

/// tungstenite's read buffer per connection. Its default (128 KiB) would be most of a
/// hibernated connection's memory; small messages fit in one read of this size, and a large
/// one is read into a buffer of its own size anyway.
const READ_BUFFER_BYTES: usize = 4096;
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

/// Waits for hyper to hand over the connection (within the handshake timeout), then sets up
/// the framing on it: tungstenite reading, the outbox writing.
async fn open_socket(
    on_upgrade: OnUpgrade,
    limits: &PluginLimits,
    connection: &Connection,
) -> Result<(Framing, Writer), String> {
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
