//! The server side of the WebSocket opening handshake: an [`Upgrade`] or a refusal.
//!
//! The checks are tungstenite's own (`GET`, `Connection: upgrade`, `Upgrade: websocket`,
//! version 13, a key of 16 base64-encoded bytes), run on an `http::Request` built from ours, so
//! they are not written twice. `Connection` and `Upgrade` are token lists (RFC 9110 §7.6.1,
//! §7.8), which tungstenite reads as one value: they are reduced to the one token it looks for
//! before it sees them.

use tungstenite::error::{Error, ProtocolError};
use tungstenite::handshake::server::create_response;
use tungstenite::http::{self, HeaderValue, Method, Version, header};

use crate::{Request, Response, Upgrade};

/// The single-valued fields the handshake reads, copied as they are; others are not copied.
const HANDSHAKE_FIELDS: [header::HeaderName; 2] =
    [header::SEC_WEBSOCKET_VERSION, header::SEC_WEBSOCKET_KEY];

/// The token lists the handshake reads, each with the one token it needs (compared without
/// regard to case).
const HANDSHAKE_TOKENS: [(header::HeaderName, &str); 2] = [
    (header::CONNECTION, "upgrade"),
    (header::UPGRADE, "websocket"),
];

/// Accepts a WebSocket handshake, or answers why not.
///
/// `Ok` is the [`Upgrade`] to return from `handle` (it carries `Sec-WebSocket-Accept`); `Err`
/// is the response to return instead: 405 for a method other than `GET`, 426 with
/// `sec-websocket-version: 13` for a missing or unsupported version, 400 otherwise. No
/// subprotocol is chosen; see [`accept_with_protocols`].
pub fn accept(request: &Request) -> Result<Upgrade, Response> {
    accept_with_protocols(request, &[])
}

/// Accepts a WebSocket handshake and picks a subprotocol, or answers why not.
///
/// Of the protocols in `supported`, in that order of preference, the first the client offered
/// in `Sec-WebSocket-Protocol` is named in the answer. If the client offered none of them, or
/// none at all, the handshake is accepted without one, and the client decides whether that
/// will do. Refusals are as for [`accept`].
pub fn accept_with_protocols(request: &Request, supported: &[&str]) -> Result<Upgrade, Response> {
    let accepted = check(request)?;
    let mut upgrade = Upgrade::to("websocket");
    for (name, value) in accepted.headers() {
        // `upgrade` is already set and the host adds `connection` itself.
        if name != header::UPGRADE && name != header::CONNECTION {
            upgrade = upgrade.header(name.as_str(), value.as_bytes());
        }
    }
    if let Some(protocol) = choose_protocol(request, supported) {
        upgrade = upgrade.header(header::SEC_WEBSOCKET_PROTOCOL.as_str(), protocol);
    }
    Ok(upgrade)
}

/// Runs tungstenite's handshake checks on `request`: its `101` answer, or the refusal to send.
pub(crate) fn check(request: &Request) -> Result<http::Response<()>, Response> {
    create_response(&handshake_request(request)).map_err(refusal)
}

/// The request as tungstenite's handshake sees it: method, HTTP/1.1, the handshake fields.
fn handshake_request(request: &Request) -> http::Request<()> {
    // A method `http` cannot represent is refused by tungstenite as not `GET`.
    let method = Method::from_bytes(request.method().as_bytes()).unwrap_or(Method::CONNECT);
    let mut handshake = http::Request::new(());
    *handshake.method_mut() = method;
    // Upgrades exist only from HTTP/1.1 on, and the host serves nothing older with them.
    *handshake.version_mut() = Version::HTTP_11;
    for name in HANDSHAKE_FIELDS {
        // tungstenite reads the first field of each name, so repeated fields are joined the way
        // HTTP defines list-valued fields: `a` and `b` become `a, b`.
        let joined = request
            .header_values(name.as_str())
            .collect::<Vec<_>>()
            .join(&b", "[..]);
        if let (false, Ok(value)) = (joined.is_empty(), HeaderValue::from_bytes(&joined)) {
            handshake.headers_mut().insert(name, value);
        }
    }
    // tungstenite wants `Upgrade` to be exactly `websocket`, so a client offering
    // `foo/2, websocket` would be refused: pass on only the token it looks for, when offered.
    for (name, token) in HANDSHAKE_TOKENS {
        if request
            .header_tokens(name.as_str())
            .any(|offered| offered.eq_ignore_ascii_case(token))
        {
            handshake
                .headers_mut()
                .insert(name, HeaderValue::from_static(token));
        }
    }
    handshake
}

/// The first of `supported` that the client offered.
pub(crate) fn choose_protocol<'a>(request: &Request, supported: &[&'a str]) -> Option<&'a str> {
    let offered: Vec<&str> = request
        .header_tokens(header::SEC_WEBSOCKET_PROTOCOL.as_str())
        .collect();
    supported
        .iter()
        .copied()
        .find(|protocol| offered.contains(protocol))
}

/// The answer to a handshake tungstenite refused.
fn refusal(error: Error) -> Response {
    let Error::Protocol(error) = error else {
        return Response::text(400, "bad websocket handshake\n");
    };
    match error {
        ProtocolError::WrongHttpMethod => {
            Response::text(405, "websocket handshake must be GET\n").header("allow", "GET")
        }
        ProtocolError::MissingSecWebSocketVersionHeader => {
            Response::text(426, "websocket version 13 required\n")
                .header("sec-websocket-version", "13")
        }
        ProtocolError::MissingConnectionUpgradeHeader => {
            Response::text(400, "missing `connection: upgrade`\n")
        }
        ProtocolError::MissingUpgradeWebSocketHeader => {
            Response::text(400, "missing `upgrade: websocket`\n")
        }
        ProtocolError::MissingSecWebSocketKey => Response::text(400, "missing sec-websocket-key\n"),
        ProtocolError::InvalidSecWebSocketKey => Response::text(400, "invalid sec-websocket-key\n"),
        _ => Response::text(400, "bad websocket handshake\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample key from RFC 6455 section 1.3.
    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn handshake() -> Request {
        Request::new("GET", "/echo")
            .with_header("Connection", "Upgrade")
            .with_header("Upgrade", "websocket")
            .with_header("Sec-WebSocket-Version", "13")
            .with_header("Sec-WebSocket-Key", KEY)
    }

    fn refused_status(request: &Request) -> u16 {
        accept(request)
            .expect_err("the handshake should be refused")
            .status()
    }

    /// A valid handshake gets the accept key from RFC 6455 and no `connection` field.
    #[test]
    fn accepts_the_rfc_example() {
        let upgrade = accept(&handshake()).unwrap();
        assert_eq!(upgrade.header_value("upgrade"), Some(&b"websocket"[..]));
        assert_eq!(
            upgrade.header_value("sec-websocket-accept"),
            Some(&b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="[..])
        );
        assert_eq!(upgrade.header_value("connection"), None);
        assert_eq!(upgrade.header_value("sec-websocket-protocol"), None);
        assert_eq!(upgrade.status_code(), None);
    }

    /// `Connection` may list other tokens, over several fields.
    #[test]
    fn accepts_connection_lists() {
        let request = Request::new("GET", "/")
            .with_header("connection", "keep-alive")
            .with_header("connection", "Upgrade")
            .with_header("upgrade", "WebSocket")
            .with_header("sec-websocket-version", "13")
            .with_header("sec-websocket-key", KEY);
        assert!(accept(&request).is_ok());
    }

    /// `Upgrade` and `Connection` are comma-separated token lists, in any case, possibly over
    /// several fields: `websocket` anywhere in the list is an offer.
    #[test]
    fn accepts_token_lists() {
        for (connection, upgrade) in [
            ("Upgrade", "foo/2, websocket"),
            ("keep-alive,UPGRADE", "WebSocket , h2c"),
            ("close, upgrade", "websocket,foo"),
        ] {
            let request = Request::new("GET", "/")
                .with_header("connection", connection)
                .with_header("upgrade", upgrade)
                .with_header("sec-websocket-version", "13")
                .with_header("sec-websocket-key", KEY);
            let upgrade_answer = accept(&request)
                .unwrap_or_else(|refusal| panic!("{upgrade:?} refused: {}", refusal.status()));
            assert_eq!(
                upgrade_answer.header_value("upgrade"),
                Some(&b"websocket"[..])
            );
        }
        let split = Request::new("GET", "/")
            .with_header("connection", "upgrade")
            .with_header("upgrade", "foo/2")
            .with_header("upgrade", "websocket")
            .with_header("sec-websocket-version", "13")
            .with_header("sec-websocket-key", KEY);
        assert!(accept(&split).is_ok());
        // A token that only contains the word is not the token.
        let lookalike = Request::new("GET", "/")
            .with_header("connection", "upgrade")
            .with_header("upgrade", "websocket2, not-websocket")
            .with_header("sec-websocket-version", "13")
            .with_header("sec-websocket-key", KEY);
        assert_eq!(refused_status(&lookalike), 400);
    }

    /// The server's preference order wins among the protocols the client offered.
    #[test]
    fn picks_the_first_supported_protocol_offered() {
        let request = handshake().with_header("sec-websocket-protocol", "chat, echo, json");
        let upgrade = accept_with_protocols(&request, &["json", "echo"]).unwrap();
        assert_eq!(
            upgrade.header_value("sec-websocket-protocol"),
            Some(&b"json"[..])
        );

        let upgrade = accept_with_protocols(&request, &["mqtt"]).unwrap();
        assert_eq!(upgrade.header_value("sec-websocket-protocol"), None);
        let upgrade = accept_with_protocols(&handshake(), &["echo"]).unwrap();
        assert_eq!(upgrade.header_value("sec-websocket-protocol"), None);
    }

    /// Only GET opens a WebSocket.
    #[test]
    fn refuses_other_methods_with_405() {
        let request = Request::new("POST", "/echo")
            .with_header("connection", "upgrade")
            .with_header("upgrade", "websocket")
            .with_header("sec-websocket-version", "13")
            .with_header("sec-websocket-key", KEY);
        let refusal = accept(&request).unwrap_err();
        assert_eq!(refusal.status(), 405);
        assert_eq!(refusal.header_value("allow"), Some(&b"GET"[..]));
    }

    /// A missing or other version gets 426 naming version 13.
    #[test]
    fn refuses_other_versions_with_426() {
        let without = Request::new("GET", "/")
            .with_header("connection", "upgrade")
            .with_header("upgrade", "websocket")
            .with_header("sec-websocket-key", KEY);
        let refusal = accept(&without).unwrap_err();
        assert_eq!(refusal.status(), 426);
        assert_eq!(
            refusal.header_value("sec-websocket-version"),
            Some(&b"13"[..])
        );
        assert_eq!(
            refused_status(&without.with_header("sec-websocket-version", "8")),
            426
        );
    }

    /// Keys must be 24 characters of base64 encoding 16 bytes.
    #[test]
    fn refuses_bad_keys_with_400() {
        let without_key = || {
            Request::new("GET", "/")
                .with_header("connection", "upgrade")
                .with_header("upgrade", "websocket")
                .with_header("sec-websocket-version", "13")
        };
        assert_eq!(refused_status(&without_key()), 400);
        // 24 characters encoding 18 bytes, unpadded, not base64, too long.
        for key in [
            "AAAAAAAAAAAAAAAAAAAAAAAA",
            "dGhlIHNhbXBsZSBub25jZQ",
            "!!!!!!!!!!!!!!!!!!!!!!==",
            "dGhlIHNhbXBsZSBub25jZQ==AAAA",
        ] {
            assert_eq!(
                refused_status(&without_key().with_header("sec-websocket-key", key)),
                400,
                "{key}"
            );
        }
        // Two keys are not one.
        assert_eq!(
            refused_status(&handshake().with_header("sec-websocket-key", KEY)),
            400
        );
    }

    /// A plain request, or one upgrading to something else, is not a WebSocket handshake.
    #[test]
    fn refuses_non_websocket_requests_with_400() {
        assert_eq!(refused_status(&Request::new("GET", "/")), 400);
        let other = Request::new("GET", "/")
            .with_header("connection", "upgrade")
            .with_header("upgrade", "kv/1")
            .with_header("sec-websocket-version", "13")
            .with_header("sec-websocket-key", KEY);
        assert_eq!(refused_status(&other), 400);
    }
}
