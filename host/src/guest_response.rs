//! Checks what a guest answered before any of it reaches a client: a final status, header names
//! and values HTTP allows, and framing the host stays in charge of.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_LENGTH, HeaderName, HeaderValue, TRANSFER_ENCODING};
use hyper::{HeaderMap, Response, StatusCode};

use crate::bindings::{self, Headers};

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
    /// The host frames bodies itself.
    #[error("transfer-encoding is set by the host, not by plugins")]
    TransferEncoding,
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
    let headers = header_map(response.headers)?;
    if headers.contains_key(TRANSFER_ENCODING) {
        return Err(InvalidAnswer::TransferEncoding);
    }
    for declared in headers.get_all(CONTENT_LENGTH) {
        if declared
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            != Some(response.body.len())
        {
            return Err(InvalidAnswer::ContentLength {
                declared: String::from_utf8_lossy(declared.as_bytes()).into_owned(),
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

/// Checks and converts a guest's header list.
pub(crate) fn header_map(headers: Headers) -> Result<HeaderMap, InvalidAnswer> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| InvalidAnswer::HeaderName(name.clone()))?;
        let header_value = HeaderValue::from_bytes(&value)
            .map_err(|_| InvalidAnswer::HeaderValue(name.clone()))?;
        map.append(header_name, header_value);
    }
    Ok(map)
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
            InvalidAnswer::TransferEncoding
        );
        assert!(matches!(
            into_http(response(200, &[("content-length", b"3")], b"hi")).unwrap_err(),
            InvalidAnswer::ContentLength { .. }
        ));
        assert!(into_http(response(200, &[("content-length", b"2")], b"hi")).is_ok());
    }
}
