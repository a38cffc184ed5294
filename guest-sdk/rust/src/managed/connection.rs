//! [`Connection`]: a managed WebSocket connection, as events name it.

use crate::bindings::switchyard::plugin::connections;
use crate::managed::{Error, Message};

/// A managed WebSocket connection of this plugin.
///
/// It is only a number: copying it is free, and every call goes to the host, which keeps the
/// connection (its socket, attachment and topics) whether or not an instance is alive. Calls on
/// a connection that has closed return [`Error::UnknownConnection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Connection {
    id: u64,
}

impl Connection {
    /// The connection numbered `id` by the host (as [`Connection::id`] returns it).
    pub fn from_id(id: u64) -> Self {
        Self { id }
    }

    /// The host's number for this connection; unique while the host runs.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Queues `message` for the client. Never waits: a full outbound buffer is
    /// [`Error::Backpressure`].
    pub fn send(&self, message: impl Into<Message>) -> Result<(), Error> {
        connections::send(self.id, &message.into().into()).map_err(Error::from)
    }

    /// Closes the connection with `code` and `reason` (at most 123 bytes) once what is queued
    /// has been written. [`Plugin::on_close`](crate::Plugin::on_close) follows.
    pub fn close(&self, code: u16, reason: &str) -> Result<(), Error> {
        connections::close(self.id, code, reason).map_err(Error::from)
    }

    /// The bytes the host keeps for this connection; they outlive the instance.
    pub fn attachment(&self) -> Result<Vec<u8>, Error> {
        connections::attachment(self.id).map_err(Error::from)
    }

    /// Replaces the connection's attachment ([`Error::TooLarge`] over the host's limit).
    pub fn set_attachment(&self, attachment: &[u8]) -> Result<(), Error> {
        connections::set_attachment(self.id, attachment).map_err(Error::from)
    }

    /// Makes the connection receive what is published to `topic` from now on.
    pub fn subscribe(&self, topic: &str) -> Result<(), Error> {
        connections::subscribe(self.id, topic).map_err(Error::from)
    }

    /// Stops the connection receiving `topic`.
    pub fn unsubscribe(&self, topic: &str) -> Result<(), Error> {
        connections::unsubscribe(self.id, topic).map_err(Error::from)
    }
}
