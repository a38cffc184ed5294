//! How a managed connection ended: the code and reason `on-close` gets, the connection's last
//! log line, and what is added to its plugin's metrics and the access log.

use std::time::Instant;

use crate::observe::{
    self,
    metrics::{EndReason, PluginMetrics, SessionKind},
};

use super::code;
use super::events::{EventFailure, Guest};
use super::registry::Connection;

/// Who started the close, and with what.
#[derive(Debug, Clone)]
pub(super) enum Closing {
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
pub(super) enum End {
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
pub(super) struct Traffic {
    pub(super) opened: Instant,
    pub(super) messages_in: u64,
    /// Payload bytes of those messages.
    pub(super) bytes_in: u64,
}

/// The code and reason `on-close` reports: the client's close frame, 1005 if it had no code,
/// 1006 if the client never sent one.
pub(super) fn close_status(end: &End) -> (u16, String) {
    match end {
        End::Closed(Closing::ByClient(code, reason))
        | End::Closed(Closing::ByUs {
            reply: Some((code, reason)),
            ..
        }) => (*code, reason.clone()),
        _ => (code::ABNORMAL, String::new()),
    }
}

pub(super) fn log_end(end: &End, connection: &Connection, traffic: &Traffic, guest: &Guest) {
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

pub(super) fn plugin_metrics_of(guest: &Guest) -> &PluginMetrics {
    guest.plugin().metrics()
}

/// Counts the ended connection in its plugin's metrics, and writes its access-log line.
pub(super) fn count_end(
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
