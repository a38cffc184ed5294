//! The load client. Like the uWebSockets load tester, every connection keeps exactly one
//! message (or request) in flight: send, wait for the answer, send again. The client runs on
//! a single-threaded runtime pinned to its own core; connections are local tasks sharing one
//! latency histogram.
//!
//! - `schedule`: the warm-up and measured window every load shares.
//! - `stats`: the latency histogram and what is printed from it.
//! - `load`: a load's connections as local tasks, their round trips counted in one histogram.
//! - `ws`: WebSocket echo load, idle and quiet sessions spread over loopback source addresses;
//!   `frame`: the framing they need.
//! - `fanout`: a room of members timed from one publish to its last delivery (on one host, or
//!   split over hosts sharing topics).
//! - `crosshost`: publish on one host, timed to a member on another.
//! - `http`: keep-alive GET load and one-off requests.
//! - `tls`: WebSocket echo load over TLS (tokio-rustls and tokio-tungstenite).

pub(crate) mod crosshost;
pub(crate) mod fanout;
mod frame;
pub(crate) mod http;
mod load;
mod schedule;
mod stats;
pub(crate) mod tls;
pub(crate) mod ws;

pub(crate) use schedule::{SLICE, Window};
pub(crate) use stats::Summary;

use std::time::Duration;

/// Longest any single answer may take before the load fails instead of hanging.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest opening one connection (TCP and handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
