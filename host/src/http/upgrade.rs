//! Protocol-upgrade negotiation: decides whether a plugin's `protocol-upgrade` answer may become
//! a `101 Switching Protocols` for this client. A `101` goes only to a client that asked for an
//! upgrade, and only for a protocol it offered.

use hyper::header::{CONNECTION, CONTENT_LENGTH, HeaderValue, UPGRADE};
use hyper::http::request::Parts;
use hyper::{Response, StatusCode, Version};

use crate::engine::bindings::ProtocolUpgrade;
use crate::http::connect::ExtendedConnect;
use crate::http::guest_response::{Body, InvalidAnswer, header_map};

/// The protocols a client offered to switch to (`Connection: upgrade` + `Upgrade: a, b/2`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientOffer {
    protocols: Vec<String>,
}

impl ClientOffer {
    /// The client's offer, or `None` if the request is not an HTTP/1.1 upgrade request (or an
    /// HTTP/2 extended CONNECT, which `http::connect` has put in that form).
    pub(crate) fn from_request(parts: &Parts) -> Option<Self> {
        let extended_connect = parts.extensions.get::<ExtendedConnect>().is_some();
        if parts.version != Version::HTTP_11 && !extended_connect {
            return None;
        }
        let asks_upgrade = tokens(parts.headers.get_all(CONNECTION).iter())
            .any(|token| token.eq_ignore_ascii_case("upgrade"));
        let protocols: Vec<String> = tokens(parts.headers.get_all(UPGRADE).iter())
            .map(str::to_owned)
            .collect();
        (asks_upgrade && !protocols.is_empty()).then_some(Self { protocols })
    }

    /// Whether the client offered `protocol` (compared without regard to case).
    pub(crate) fn offers(&self, protocol: &str) -> bool {
        self.protocols
            .iter()
            .any(|offered| offered.eq_ignore_ascii_case(protocol))
    }
}

/// Why a plugin's upgrade answer was refused (the client gets `502`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum UpgradeRefused {
    /// The client did not ask to upgrade.
    #[error("the plugin answered with a protocol upgrade but the client did not ask for one")]
    NotRequested,
    /// Only `101` is a protocol switch in HTTP/1.1.
    #[error("the plugin's upgrade status is {0}; only 101 switches protocols")]
    Status(u16),
    /// The answer does not say which protocol to switch to.
    #[error("the plugin's upgrade has no `upgrade` header naming the protocol")]
    NoProtocol,
    /// The plugin picked a protocol the client did not offer.
    #[error(
        "the plugin chose protocol {chosen:?}, which the client did not offer (offered: {offered})"
    )]
    NotOffered {
        /// What the plugin chose.
        chosen: String,
        /// What the client offered.
        offered: String,
    },
    /// The operator did not allow this plugin that protocol.
    #[error(
        "the plugin chose protocol {chosen:?}, which its settings do not allow (allowed: {allowed})"
    )]
    NotAllowed {
        /// What the plugin chose.
        chosen: String,
        /// What its `allowed_upgrades` lists.
        allowed: String,
    },
    /// A header is not valid HTTP.
    #[error("invalid upgrade answer: {0}")]
    Invalid(#[from] InvalidAnswer),
    /// The plugin is not a `raw-plugin`: it has no `raw-upgrade` export to run the session.
    #[error(
        "the plugin answered with a protocol upgrade but does not export raw-upgrade (build it for the raw-plugin world: the SDK's `raw-upgrade` feature)"
    )]
    NotARawPlugin,
}

/// Builds the `101` response for `upgrade`, or says why it cannot be sent.
pub(crate) fn accept(
    offer: Option<&ClientOffer>,
    allowed: Option<&[String]>,
    upgrade: ProtocolUpgrade,
) -> Result<Response<Body>, UpgradeRefused> {
    let offer = offer.ok_or(UpgradeRefused::NotRequested)?;
    let status = upgrade.status.unwrap_or(101);
    if status != 101 {
        return Err(UpgradeRefused::Status(status));
    }
    // `upgrade` is the answer itself; `connection` is the host's to set.
    let mut headers = header_map(upgrade.headers, &["upgrade"])?;
    // A 1xx response has no body, so nothing to frame (RFC 9110 §8.6).
    if headers.contains_key(CONTENT_LENGTH) {
        return Err(InvalidAnswer::HopByHop(CONTENT_LENGTH.as_str().to_owned()).into());
    }
    let chosen: Vec<&str> = tokens(headers.get_all(UPGRADE).iter()).collect();
    if chosen.is_empty() {
        return Err(UpgradeRefused::NoProtocol);
    }
    if let Some(unoffered) = chosen.iter().find(|protocol| !offer.offers(protocol)) {
        return Err(UpgradeRefused::NotOffered {
            chosen: (*unoffered).to_owned(),
            offered: offer.protocols.join(", "),
        });
    }
    if let Some(allowed) = allowed
        && let Some(forbidden) = chosen
            .iter()
            .find(|protocol| !allowed.iter().any(|ok| ok.eq_ignore_ascii_case(protocol)))
    {
        return Err(UpgradeRefused::NotAllowed {
            chosen: (*forbidden).to_owned(),
            allowed: allowed.join(", "),
        });
    }
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *response.headers_mut() = headers;
    Ok(response)
}

/// The comma-separated tokens of a list-valued header, trimmed, empty ones skipped. The managed
/// WebSocket handshake reads its token lists with it too.
pub(crate) fn tokens<'a>(
    values: impl Iterator<Item = &'a HeaderValue>,
) -> impl Iterator<Item = &'a str> {
    values
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::Request;

    fn offer(headers: &[(&str, &str)]) -> Option<ClientOffer> {
        let mut request = Request::builder().uri("/x");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        ClientOffer::from_request(&request.body(()).unwrap().into_parts().0)
    }

    fn upgrade_to(protocol: &str, status: Option<u16>) -> ProtocolUpgrade {
        ProtocolUpgrade {
            status,
            headers: vec![("upgrade".into(), protocol.as_bytes().to_vec())],
        }
    }

    #[test]
    fn an_offer_needs_connection_upgrade_and_a_protocol() {
        assert!(offer(&[("upgrade", "websocket")]).is_none());
        assert!(offer(&[("connection", "upgrade")]).is_none());
        let both = offer(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "kv/1, websocket"),
        ]);
        assert!(both.unwrap().offers("WebSocket"));
    }

    #[test]
    fn only_an_offered_protocol_with_101_is_accepted() {
        let offered = offer(&[("connection", "upgrade"), ("upgrade", "websocket")]);
        let response = accept(offered.as_ref(), None, upgrade_to("websocket", None)).unwrap();
        assert_eq!(response.status(), 101);
        assert_eq!(response.headers()["connection"], "upgrade");
        assert_eq!(
            accept(None, None, upgrade_to("websocket", None)).unwrap_err(),
            UpgradeRefused::NotRequested
        );
        assert!(matches!(
            accept(offered.as_ref(), None, upgrade_to("h2c", None)).unwrap_err(),
            UpgradeRefused::NotOffered { .. }
        ));
        assert_eq!(
            accept(offered.as_ref(), None, upgrade_to("websocket", Some(200))).unwrap_err(),
            UpgradeRefused::Status(200)
        );
        let allowed = ["kv/1".to_owned()];
        assert!(matches!(
            accept(
                offered.as_ref(),
                Some(&allowed),
                upgrade_to("websocket", None)
            )
            .unwrap_err(),
            UpgradeRefused::NotAllowed { .. }
        ));
        let no_protocol = ProtocolUpgrade {
            status: None,
            headers: vec![],
        };
        assert_eq!(
            accept(offered.as_ref(), None, no_protocol).unwrap_err(),
            UpgradeRefused::NoProtocol
        );
    }

    /// The plugin names the protocol; the connection and the framing are the host's.
    #[test]
    fn refuses_connection_fields_and_framing_from_the_plugin() {
        let offered = offer(&[("connection", "upgrade"), ("upgrade", "websocket")]);
        for (name, value) in [
            ("connection", "upgrade"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("content-length", "0"),
        ] {
            let mut upgrade = upgrade_to("websocket", None);
            upgrade
                .headers
                .push((name.into(), value.as_bytes().to_vec()));
            assert!(
                matches!(
                    accept(offered.as_ref(), None, upgrade).unwrap_err(),
                    UpgradeRefused::Invalid(InvalidAnswer::HopByHop(_))
                ),
                "{name}"
            );
        }
    }

    /// An upgrade answer with more fields than the cap is refused, never a panic.
    #[test]
    fn refuses_too_many_fields() {
        let offered = offer(&[("connection", "upgrade"), ("upgrade", "websocket")]);
        let mut upgrade = upgrade_to("websocket", None);
        upgrade
            .headers
            .extend((0..40_000).map(|i| (format!("x-{i}"), b"v".to_vec())));
        assert!(matches!(
            accept(offered.as_ref(), None, upgrade).unwrap_err(),
            UpgradeRefused::Invalid(InvalidAnswer::TooManyHeaders(40_001))
        ));
    }
}
