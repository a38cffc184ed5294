//! [`WebSocketAccept`]: `handle`'s answer that hands a WebSocket to the host to run.

use crate::bindings::switchyard::plugin::types::WebsocketAccept as WitAccept;
use crate::headers::{self, Fields};
use crate::websocket::handshake;
use crate::{Request, Response};

/// Accepts a WebSocket handshake for the host to run, or answers why not.
///
/// The checks and refusals are those of [`websocket::accept`](crate::websocket::accept) (405,
/// 426, 400); the host checks again and answers `101` itself. No subprotocol is chosen; see
/// [`accept_with_protocols`].
pub fn accept(request: &Request) -> Result<WebSocketAccept, Response> {
    accept_with_protocols(request, &[])
}

/// Accepts a WebSocket handshake for the host to run and picks a subprotocol: the first of
/// `supported` the client offered, if any.
pub fn accept_with_protocols(
    request: &Request,
    supported: &[&str],
) -> Result<WebSocketAccept, Response> {
    handshake::check(request)?;
    Ok(WebSocketAccept {
        protocol: handshake::choose_protocol(request, supported).map(str::to_owned),
        headers: Vec::new(),
        topics: Vec::new(),
        attachment: Vec::new(),
    })
}

/// A managed WebSocket, as `handle` answers it: what the host needs to open the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSocketAccept {
    protocol: Option<String>,
    headers: Fields,
    topics: Vec<String>,
    attachment: Vec<u8>,
}

impl WebSocketAccept {
    /// Adds a response header field (the name is stored lower-case). The handshake's own fields
    /// are the host's.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers
            .push((headers::normalize_name(name), value.into()));
        self
    }

    /// Joins `topic` before the first event.
    pub fn subscribe(mut self, topic: impl Into<String>) -> Self {
        self.topics.push(topic.into());
        self
    }

    /// Sets the connection's first attachment.
    pub fn attachment(mut self, attachment: impl Into<Vec<u8>>) -> Self {
        self.attachment = attachment.into();
        self
    }

    /// The chosen subprotocol, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }
}

impl From<WebSocketAccept> for WitAccept {
    fn from(accept: WebSocketAccept) -> Self {
        Self {
            protocol: accept.protocol,
            headers: accept.headers,
            topics: accept.topics,
            attachment: accept.attachment,
        }
    }
}
