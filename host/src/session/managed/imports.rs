//! The host functions a plugin imports for its managed WebSockets (`connections`) and topics
//! (`topics`). Each instance carries a [`RealtimeCtx`] naming its plugin's [`PluginScope`]: the
//! only connections and topics it can reach. Every refusal is a WIT `error` the guest can handle;
//! nothing a guest passes can trap or panic the host.

use std::sync::Arc;

use bytes::Bytes;
use wasmtime::component::{HasSelf, Linker};

use crate::config::PluginLimits;
use crate::engine::bindings::{self, GuestError, Message, connections, topics, types};
use crate::observe::metrics::{self, PluginMetrics};
use crate::ratelimit::limited_warn;
use crate::session::managed::frames;
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

/// Links `connections` and `topics` into `linker`; instances find their context through
/// `get`.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut RealtimeCtx,
) -> wasmtime::Result<()> {
    bindings::Plugin::add_to_linker::<T, HasSelf<RealtimeCtx>>(linker, get)
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
    fn send(&mut self, connection: ConnectionId, message: Message) -> Result<(), GuestError> {
        let connection = self.connection(connection)?;
        if frames::payload_len(&message) > connection.limits.max_message_bytes {
            return Err(GuestError::TooLarge);
        }
        match connection.outbox.try_push(frames::data_frame(message)) {
            Ok(()) => Ok(()),
            Err(Refused::Full) => Err(GuestError::Backpressure),
            // Closing or cut off: it can no longer be sent to.
            Err(Refused::Closed) => Err(GuestError::UnknownConnection),
        }
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
        if frames::payload_len(&message) > self.max_message_bytes {
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
