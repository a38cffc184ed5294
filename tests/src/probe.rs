//! Measuring the host while it is attacked: [`EchoProbe`] keeps one WebSocket session to an
//! echo plugin round-tripping small messages and records every round trip, and [`rss_bytes`]
//! reads this process's resident memory (the host runs in the test process).
//!
//! Both kinds of WebSocket the host serves can be watched: [`MANAGED_ECHO`] (the host runs the
//! framing and calls the plugin per message) and [`RAW_ECHO`] (the plugin frames the bytes of
//! an upgraded connection itself).

use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

use crate::TestHost;

/// Pause between the probe's round trips.
const PROBE_INTERVAL: Duration = Duration::from_millis(10);

/// The managed-WebSocket echo: plugin `echo`, served at this path.
pub const MANAGED_ECHO: &str = "/echo";
/// The in-guest WebSocket echo on a raw upgrade: plugin `echo-raw`, served at this path.
pub const RAW_ECHO: &str = "/echo-raw";

/// A WebSocket session to an echo that round-trips a message every [`PROBE_INTERVAL`].
pub struct EchoProbe {
    path: &'static str,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Vec<Duration>>,
}

/// What the probe saw.
#[derive(Debug)]
pub struct ProbeReport {
    /// The echo's path ([`MANAGED_ECHO`] or [`RAW_ECHO`]).
    pub path: &'static str,
    /// Round trips completed.
    pub round_trips: usize,
    /// The slowest round trip.
    pub worst: Duration,
    /// The median round trip.
    pub median: Duration,
}

impl EchoProbe {
    /// Opens a session to the echo at `path` and starts measuring. The host must serve it.
    pub async fn start(host: &TestHost, path: &'static str) -> Self {
        let (mut socket, _) = connect_async(host.ws_url(path))
            .await
            .unwrap_or_else(|err| panic!("the probe's WebSocket handshake to {path}: {err}"));
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut round_trips = Vec::new();
            for i in 0u64.. {
                if stopped.try_recv().is_ok() {
                    break;
                }
                let text = format!("probe {i}");
                let sent = Instant::now();
                socket
                    .send(Message::text(text.clone()))
                    .await
                    .unwrap_or_else(|err| panic!("the {path} probe's send: {err}"));
                let echoed = socket
                    .next()
                    .await
                    .unwrap_or_else(|| panic!("the {path} probe's session closed"))
                    .unwrap_or_else(|err| panic!("the {path} probe read no valid frame: {err}"));
                round_trips.push(sent.elapsed());
                assert_eq!(
                    echoed,
                    Message::text(text),
                    "the {path} probe got a wrong echo"
                );
                tokio::time::sleep(PROBE_INTERVAL).await;
            }
            round_trips
        });
        Self { path, stop, task }
    }

    /// Stops measuring and reports.
    pub async fn finish(self) -> ProbeReport {
        let _ = self.stop.send(());
        let path = self.path;
        let mut round_trips = self.task.await.expect("the probe task panicked");
        assert!(
            !round_trips.is_empty(),
            "the {path} probe completed no round trip"
        );
        round_trips.sort();
        ProbeReport {
            path,
            round_trips: round_trips.len(),
            worst: *round_trips.last().expect("not empty"),
            median: round_trips[round_trips.len() / 2],
        }
    }
}

/// Resident memory of this process, in bytes (Linux `/proc/self/status`).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
        .expect("VmRSS in /proc/self/status")
}

/// Raises this process's open-file limit to its hard limit, for tests that hold thousands of
/// connections (each is two descriptors here: the client's and the in-process host's).
pub fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        // If the hard limit cannot be applied the test will report what fails.
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}
