//! [`Request`]: one HTTP request as the client sent it.

use crate::bindings::switchyard::plugin::types::Request as WitRequest;
use crate::headers::{self, Fields};

/// One HTTP request as the client sent it, with its whole body.
///
/// Header lookups are case-insensitive. Values are raw bytes, since HTTP allows bytes that are
/// not UTF-8; [`Request::header_str`] is the shortcut for the usual text values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: String,
    path_with_query: String,
    /// In the order the client sent them; names lower-case.
    headers: Fields,
    body: Vec<u8>,
}

impl Request {
    /// A request with no headers and an empty body, e.g. to unit-test a plugin's `handle`.
    pub fn new(method: impl Into<String>, path_with_query: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            path_with_query: path_with_query.into(),
            headers: Fields::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header field (the name is stored lower-case).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers
            .push((headers::normalize_name(name), value.into()));
        self
    }

    /// Replaces the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The method, e.g. `GET`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request target as sent: path and query, e.g. `/echo/room?x=1`.
    pub fn path_with_query(&self) -> &str {
        &self.path_with_query
    }

    /// The path, without the query: `/echo/room` for `/echo/room?x=1`.
    pub fn path(&self) -> &str {
        self.split_target().0
    }

    /// The query after `?`, if there is one: `x=1` for `/echo/room?x=1`.
    pub fn query(&self) -> Option<&str> {
        self.split_target().1
    }

    /// The value of the first header field called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        headers::values(&self.headers, name).next()
    }

    /// The value of the first header field called `name`, if it is UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name)
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    /// Every value of the header fields called `name`, in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> {
        headers::values(&self.headers, name)
    }

    /// The comma-separated tokens of every header field called `name`, trimmed.
    ///
    /// This is how list-valued fields such as `Connection`, `Upgrade` or
    /// `Sec-WebSocket-Protocol` are read: `Connection: keep-alive, Upgrade` yields `keep-alive`
    /// and `Upgrade`. Compare tokens with [`str::eq_ignore_ascii_case`] where the field is
    /// case-insensitive.
    pub fn header_tokens<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        headers::tokens(&self.headers, name)
    }

    /// All header fields as `(name, value)` pairs, in the order the client sent them.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        headers::iter(&self.headers)
    }

    /// The whole request body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Takes the body out of the request.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    fn split_target(&self) -> (&str, Option<&str>) {
        match self.path_with_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (&self.path_with_query, None),
        }
    }
}

impl From<WitRequest> for Request {
    fn from(request: WitRequest) -> Self {
        Self {
            method: request.method,
            path_with_query: request.path_with_query,
            headers: request.headers,
            body: request.body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The target splits into path and query at the first `?`.
    #[test]
    fn path_and_query() {
        let request = Request::new("GET", "/kv/a?x=1&y=?");
        assert_eq!(request.path(), "/kv/a");
        assert_eq!(request.query(), Some("x=1&y=?"));
        let request = Request::new("GET", "/kv");
        assert_eq!((request.path(), request.query()), ("/kv", None));
    }

    /// Lookups ignore case and return the first field; `header_str` refuses non-UTF-8.
    #[test]
    fn header_lookup() {
        let request = Request::new("GET", "/")
            .with_header("User-Agent", "curl/8")
            .with_header("user-agent", "second")
            .with_header("x-bin", vec![0xff, 0xfe]);
        assert_eq!(request.header("USER-AGENT"), Some(&b"curl/8"[..]));
        assert_eq!(request.header_values("user-agent").count(), 2);
        assert_eq!(request.header_str("x-bin"), None);
        assert_eq!(request.header("missing"), None);
        assert_eq!(
            request.headers().next(),
            Some(("user-agent", &b"curl/8"[..]))
        );
    }

    /// `Upgrade: kv/1, websocket` offers two protocols.
    #[test]
    fn header_tokens() {
        let request = Request::new("GET", "/").with_header("upgrade", "kv/1, websocket");
        assert_eq!(
            request.header_tokens("Upgrade").collect::<Vec<_>>(),
            ["kv/1", "websocket"]
        );
    }
}
