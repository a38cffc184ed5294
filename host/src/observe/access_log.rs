//! The access log (`--access-log`): one structured line per request and one per ended session,
//! written through `tracing` under their own target, so an operator can route or filter them
//! (`RUST_LOG=switchyard::access=info`) apart from the host's other lines, and `--log-format
//! json` makes each one a JSON object.

use std::time::Duration;

use hyper::Version;

use crate::observe::metrics::{EndReason, SessionKind};

/// The `tracing` target of every access-log line.
pub const TARGET: &str = "switchyard::access";

/// What one answered request logs.
#[derive(Debug)]
pub(crate) struct RequestLine<'a> {
    pub(crate) method: &'a str,
    /// The request's path as the client sent it (escaped: a client chooses it).
    pub(crate) path: &'a str,
    pub(crate) status: u16,
    /// The plugin that answered; `None` when no plugin serves the path (or it was refused
    /// before routing).
    pub(crate) plugin: Option<(&'a str, &'a str)>,
    pub(crate) version: Version,
    pub(crate) duration: Duration,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
}

/// Writes the line of one answered request.
pub(crate) fn request(line: &RequestLine<'_>) {
    let (plugin, version) = line.plugin.unwrap_or(("-", "-"));
    tracing::info!(
        target: TARGET,
        method = line.method,
        path = %line.path.escape_debug(),
        status = line.status,
        plugin,
        version,
        http = http_version(line.version),
        duration_us = micros(line.duration),
        bytes_in = line.bytes_in,
        bytes_out = line.bytes_out,
        "request"
    );
}

/// What one ended session logs.
#[derive(Debug)]
pub(crate) struct SessionLine<'a> {
    pub(crate) plugin: &'a str,
    pub(crate) version: &'a str,
    pub(crate) kind: SessionKind,
    pub(crate) duration: Duration,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) reason: EndReason,
}

/// Writes the line of one ended session.
pub(crate) fn session(line: &SessionLine<'_>) {
    tracing::info!(
        target: TARGET,
        plugin = line.plugin,
        version = line.version,
        kind = line.kind.as_str(),
        duration_us = micros(line.duration),
        bytes_in = line.bytes_in,
        bytes_out = line.bytes_out,
        reason = line.reason.as_str(),
        "session"
    );
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// The protocol as operators write it.
fn http_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/?",
    }
}
