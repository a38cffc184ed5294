//! [`Outgoing`]: what [`Plugin::handle`](crate::Plugin::handle) answers.

use crate::bindings::switchyard::plugin::types::{
    Outgoing as WitOutgoing, ProtocolUpgrade as WitUpgrade, Response as WitResponse,
};
use crate::managed::WebSocketAccept;
use crate::{Response, Upgrade};

/// A plugin's answer to a request: a complete response, or a protocol upgrade.
///
/// Both builders convert into it with `.into()`, and so does the result of
/// [`websocket::accept`](crate::websocket::accept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// Answer with a complete response; the instance is dropped afterwards.
    Response(Response),
    /// Switch protocols; the host then calls `Plugin::upgrade` (the `raw-upgrade` feature) on the
    /// same instance.
    Upgrade(Upgrade),
    /// Hand a WebSocket to the host to run; it then calls the plugin's `on_*` events.
    WebSocket(WebSocketAccept),
}

impl From<WebSocketAccept> for Outgoing {
    fn from(accept: WebSocketAccept) -> Self {
        Self::WebSocket(accept)
    }
}

/// Accepts a managed handshake's result as it is: the WebSocket, or the refusal.
impl From<Result<WebSocketAccept, Response>> for Outgoing {
    fn from(result: Result<WebSocketAccept, Response>) -> Self {
        match result {
            Ok(accept) => accept.into(),
            Err(refusal) => refusal.into(),
        }
    }
}

impl From<Response> for Outgoing {
    fn from(response: Response) -> Self {
        Self::Response(response)
    }
}

impl From<Upgrade> for Outgoing {
    fn from(upgrade: Upgrade) -> Self {
        Self::Upgrade(upgrade)
    }
}

/// Accepts a handshake's result as it is: the upgrade, or the refusal.
impl From<Result<Upgrade, Response>> for Outgoing {
    fn from(result: Result<Upgrade, Response>) -> Self {
        match result {
            Ok(upgrade) => upgrade.into(),
            Err(refusal) => refusal.into(),
        }
    }
}

impl From<Outgoing> for WitOutgoing {
    fn from(outgoing: Outgoing) -> Self {
        match outgoing {
            Outgoing::Response(response) => {
                let (status, headers, body) = response.into_parts();
                WitOutgoing::Response(WitResponse {
                    status,
                    headers,
                    body,
                })
            }
            Outgoing::Upgrade(upgrade) => {
                let (status, headers) = upgrade.into_parts();
                WitOutgoing::ProtocolUpgrade(WitUpgrade { status, headers })
            }
            Outgoing::WebSocket(accept) => WitOutgoing::Websocket(accept.into()),
        }
    }
}
