//! Test harness for Switchyard's end-to-end tests: starts the real host on `127.0.0.1:0` with
//! real plugins built from source, captures its log, and speaks HTTP and raw TCP to it.
//!
//! # Layout
//! - [`host`]: [`TestHost`], one running host per test with its own plugins folder.
//! - [`logs`]: captures every log line, so a test can assert what the host reported.
//! - [`metrics`]: the Prometheus text of `/metrics`, parsed into samples a test can look up.
//! - [`client`]: a small HTTP/1.1 client and raw-TCP helpers.
//! - [`python`]: whether the Python plugins were built (skip or fail loudly).
//! - [`tls`]: a certificate made by the test, and HTTPS (HTTP/1.1, HTTP/2) and RFC 8441
//!   clients that trust it.
//! - [`probe`]: a WebSocket session that keeps measuring round trips while a test attacks
//!   the host, and the process's memory use.
//! - [`chat`]: the `chat` example's events, probes and event reading, for every chat test.
//!
//! For topics across hosts, real external processes, each stopped when dropped:
//! - [`child`]: one running program with its output kept; free loopback ports.
//! - [`redis`]: a `redis-server` on a free loopback port that can be killed and restarted on
//!   the same port.
//! - [`nginx`]: `nginx` in front of several hosts, from the README's configuration.
//! - [`host_process`]: the `switchyard` binary as a process of its own, with `--pubsub`.
//! - [`services`]: whether redis-server and nginx are installed (skip or fail loudly).

pub mod chat;
pub mod child;
pub mod client;
pub mod host;
pub mod host_process;
pub mod logs;
pub mod metrics;
pub mod nginx;
pub mod probe;
pub mod python;
pub mod redis;
pub mod services;
pub mod tls;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

pub use host::TestHost;

/// Longest any single test may run before it fails instead of hanging CI.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The `.wasm` file the build script compiled for plugin crate `name` (cargo names the file
/// after the library, with `_` for `-`).
pub fn built_plugin(name: &str) -> PathBuf {
    let library = name.replace('-', "_");
    PathBuf::from(env!("SWITCHYARD_TEST_PLUGINS")).join(format!("{library}.wasm"))
}

/// How often [`eventually`] looks again.
const EVENTUALLY_POLL: Duration = Duration::from_millis(10);

/// Waits until `probe` holds, looking every 10 ms; panics naming `what` if it does not hold
/// within `within`.
pub async fn eventually(what: &str, within: Duration, mut probe: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !probe() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not true within {within:?}: {what}"
        );
        tokio::time::sleep(EVENTUALLY_POLL).await;
    }
}

/// Runs `test` and fails if it takes longer than [`TEST_TIMEOUT`].
pub async fn bounded<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_TIMEOUT, test)
        .await
        .expect("the test did not finish within its time limit")
}
