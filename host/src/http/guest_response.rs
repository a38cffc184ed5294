//! Checks what a guest answered before any of it reaches a client: a final status, header names
//! and values HTTP allows, sizes within the host's caps, and framing and connection management
//! (hop-by-hop fields) the host stays in charge of.
//!
//! Everything here works on hostile data: counts and sizes are checked before anything is built
//! from them (`http`'s `HeaderMap` panics past 32,768 fields), and nothing can panic.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_LENGTH, HeaderName, HeaderValue};
use hyper::{HeaderMap, Response, StatusCode};

use crate::config::{MAX_GUEST_BODY_BYTES, MAX_GUEST_HEADER_BYTES, MAX_GUEST_HEADERS};
use crate::engine::bindings::{self, Headers};

/// Fields that manage one connection rather than the message (RFC 9110 §7.6.1), or that only a
/// proxy or the host may set: the host frames bodies and manages connections itself, so a guest
/// naming one is refused rather than silently overridden. The same list as
/// `wasmtime-wasi-http`'s forbidden headers, plus `te`.
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "transfer-encoding",
    "upgrade",
    "host",
    "http2-settings",
];

/// `426 Upgrade Required`, the one response that carries an `upgrade` field.
const UPGRADE_REQUIRED: u16 = 426;

/// How much of a guest's header name or value a log line quotes.
const QUOTED_NAME_CHARS: usize = 64;

/// Body type of every response the host sends.
pub(crate) type Body = Full<Bytes>;

/// What is wrong with a guest's answer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum InvalidAnswer {
    /// Not a final status (200–599).
    #[error("status {0} is not a final HTTP status (200-599)")]
    Status(u16),
    /// A header name HTTP does not allow.
    #[error("invalid header name {0:?}")]
    HeaderName(String),
    /// A header value HTTP does not allow (e.g. a line break).
    #[error("invalid value for header {0:?}")]
    HeaderValue(String),
    /// A hop-by-hop or framing field: the host manages the connection and frames the body.
    #[error("header {0:?} manages the connection or the framing, which is the host's job")]
    HopByHop(String),
    /// More header fields than the host passes on.
    #[error("{0} header fields, more than the {MAX_GUEST_HEADERS} allowed")]
    TooManyHeaders(usize),
    /// Header names and values larger in all than the host passes on.
    #[error("header fields of more than {MAX_GUEST_HEADER_BYTES} bytes in all")]
    HeadersTooLarge,
    /// A body larger than the host passes on.
    #[error("a {0}-byte body, more than the {MAX_GUEST_BODY_BYTES} bytes allowed")]
    BodyTooLarge(usize),
    /// `content-length` disagrees with the body.
    #[error("content-length {declared:?} does not match the {actual}-byte body")]
    ContentLength {
        /// What the guest declared.
        declared: String,
        /// The body's real length.
        actual: usize,
    },
}

/// Turns a guest's complete response into an HTTP response.
pub(crate) fn into_http(response: bindings::Response) -> Result<Response<Body>, InvalidAnswer> {
    if !(200..=599).contains(&response.status) {
        return Err(InvalidAnswer::Status(response.status));
    }
    if response.body.len() > MAX_GUEST_BODY_BYTES {
        return Err(InvalidAnswer::BodyTooLarge(response.body.len()));
    }
    // A 426 must say which protocols would do (RFC 9110 §15.5.22); elsewhere the field would
    // claim an upgrade the host is not offering.
    let allowed: &[&str] = if response.status == UPGRADE_REQUIRED {
        &["upgrade"]
    } else {
        &[]
    };
    let headers = header_map(response.headers, allowed)?;
    for declared in headers.get_all(CONTENT_LENGTH) {
        if declared
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            != Some(response.body.len())
        {
            return Err(InvalidAnswer::ContentLength {
                declared: quoted(&String::from_utf8_lossy(declared.as_bytes())),
                actual: response.body.len(),
            });
        }
    }
    let mut http = Response::new(Full::new(Bytes::from(response.body)));
    // Checked above to be within 200..=599, which `StatusCode` always accepts.
    *http.status_mut() = StatusCode::from_u16(response.status)
        .map_err(|_| InvalidAnswer::Status(response.status))?;
    *http.headers_mut() = headers;
    Ok(http)
}

/// Checks and converts a guest's header list: within the caps, valid HTTP, and no hop-by-hop
/// field except those in `allowed` (lower-case).
pub(crate) fn header_map(headers: Headers, allowed: &[&str]) -> Result<HeaderMap, InvalidAnswer> {
    check_sizes(&headers)?;
    // Within the cap, so far below the 32,768 fields where `HeaderMap` would panic.
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| InvalidAnswer::HeaderName(quoted(&name)))?;
        let hop_by_hop = HOP_BY_HOP.contains(&header_name.as_str());
        if hop_by_hop && !allowed.contains(&header_name.as_str()) {
            return Err(InvalidAnswer::HopByHop(header_name.as_str().to_owned()));
        }
        let header_value = HeaderValue::from_bytes(&value)
            .map_err(|_| InvalidAnswer::HeaderValue(quoted(&name)))?;
        map.append(header_name, header_value);
    }
    Ok(map)
}

/// Refuses more than [`MAX_GUEST_HEADERS`] fields or more than [`MAX_GUEST_HEADER_BYTES`] of
/// names and values in all, before anything is built from them.
fn check_sizes(headers: &Headers) -> Result<(), InvalidAnswer> {
    if headers.len() > MAX_GUEST_HEADERS {
        return Err(InvalidAnswer::TooManyHeaders(headers.len()));
    }
    let total = headers.iter().try_fold(0usize, |total, (name, value)| {
        total
            .checked_add(name.len())
            .and_then(|total| total.checked_add(value.len()))
            .filter(|total| *total <= MAX_GUEST_HEADER_BYTES)
    });
    match total {
        Some(_) => Ok(()),
        None => Err(InvalidAnswer::HeadersTooLarge),
    }
}

/// The start of a guest's header name or value, for a log line: a long one is cut short.
fn quoted(name: &str) -> String {
    let mut chars = name.chars();
    let mut short: String = chars.by_ref().take(QUOTED_NAME_CHARS).collect();
    if chars.next().is_some() {
        short.push('…');
    }
    short
}

/// A short plain-text response from the host itself (not from a plugin).
pub(crate) fn host_response(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{message}\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &[u8])], body: &[u8]) -> bindings::Response {
        bindings::Response {
            status,
            headers: headers
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_vec()))
                .collect(),
            body: body.to_vec(),
        }
    }

    #[test]
    fn accepts_a_well_formed_response() {
        let http = into_http(response(201, &[("x-a", b"1"), ("x-a", b"2")], b"hi")).unwrap();
        assert_eq!(http.status(), 201);
        assert_eq!(http.headers().get_all("x-a").iter().count(), 2);
    }

    #[test]
    fn refuses_what_http_does_not_allow() {
        assert_eq!(
            into_http(response(101, &[], b"")).unwrap_err(),
            InvalidAnswer::Status(101)
        );
        assert_eq!(
            into_http(response(1000, &[], b"")).unwrap_err(),
            InvalidAnswer::Status(1000)
        );
        assert!(matches!(
            into_http(response(200, &[("bad name", b"x")], b"")).unwrap_err(),
            InvalidAnswer::HeaderName(_)
        ));
        assert!(matches!(
            into_http(response(200, &[("x", b"a\nb")], b"")).unwrap_err(),
            InvalidAnswer::HeaderValue(_)
        ));
        assert_eq!(
            into_http(response(200, &[("transfer-encoding", b"chunked")], b"")).unwrap_err(),
            InvalidAnswer::HopByHop("transfer-encoding".into())
        );
        assert!(matches!(
            into_http(response(200, &[("content-length", b"3")], b"hi")).unwrap_err(),
            InvalidAnswer::ContentLength { .. }
        ));
        assert!(into_http(response(200, &[("content-length", b"2")], b"hi")).is_ok());
    }

    /// Fields that manage the connection are the host's: any of them, in any case, is refused,
    /// except the `upgrade` a 426 must carry.
    #[test]
    fn refuses_hop_by_hop_fields() {
        for name in HOP_BY_HOP {
            assert_eq!(
                into_http(response(200, &[(&name.to_uppercase(), b"x")], b"")).unwrap_err(),
                InvalidAnswer::HopByHop(name.to_owned()),
            );
        }
        let upgrade_required = into_http(response(426, &[("upgrade", b"kv/1")], b"")).unwrap();
        assert_eq!(upgrade_required.headers()["upgrade"], "kv/1");
        assert!(into_http(response(426, &[("connection", b"upgrade")], b"")).is_err());
    }

    /// Counts and sizes are capped before anything is built, so no answer can panic the host.
    #[test]
    fn refuses_answers_over_the_caps() {
        let many: Headers = (0..40_000)
            .map(|i| (format!("x-{i}"), b"v".to_vec()))
            .collect();
        let too_many = bindings::Response {
            status: 200,
            headers: many,
            body: vec![],
        };
        assert_eq!(
            into_http(too_many).unwrap_err(),
            InvalidAnswer::TooManyHeaders(40_000)
        );
        let big_value = vec![b'v'; MAX_GUEST_HEADER_BYTES];
        assert_eq!(
            into_http(response(200, &[("x-big", &big_value)], b"")).unwrap_err(),
            InvalidAnswer::HeadersTooLarge
        );
        let at_the_cap = vec![b'v'; MAX_GUEST_HEADER_BYTES - "x-big".len()];
        assert!(into_http(response(200, &[("x-big", &at_the_cap)], b"")).is_ok());
        let body = vec![0u8; MAX_GUEST_BODY_BYTES + 1];
        assert_eq!(
            into_http(response(200, &[], &body)).unwrap_err(),
            InvalidAnswer::BodyTooLarge(MAX_GUEST_BODY_BYTES + 1)
        );
        let long_name = "x".repeat(10_000) + " bad";
        let Err(InvalidAnswer::HeaderName(quoted)) =
            into_http(response(200, &[(&long_name, b"v")], b""))
        else {
            panic!("a name with a space is invalid");
        };
        assert!(quoted.chars().count() <= QUOTED_NAME_CHARS + 1, "{quoted}");
    }
}
