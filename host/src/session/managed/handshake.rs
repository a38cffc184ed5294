//! The WebSocket opening handshake (RFC 6455 §4.2) for a plugin that answered `websocket`: the
//! host checks the client's request again (a plugin in any language may have skipped it), with
//! the statuses the SDK answers (`405`, `426` + `sec-websocket-version: 13`, `400`), checks the
//! plugin's answer, and builds the `101`.
//!
//! The request checks and the `sec-websocket-accept` value are tungstenite's own
//! (`create_response`), run on the client's fields with the token lists `Connection` and
//! `Upgrade` reduced to the one token tungstenite looks for, exactly as the SDK does.

use hyper::header::{self, CONTENT_LENGTH, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Response, StatusCode};
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::handshake::server::create_response;
use tokio_tungstenite::tungstenite::http;

use crate::config::PluginLimits;
use crate::engine::bindings::WebsocketAccept;
use crate::http::guest_response::{Body, InvalidAnswer, header_map, host_response};
use crate::http::upgrade::tokens;

/// Response fields the handshake owns; a plugin naming one in its `websocket` answer is
/// refused (`upgrade` and `connection` are refused as hop-by-hop already).
const HANDSHAKE_FIELDS: [&str; 3] = [
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
];

/// A client's valid WebSocket handshake.
#[derive(Debug)]
pub(crate) struct ClientHandshake {
    /// The `sec-websocket-accept` value answering its key.
    accept: HeaderValue,
    /// The subprotocols it offered, in its order.
    protocols: Vec<String>,
}

/// What the connection starts with, from the plugin's answer, once checked.
#[derive(Debug)]
pub(crate) struct Opening {
    pub(crate) topics: Vec<String>,
    pub(crate) attachment: Vec<u8>,
}

/// Why the plugin's `websocket` answer cannot be sent (the client gets `502`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum AnswerRefused {
    /// The plugin chose a subprotocol the client did not offer.
    #[error(
        "the plugin chose subprotocol {chosen:?}, which the client did not offer (offered: {offered})"
    )]
    ProtocolNotOffered {
        /// What the plugin chose.
        chosen: String,
        /// What the client offered.
        offered: String,
    },
    /// The plugin set a field the handshake owns.
    #[error("header {0:?} belongs to the WebSocket handshake, which is the host's job")]
    HandshakeField(String),
    /// A header is not valid HTTP, or over the caps.
    #[error("{0}")]
    Invalid(#[from] InvalidAnswer),
    /// The first attachment is over the limit.
    #[error("an attachment of {len} bytes, more than the {max} allowed (max_attachment_bytes)")]
    AttachmentTooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// More topics than a connection may join.
    #[error(
        "{count} topics, more than the {max} a connection may join (max_topics_per_connection)"
    )]
    TooManyTopics {
        /// How many were asked for.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A topic name is empty or too long.
    #[error(
        "topic name of {len} bytes is empty or longer than the {max} allowed (max_topic_bytes)"
    )]
    InvalidTopic {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Checks the client's handshake: `Ok` if it is a valid WebSocket opening, otherwise the
/// refusal to send, with the SDK's statuses.
pub(crate) fn check_client(parts: &Parts) -> Result<ClientHandshake, Box<Response<Body>>> {
    let accepted =
        create_response(&handshake_request(parts)).map_err(|err| Box::new(refusal(err)))?;
    let accept = accepted
        .headers()
        .get(header::SEC_WEBSOCKET_ACCEPT)
        .cloned()
        .ok_or_else(|| {
            Box::new(host_response(
                StatusCode::BAD_REQUEST,
                "bad websocket handshake",
            ))
        })?;
    let protocols = tokens(parts.headers.get_all(header::SEC_WEBSOCKET_PROTOCOL).iter())
        .map(str::to_owned)
        .collect();
    Ok(ClientHandshake { accept, protocols })
}

/// Builds the `101` for the plugin's `answer` to `client`, or says why it cannot be sent.
pub(crate) fn answer(
    client: &ClientHandshake,
    answer: WebsocketAccept,
    limits: &PluginLimits,
) -> Result<(Response<Body>, Opening), AnswerRefused> {
    let WebsocketAccept {
        protocol,
        headers,
        topics,
        attachment,
    } = answer;
    let mut fields = header_map(headers, &[])?;
    if let Some(owned) = HANDSHAKE_FIELDS
        .iter()
        .find(|name| fields.contains_key(**name))
    {
        return Err(AnswerRefused::HandshakeField((*owned).to_owned()));
    }
    // A 1xx response has no body, so nothing to frame (RFC 9110 §8.6).
    if fields.contains_key(CONTENT_LENGTH) {
        return Err(InvalidAnswer::HopByHop(CONTENT_LENGTH.as_str().to_owned()).into());
    }
    if attachment.len() > limits.max_attachment_bytes {
        return Err(AnswerRefused::AttachmentTooLarge {
            len: attachment.len(),
            max: limits.max_attachment_bytes,
        });
    }
    if topics.len() > limits.max_topics_per_connection {
        return Err(AnswerRefused::TooManyTopics {
            count: topics.len(),
            max: limits.max_topics_per_connection,
        });
    }
    if let Some(bad) = topics
        .iter()
        .find(|topic| topic.is_empty() || topic.len() > limits.max_topic_bytes)
    {
        return Err(AnswerRefused::InvalidTopic {
            len: bad.len(),
            max: limits.max_topic_bytes,
        });
    }
    if let Some(chosen) = protocol {
        let offered = client.protocols.contains(&chosen);
        // Offered, so a token the client sent in a valid field value.
        let value = HeaderValue::from_str(&chosen).ok().filter(|_| offered);
        let Some(value) = value else {
            return Err(AnswerRefused::ProtocolNotOffered {
                chosen,
                offered: client.protocols.join(", "),
            });
        };
        fields.insert(header::SEC_WEBSOCKET_PROTOCOL, value);
    }
    fields.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    fields.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    fields.insert(header::SEC_WEBSOCKET_ACCEPT, client.accept.clone());
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *response.headers_mut() = fields;
    Ok((response, Opening { topics, attachment }))
}

/// The request as tungstenite's handshake check sees it: method, version, the key and version
/// fields as sent, and `Connection`/`Upgrade` reduced to the token it looks for, if offered.
fn handshake_request(parts: &Parts) -> http::Request<()> {
    let mut request = http::Request::new(());
    *request.method_mut() = parts.method.clone();
    *request.version_mut() = parts.version;
    for name in [header::SEC_WEBSOCKET_VERSION, header::SEC_WEBSOCKET_KEY] {
        // tungstenite reads the first field of a name; repeated fields are joined the way HTTP
        // joins list-valued fields, so a doubled key is refused rather than half-read.
        let joined = parts
            .headers
            .get_all(&name)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect::<Vec<_>>()
            .join(&b", "[..]);
        if let (false, Ok(value)) = (joined.is_empty(), HeaderValue::from_bytes(&joined)) {
            request.headers_mut().insert(name, value);
        }
    }
    let wanted: [(HeaderName, &'static str); 2] = [
        (header::CONNECTION, "upgrade"),
        (header::UPGRADE, "websocket"),
    ];
    for (name, token) in wanted {
        if tokens(parts.headers.get_all(&name).iter())
            .any(|offered| offered.eq_ignore_ascii_case(token))
        {
            request
                .headers_mut()
                .insert(name, HeaderValue::from_static(token));
        }
    }
    request
}

/// The refusal for a handshake tungstenite refused: the SDK's statuses.
fn refusal(error: WsError) -> Response<Body> {
    let WsError::Protocol(error) = error else {
        return host_response(StatusCode::BAD_REQUEST, "bad websocket handshake");
    };
    let (status, message) = match error {
        ProtocolError::WrongHttpMethod => {
            let mut response = host_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "websocket handshake must be GET",
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET"));
            return response;
        }
        ProtocolError::MissingSecWebSocketVersionHeader => {
            let mut response = host_response(
                StatusCode::UPGRADE_REQUIRED,
                "websocket version 13 required",
            );
            response.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
            return response;
        }
        ProtocolError::MissingConnectionUpgradeHeader => {
            (StatusCode::BAD_REQUEST, "missing `connection: upgrade`")
        }
        ProtocolError::MissingUpgradeWebSocketHeader => {
            (StatusCode::BAD_REQUEST, "missing `upgrade: websocket`")
        }
        ProtocolError::MissingSecWebSocketKey => {
            (StatusCode::BAD_REQUEST, "missing sec-websocket-key")
        }
        ProtocolError::InvalidSecWebSocketKey => {
            (StatusCode::BAD_REQUEST, "invalid sec-websocket-key")
        }
        _ => (StatusCode::BAD_REQUEST, "bad websocket handshake"),
    };
    host_response(status, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample key from RFC 6455 section 1.3.
    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn parts(method: &str, headers: &[(&str, &str)]) -> Parts {
        let mut request = hyper::Request::builder().method(method).uri("/ws");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap().into_parts().0
    }

    fn valid(extra: &[(&str, &str)]) -> Parts {
        let mut headers = vec![
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "h2c, WebSocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", KEY),
        ];
        headers.extend_from_slice(extra);
        parts("GET", &headers)
    }

    fn accept_answer() -> WebsocketAccept {
        WebsocketAccept {
            protocol: None,
            headers: vec![],
            topics: vec![],
            attachment: vec![],
        }
    }

    #[test]
    fn a_valid_handshake_gets_the_rfc_accept_key() {
        let client = check_client(&valid(&[])).unwrap();
        let (response, _) = answer(&client, accept_answer(), &PluginLimits::default()).unwrap();
        assert_eq!(response.status(), 101);
        assert_eq!(
            response.headers()["sec-websocket-accept"],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(response.headers()["upgrade"], "websocket");
        assert_eq!(response.headers()["connection"], "upgrade");
    }

    #[test]
    fn bad_handshakes_get_the_sdk_statuses() {
        let status = |parts: Parts| check_client(&parts).unwrap_err().status();
        let post = {
            let mut p = valid(&[]);
            p.method = hyper::Method::POST;
            p
        };
        let refused = check_client(&post).unwrap_err();
        assert_eq!(refused.status(), 405);
        assert_eq!(refused.headers()["allow"], "GET");
        let old = parts(
            "GET",
            &[
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-version", "8"),
                ("sec-websocket-key", KEY),
            ],
        );
        let refused = check_client(&old).unwrap_err();
        assert_eq!(refused.status(), 426);
        assert_eq!(refused.headers()["sec-websocket-version"], "13");
        assert_eq!(
            status(parts(
                "GET",
                &[
                    ("connection", "upgrade"),
                    ("upgrade", "websocket"),
                    ("sec-websocket-version", "13"),
                    ("sec-websocket-key", "c2hvcnQ="),
                ]
            )),
            400
        );
        assert_eq!(status(parts("GET", &[])), 400);
        // Two keys are not one key.
        let mut doubled = valid(&[]);
        doubled
            .headers
            .append("sec-websocket-key", HeaderValue::from_static(KEY));
        assert_eq!(status(doubled), 400);
    }

    #[test]
    fn the_plugin_may_only_choose_an_offered_subprotocol() {
        let client =
            check_client(&valid(&[("sec-websocket-protocol", "chat, superchat")])).unwrap();
        let mut chosen = accept_answer();
        chosen.protocol = Some("superchat".into());
        let (response, _) = answer(&client, chosen, &PluginLimits::default()).unwrap();
        assert_eq!(response.headers()["sec-websocket-protocol"], "superchat");
        let mut unoffered = accept_answer();
        unoffered.protocol = Some("mqtt".into());
        assert!(matches!(
            answer(&client, unoffered, &PluginLimits::default()).unwrap_err(),
            AnswerRefused::ProtocolNotOffered { .. }
        ));
    }

    #[test]
    fn handshake_fields_and_oversized_openings_are_refused() {
        let client = check_client(&valid(&[])).unwrap();
        let limits = PluginLimits::default();
        for name in ["sec-websocket-accept", "Sec-WebSocket-Extensions"] {
            let mut owned = accept_answer();
            owned.headers.push((name.into(), b"x".to_vec()));
            assert!(matches!(
                answer(&client, owned, &limits).unwrap_err(),
                AnswerRefused::HandshakeField(_)
            ));
        }
        let mut hop = accept_answer();
        hop.headers.push(("connection".into(), b"close".to_vec()));
        assert!(matches!(
            answer(&client, hop, &limits).unwrap_err(),
            AnswerRefused::Invalid(InvalidAnswer::HopByHop(_))
        ));
        let mut big = accept_answer();
        big.attachment = vec![0; limits.max_attachment_bytes + 1];
        assert!(matches!(
            answer(&client, big, &limits).unwrap_err(),
            AnswerRefused::AttachmentTooLarge { .. }
        ));
        let mut many = accept_answer();
        many.topics = (0..=limits.max_topics_per_connection)
            .map(|i| format!("t{i}"))
            .collect();
        assert!(matches!(
            answer(&client, many, &limits).unwrap_err(),
            AnswerRefused::TooManyTopics { .. }
        ));
        let mut empty = accept_answer();
        empty.topics = vec![String::new()];
        assert!(matches!(
            answer(&client, empty, &limits).unwrap_err(),
            AnswerRefused::InvalidTopic { .. }
        ));
        let mut extra = accept_answer();
        extra.headers.push(("x-room".into(), b"lobby".to_vec()));
        let (response, _) = answer(&client, extra, &limits).unwrap();
        assert_eq!(response.headers()["x-room"], "lobby");
    }
}
