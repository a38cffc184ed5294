//! What the connection a request arrived on is, as far as the plugin contract and the logs care:
//! whether it is TLS. The server puts it in every request's extensions; the HTTP version is the
//! request's own.

use hyper::Version;

/// The connection a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Transport {
    /// Whether the connection is TLS (`--tls-cert`).
    pub(crate) tls: bool,
}

impl Transport {
    /// How a session on this connection carries its bytes, for the line that logs its start:
    /// `h1-upgrade` (the connection itself, after a `101`) or `h2-connect` (an HTTP/2 stream
    /// opened by extended CONNECT, RFC 8441).
    pub(crate) fn session_kind(version: Version) -> &'static str {
        if version == Version::HTTP_2 {
            "h2-connect"
        } else {
            "h1-upgrade"
        }
    }
}
