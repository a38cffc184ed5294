//! Answers that break the host's caps or take over its job: too many header fields, too many
//! header bytes, too large a body, hop-by-hop fields, and output the host must bound (a flood of
//! log lines, output without a final newline).

use switchyard_sdk::{Response, Upgrade};

/// Header fields in `many-headers` and `upgrade-many-headers`: past the 32,768 fields at which
/// `http`'s `HeaderMap` panics.
const MANY_HEADERS: usize = 40_000;

/// The body of `huge-body`: 40 MiB, within the default 64 MiB memory limit.
const HUGE_BODY: usize = 40 << 20;

/// The value of `huge-header-value`: one field larger than the host's header cap.
const HUGE_HEADER_VALUE: usize = 100 * 1024;

/// Lines `log-flood` writes in one call.
pub(crate) const FLOOD_LINES: usize = 20_000;

/// 200 with [`MANY_HEADERS`] fields.
pub(crate) fn many_headers() -> Response {
    (0..MANY_HEADERS).fold(Response::text(200, "many headers"), |response, i| {
        response.header(format!("x-{i}"), "v")
    })
}

/// An upgrade to `protocol` with [`MANY_HEADERS`] more fields.
pub(crate) fn upgrade_many_headers(protocol: &str) -> Upgrade {
    (0..MANY_HEADERS).fold(Upgrade::to(protocol), |upgrade, i| {
        upgrade.header(format!("x-{i}"), "v")
    })
}

/// 200 with a [`HUGE_BODY`]-byte body.
pub(crate) fn huge_body() -> Response {
    Response::new(200).body(vec![b'x'; HUGE_BODY])
}

/// 200 with one [`HUGE_HEADER_VALUE`]-byte header value.
pub(crate) fn huge_header_value() -> Response {
    Response::text(200, "huge header value").header("x-huge", vec![b'v'; HUGE_HEADER_VALUE])
}

/// 200 with the connection-management fields a proxy or the host sets, never an origin.
pub(crate) fn hop_by_hop() -> Response {
    Response::text(200, "hop-by-hop")
        .header("connection", "close, upgrade")
        .header("upgrade", "h2c")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
}

/// An upgrade to `protocol` that also tries to manage the connection.
pub(crate) fn upgrade_hop_by_hop(protocol: &str) -> Upgrade {
    Upgrade::to(protocol)
        .header("connection", "close")
        .header("keep-alive", "timeout=5")
}

/// Writes output without a final newline on both streams, then 200.
pub(crate) fn print_no_newline() -> Response {
    print!("misbehave: stdout without a newline");
    eprint!("misbehave: stderr without a newline");
    Response::text(200, "printed")
}

/// Writes [`FLOOD_LINES`] lines to stdout in one call, then 200.
pub(crate) fn log_flood() -> Response {
    for i in 0..FLOOD_LINES {
        println!("misbehave: flood line {i}");
    }
    Response::text(200, "flooded")
}
