//! The host functions a plugin imports for its managed WebSockets (`connections`) and topics
//! (`topics`). Each instance carries a [`RealtimeCtx`] naming its plugin's [`PluginScope`]: the
//! only connections and topics it can reach. Every refusal is a WIT `error` the guest can handle;
//! nothing a guest passes can trap or panic the host.

use std::sync::Arc;

use bytes::Bytes;
use wasmtime::StoreContextMut;
use wasmtime::component::{HasSelf, Linker};

use crate::config::PluginLimits;
use crate::engine::bindings::{
    self, GuestError, Message, MessageRef, MessageView, connections, topics, types,
};
use crate::observe::metrics::{self, PluginMetrics};
use crate::ratelimit::limited_warn;
use crate::session::managed::frames::{self, BorrowedFrame};
use crate::session::managed::registry::{CloseRequest, Connection, Joined, PluginScope};
use crate::topics::{ConnectionId, Refused};

/// What an instance's host functions for connections and topics reach.
#[derive(Default)]
pub(crate) struct RealtimeCtx {
    /// The plugin's scope; `None` for an instance the host only checks (at load), whose
    /// calls then find no connection and publish to nobody.
    scope: Option<Arc<PluginScope>>,
    /// The connection this instance runs the events of, if any: reached without a lookup,
    /// since a plugin mostly answers the connection whose event it is handling.
    own: Option<Arc<Connection>>,
    /// What this instance's version may publish.
    max_message_bytes: usize,
    max_topic_bytes: usize,
    /// The plugin's counters: publishes, deliveries and drops are counted here.
    metrics: Arc<PluginMetrics>,
}

impl RealtimeCtx {
    /// A context for an instance of the plugin owning `scope`, publishing within `limits`.
    pub(crate) fn new(
        scope: Arc<PluginScope>,
        limits: &PluginLimits,
        metrics: Arc<PluginMetrics>,
    ) -> Self {
        Self {
            scope: Some(scope),
            own: None,
            max_message_bytes: limits.max_message_bytes,
            max_topic_bytes: limits.max_topic_bytes,
            metrics,
        }
    }

    /// Makes this instance the one that runs `connection`'s events.
    pub(crate) fn set_own(&mut self, connection: Arc<Connection>) {
        self.own = Some(connection);
    }

    /// Forgets the connection whose events this instance ran, which may close while the
    /// instance waits for another's.
    pub(crate) fn clear_own(&mut self) {
        self.own = None;
    }

    fn connection(&self, id: ConnectionId) -> Result<Arc<Connection>, GuestError> {
        if let Some(own) = self.own.as_ref().filter(|own| own.id == id) {
            // Still open: a closed connection's outbox refuses, so its own instance sees it
            // as unknown like everyone else.
            return Ok(own.clone());
        }
        self.scope
            .as_ref()
            .and_then(|scope| scope.get(id))
            .ok_or(GuestError::UnknownConnection)
    }

    fn scope(&self) -> Result<&PluginScope, GuestError> {
        self.scope.as_deref().ok_or(GuestError::UnknownConnection)
    }
}

/// The WIT interface `send` belongs to, as the linker names it.
const CONNECTIONS_INTERFACE: &str = "switchyard:plugin/connections@0.3.0";

/// Links `connections` and `topics` into `linker`; instances find their context through
/// `get`. `send` is then linked again, replacing the generated one, to take the message
/// straight from the guest's memory (see [`send_from_guest`]).
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut RealtimeCtx,
) -> wasmtime::Result<()> {
    bindings::Plugin::add_to_linker::<T, HasSelf<RealtimeCtx>>(linker, get)?;
    linker.allow_shadowing(true);
    let linked = linker
        .instance(CONNECTIONS_INTERFACE)
        .and_then(|mut connections| {
            connections.func_wrap(
                "send",
                move |mut store: StoreContextMut<'_, T>,
                      (id, message): (ConnectionId, MessageView)| {
                    let connection = match get(store.data_mut()).connection(id) {
                        Ok(connection) => connection,
                        Err(refused) => return Ok((Err(refused),)),
                    };
                    let payload = message.payload(&store)?;
                    Ok((send_from_guest(&connection, payload.message()),))
                },
            )
        });
    linker.allow_shadowing(false);
    linked
}

/// `send`: frames `message` where the guest holds it and writes it to the connection's socket
/// from there when the socket takes it at once; only a payload that must wait is copied into
/// the outbox (and a small one, behind its header). The generated `send` would copy every
/// payload out of the guest first.
fn send_from_guest(connection: &Connection, message: MessageRef<'_>) -> Result<(), GuestError> {
    if message.payload_len() > connection.limits.max_message_bytes {
        return Err(GuestError::TooLarge);
    }
    let pushed = match frames::borrowed_data_frame(message) {
        BorrowedFrame::Whole(frame) => connection.outbox.try_push(frame),
        BorrowedFrame::Split { head, body } => connection.outbox.try_push_borrowed(head, body),
    };
    match pushed {
        Ok(()) => Ok(()),
        Err(Refused::Full) => Err(GuestError::Backpressure),
        // Closing or cut off: it can no longer be sent to.
        Err(Refused::Closed) => Err(GuestError::UnknownConnection),
    }
}

/// Whether `topic` is a name the plugin may use: not empty, not longer than `max` bytes.
fn check_topic(topic: &str, max: usize) -> Result<(), GuestError> {
    if topic.is_empty() || topic.len() > max {
        Err(GuestError::InvalidTopic)
    } else {
        Ok(())
    }
}

impl types::Host for RealtimeCtx {}

impl connections::Host for RealtimeCtx {
    /// Linked over by [`send_from_guest`] (see [`add_to_linker`]); kept for the generated
    /// trait, and equivalent.
    fn send(&mut self, connection: ConnectionId, message: Message) -> Result<(), GuestError> {
        let connection = self.connection(connection)?;
        send_from_guest(&connection, MessageRef::from(&message))
    }

    fn close(
        &mut self,
        connection: ConnectionId,
        code: u16,
        reason: String,
    ) -> Result<(), GuestError> {
        let connection = self.connection(connection)?;
        if connection.outbox.is_closed() {
            return Err(GuestError::UnknownConnection);
        }
        if !frames::is_sendable_close_code(code) {
            return Err(GuestError::InvalidCloseCode);
        }
        if reason.len() > frames::MAX_CLOSE_REASON_BYTES {
            return Err(GuestError::TooLarge);
        }
        connection.ask_close(CloseRequest { code, reason });
        Ok(())
    }

    fn attachment(&mut self, connection: ConnectionId) -> Result<Vec<u8>, GuestError> {
        Ok(self.connection(connection)?.attachment().to_vec())
    }

    fn set_attachment(
        &mut self,
        connection: ConnectionId,
        attachment: Vec<u8>,
    ) -> Result<(), GuestError> {
        let connection = self.connection(connection)?;
        if attachment.len() > connection.limits.max_attachment_bytes {
            return Err(GuestError::TooLarge);
        }
        connection.set_attachment(Bytes::from(attachment));
        Ok(())
    }

    fn subscribe(&mut self, connection: ConnectionId, topic: String) -> Result<(), GuestError> {
        let connection = self.connection(connection)?;
        check_topic(&topic, connection.limits.max_topic_bytes)?;
        match self.scope()?.subscribe(&connection, &topic) {
            Ok(()) => Ok(()),
            Err(Joined::TooMany) => Err(GuestError::TooManyTopics),
            Err(Joined::Closed) => Err(GuestError::UnknownConnection),
        }
    }

    fn unsubscribe(&mut self, connection: ConnectionId, topic: String) -> Result<(), GuestError> {
        let connection = self.connection(connection)?;
        check_topic(&topic, connection.limits.max_topic_bytes)?;
        self.scope()?.unsubscribe(&connection, &topic);
        Ok(())
    }
}

impl topics::Host for RealtimeCtx {
    fn publish(&mut self, topic: String, message: Message) -> Result<(), GuestError> {
        check_topic(&topic, self.max_topic_bytes)?;
        if MessageRef::from(&message).payload_len() > self.max_message_bytes {
            return Err(GuestError::TooLarge);
        }
        let Some(scope) = &self.scope else {
            return Ok(());
        };
        // Framed once; every subscriber's outbox shares these bytes.
        let delivery = scope.publish(&topic, frames::data_frame(message));
        metrics::add(&self.metrics.topic_publishes, 1);
        metrics::add(&self.metrics.topic_deliveries, delivery.queued as u64);
        metrics::add(&self.metrics.topic_drops, delivery.dropped as u64);
        if delivery.dropped > 0 {
            limited_warn!(
                scope.overflow_log,
                "publish to topic {topic:?}: dropped for {} subscriber(s) whose outbound buffer is full",
                delivery.dropped
            );
        }
        Ok(())
    }
}
