//! [`Response`]: a complete HTTP answer, built by chaining.

use crate::headers::{self, Fields};

/// The `content-type` that [`Response::text`] sets.
pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// A complete HTTP response: status, header fields and the whole body.
///
/// ```
/// use switchyard_sdk::Response;
///
/// let response = Response::new(201)
///     .header("Location", "/kv/a")
///     .body("created\n");
/// assert_eq!(response.header_value("location"), Some(&b"/kv/a"[..]));
/// ```
///
/// The host frames the body, so do not set `transfer-encoding`; a `content-length`, if set,
/// must match the body. The host refuses statuses outside 200–599 and malformed header fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    /// In the order they were added; names lower-case.
    headers: Fields,
    body: Vec<u8>,
}

impl Response {
    /// A response with `status`, no header fields and an empty body.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Fields::new(),
            body: Vec::new(),
        }
    }

    /// A `text/plain; charset=utf-8` response with `text` as its body.
    pub fn text(status: u16, text: impl Into<String>) -> Self {
        Self::new(status)
            .header("content-type", TEXT_PLAIN)
            .body(text.into())
    }

    /// Adds a header field (the name is stored lower-case; repeated names are all sent).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers
            .push((headers::normalize_name(name), value.into()));
        self
    }

    /// Replaces the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The value of the first header field called `name` (case-insensitive).
    pub fn header_value(&self, name: &str) -> Option<&[u8]> {
        headers::values(&self.headers, name).next()
    }

    /// All header fields as `(name, value)` pairs, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        headers::iter(&self.headers)
    }

    /// The body.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    /// Splits the response into status, header fields and body, for the WIT record.
    pub(crate) fn into_parts(self) -> (u16, Fields, Vec<u8>) {
        (self.status, self.headers, self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` sets the content type and the body.
    #[test]
    fn text_response() {
        let response = Response::text(404, "not found\n");
        assert_eq!(response.status(), 404);
        assert_eq!(
            response.header_value("Content-Type"),
            Some(TEXT_PLAIN.as_bytes())
        );
        assert_eq!(response.body_bytes(), b"not found\n");
    }
}
