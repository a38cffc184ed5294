//! What the host checks and reads of a request before any plugin sees it: the request target's
//! length, the message rules of RFC 9112 that hyper leaves to its user (`Host`, §3.2; transfer
//! codings, §6.1), and the body, within its size limit and its stall timeout.
//!
//! The head's size and its number of header fields are hyper's to enforce (see
//! `server::http_settings`): hyper answers `431` itself.

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::header::{CONNECTION, HOST, HeaderValue, TRANSFER_ENCODING};
use hyper::http::uri::Authority;
use hyper::{Request, Response, StatusCode, Version};

use crate::config::Limits;
use crate::http::guest_response::{Body, host_response};

/// A request refused before routing: the status and what the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refusal {
    status: StatusCode,
    reason: &'static str,
    /// Whether the connection is closed after the answer: when the rest of the message cannot
    /// be trusted to be framed the way hyper read it.
    close: bool,
}

impl Refusal {
    const fn bad_request(reason: &'static str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            reason,
            close: true,
        }
    }

    fn into_response(self) -> Response<Body> {
        // A client's mistake, not a host fault: debug, so a client cannot flood the log.
        tracing::debug!(
            status = self.status.as_u16(),
            "request refused: {}",
            self.reason
        );
        let mut response = host_response(self.status, self.reason);
        if self.close {
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// Checks the request head; `Some` is the answer to send instead of routing it.
pub(crate) fn check_head<B>(request: &Request<B>, limits: &Limits) -> Option<Response<Body>> {
    check_target(request, limits)
        .and_then(|()| check_header_count(request, limits))
        .and_then(|()| check_host(request))
        .and_then(|()| check_transfer_coding(request))
        .err()
        .map(Refusal::into_response)
}

/// `414` past the request-target limit.
fn check_target<B>(request: &Request<B>, limits: &Limits) -> Result<(), Refusal> {
    let target_len = request
        .uri()
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    if target_len > limits.max_uri_bytes {
        return Err(Refusal {
            status: StatusCode::URI_TOO_LONG,
            reason: "request target is longer than the limit",
            close: false,
        });
    }
    Ok(())
}

/// `431` to an HTTP/2 request with more header fields than the limit. hyper enforces the limit
/// itself while parsing an HTTP/1 head (and closes the connection); on HTTP/2 it only bounds the
/// header list's size, so the count is checked here, and only the stream is refused.
fn check_header_count<B>(request: &Request<B>, limits: &Limits) -> Result<(), Refusal> {
    // `len` counts every value, so a repeated name counts once per line, as on HTTP/1.
    if request.version() == Version::HTTP_2 && request.headers().len() > limits.max_headers {
        return Err(Refusal {
            status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            reason: "the request has more header fields than the limit",
            close: false,
        });
    }
    Ok(())
}

/// RFC 9112 §3.2: `400` to an HTTP/1.1 request without `Host`, and to any request with more
/// than one `Host` line or a `Host` that is not a valid `host[:port]`.
fn check_host<B>(request: &Request<B>) -> Result<(), Refusal> {
    let mut hosts = request.headers().get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) if request.version() == Version::HTTP_11 => Err(Refusal::bad_request(
            "an HTTP/1.1 request must have a Host header",
        )),
        (None, _) => Ok(()),
        (Some(_), Some(_)) => Err(Refusal::bad_request(
            "a request must not have more than one Host header",
        )),
        (Some(host), None) if is_valid_host(host) => Ok(()),
        (Some(_), None) => Err(Refusal::bad_request("the Host header is not valid")),
    }
}

/// `host[:port]`, or empty (allowed when the target has no authority). No user information:
/// `Host` never carries it.
fn is_valid_host(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    if bytes.is_empty() {
        return true;
    }
    if bytes.contains(&b'@') {
        return false;
    }
    let Ok(authority) = Authority::try_from(bytes) else {
        return false;
    };
    // `Authority` takes any port text; a port is digits (RFC 3986 §3.2.3).
    match authority.as_str().strip_prefix(authority.host()) {
        Some(rest) => rest.is_empty() || rest.strip_prefix(':').is_some_and(is_port),
        None => false,
    }
}

fn is_port(text: &str) -> bool {
    text.bytes().all(|byte| byte.is_ascii_digit())
}

/// RFC 9112 §6.1: hyper decodes `chunked` and refuses a `Transfer-Encoding` whose last coding
/// is not `chunked`; any other coding in the list (`gzip, chunked`) is one the host does not
/// decode, so `501` rather than handing the plugin a body still encoded. `chunked` twice is
/// `400`: it must be applied once.
fn check_transfer_coding<B>(request: &Request<B>) -> Result<(), Refusal> {
    let mut chunked = 0_usize;
    for value in request.headers().get_all(TRANSFER_ENCODING) {
        let codings = std::str::from_utf8(value.as_bytes()).unwrap_or("\u{fffd}");
        // A list may hold empty elements (RFC 9110 §5.6.1); they are not codings.
        for coding in codings.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            if !coding.eq_ignore_ascii_case("chunked") {
                return Err(Refusal {
                    status: StatusCode::NOT_IMPLEMENTED,
                    reason: "only the chunked transfer coding is supported",
                    close: true,
                });
            }
            chunked += 1;
        }
    }
    if chunked > 1 {
        return Err(Refusal::bad_request(
            "the chunked transfer coding may be applied only once",
        ));
    }
    Ok(())
}

/// Reads the whole body, up to the size limit. The client must keep it coming: if no bytes
/// arrive for the body read timeout, it gets `408` and the connection is closed.
pub(crate) async fn read_body(body: Incoming, limits: &Limits) -> Result<Bytes, Response<Body>> {
    let max = limits.max_request_body;
    let stall = limits.body_read_timeout;
    let mut body = Limited::new(body, max);
    let mut collected = Collected::default();
    loop {
        let frame = match tokio::time::timeout(stall, body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(None) => return Ok(collected.into_bytes()),
            Ok(Some(Err(err))) if err.is::<http_body_util::LengthLimitError>() => {
                return Err(host_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("request body is larger than {max} bytes"),
                ));
            }
            Ok(Some(Err(err))) => {
                tracing::debug!("reading the request body failed: {err}");
                return Err(host_response(
                    StatusCode::BAD_REQUEST,
                    "could not read the request body",
                ));
            }
            Err(_stalled) => {
                tracing::debug!(
                    received = collected.len(),
                    "request body stalled: no bytes for {stall:?}; answering 408"
                );
                return Err(Refusal {
                    status: StatusCode::REQUEST_TIMEOUT,
                    reason: "request body not received in time",
                    close: true,
                }
                .into_response());
            }
        };
        // Trailers are not passed to plugins.
        if let Ok(data) = frame.into_data() {
            collected.push(data);
        }
    }
}

/// A body's chunks: the first kept as it is (most bodies arrive in one), later ones appended.
#[derive(Debug, Default)]
enum Collected {
    #[default]
    Empty,
    One(Bytes),
    Many(BytesMut),
}

impl Collected {
    fn push(&mut self, data: Bytes) {
        *self = match std::mem::take(self) {
            Collected::Empty => Collected::One(data),
            Collected::One(first) => {
                let mut all = BytesMut::with_capacity(first.len() + data.len());
                all.extend_from_slice(&first);
                all.extend_from_slice(&data);
                Collected::Many(all)
            }
            Collected::Many(mut all) => {
                all.extend_from_slice(&data);
                Collected::Many(all)
            }
        };
    }

    fn len(&self) -> usize {
        match self {
            Collected::Empty => 0,
            Collected::One(data) => data.len(),
            Collected::Many(all) => all.len(),
        }
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Collected::Empty => Bytes::new(),
            Collected::One(data) => data,
            Collected::Many(all) => all.freeze(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: Version, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::get("/x").version(version);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    fn status(request: &Request<()>) -> Option<u16> {
        check_head(request, &Limits::default()).map(|response| response.status().as_u16())
    }

    #[test]
    fn host_is_required_once_in_http_1_1() {
        assert_eq!(status(&request(Version::HTTP_11, &[])), Some(400));
        assert_eq!(status(&request(Version::HTTP_10, &[])), None);
        let two = [("host", "a"), ("host", "a")];
        assert_eq!(status(&request(Version::HTTP_10, &two)), Some(400));
        for valid in ["a", "a.example:8080", "[::1]:80", "127.0.0.1", ""] {
            let one = [("host", valid)];
            assert_eq!(status(&request(Version::HTTP_11, &one)), None, "{valid}");
        }
        for invalid in ["user@a", "a b", "a:port", "a/b"] {
            let one = [("host", invalid)];
            assert_eq!(
                status(&request(Version::HTTP_11, &one)),
                Some(400),
                "{invalid}"
            );
        }
    }

    #[test]
    fn only_a_single_chunked_coding_is_accepted() {
        let with = |te: &str| {
            status(&request(
                Version::HTTP_11,
                &[("host", "a"), ("transfer-encoding", te)],
            ))
        };
        assert_eq!(with("chunked"), None);
        assert_eq!(with("Chunked"), None);
        assert_eq!(with(" , chunked"), None);
        assert_eq!(with("foo, chunked"), Some(501));
        assert_eq!(with("gzip, chunked"), Some(501));
        assert_eq!(with("chunked, chunked"), Some(400));
    }
}
