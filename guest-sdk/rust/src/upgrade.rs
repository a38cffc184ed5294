//! [`Upgrade`]: a switch to another protocol on this connection.

use crate::headers::{self, Fields};

/// An answer that switches the connection to another protocol, as in `101 Switching Protocols`.
///
/// The host checks that the client offered the protocol (its `Upgrade:` header names the token)
/// and adds `connection: upgrade`, then hands the connection to
/// `Plugin::upgrade` (the `raw-upgrade` feature) on the same instance.
///
/// ```
/// use switchyard_sdk::Upgrade;
///
/// let upgrade = Upgrade::to("kv/1").header("x-kv-version", "1");
/// assert_eq!(upgrade.header_value("upgrade"), Some(&b"kv/1"[..]));
/// assert_eq!(upgrade.status_code(), None); // 101
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// `None` answers 101, the only status the host accepts today.
    status: Option<u16>,
    /// Includes the `upgrade` field; names lower-case.
    headers: Fields,
}

impl Upgrade {
    /// Switches to `protocol`, one of the tokens the client offered in its `Upgrade:` header.
    pub fn to(protocol: impl Into<Vec<u8>>) -> Self {
        Self {
            status: None,
            headers: vec![("upgrade".to_owned(), protocol.into())],
        }
    }

    /// Adds a header field (the name is stored lower-case).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers
            .push((headers::normalize_name(name), value.into()));
        self
    }

    /// Answers with `status` instead of 101.
    ///
    /// The contract reserves this for later; the host refuses anything but 101 today, so this
    /// exists to test that refusal.
    pub fn status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// The status to answer with; `None` means 101.
    pub fn status_code(&self) -> Option<u16> {
        self.status
    }

    /// The value of the first header field called `name` (case-insensitive).
    pub fn header_value(&self, name: &str) -> Option<&[u8]> {
        headers::values(&self.headers, name).next()
    }

    /// All header fields as `(name, value)` pairs, in order, `upgrade` first.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        headers::iter(&self.headers)
    }

    /// Splits the upgrade into status and header fields, for the WIT record.
    pub(crate) fn into_parts(self) -> (Option<u16>, Fields) {
        (self.status, self.headers)
    }
}
