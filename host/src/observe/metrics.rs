//! The counters behind `/metrics`: plain atomics on the request and session paths, read and
//! rendered only when the admin listener is scraped. Each plugin's counters live in one
//! [`PluginMetrics`], resolved by name once when a version is loaded and then held by that
//! version, so counting is one relaxed atomic add: no label formatting, no map lookup.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds: from a fast `handle` (tens of
/// microseconds) to a slow compile (tens of seconds).
pub(crate) const LATENCY_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
    10.0,
];

/// A latency histogram of atomics: one add per bucket hit, no lock.
#[derive(Debug, Default)]
pub(crate) struct Latency {
    /// Observations per bucket (not cumulative); the last slot counts those above every bound.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    /// Sum of all observations, in nanoseconds.
    sum_nanos: AtomicU64,
}

impl Latency {
    /// Counts one observation of `took`.
    pub(crate) fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let slot = LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        if let Some(bucket) = self.buckets.get(slot) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Sum in seconds, count, and the count of each bucket by upper bound (not cumulative:
    /// the encoder adds them up), the last one's bound `f64::MAX` (which it writes `+Inf`).
    pub(crate) fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let buckets: Vec<(f64, u64)> = self
            .buckets
            .iter()
            .enumerate()
            .map(|(slot, count)| {
                let bound = LATENCY_BUCKETS.get(slot).copied().unwrap_or(f64::MAX);
                (bound, count.load(Ordering::Relaxed))
            })
            .collect();
        let count = buckets.iter().map(|(_, count)| count).sum();
        let sum = Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed)).as_secs_f64();
        (sum, count, buckets)
    }
}

/// The class of an HTTP status, the label requests are counted by.
pub(crate) const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// What kind of session: a raw upgraded byte stream, or a host-managed WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionKind {
    /// The plugin's `upgrade` export owns the connection's bytes.
    Raw = 0,
    /// The host runs the WebSocket framing and calls the plugin's events.
    Managed = 1,
}

impl SessionKind {
    pub(crate) const ALL: [Self; 2] = [Self::Raw, Self::Managed];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Managed => "managed",
        }
    }
}

/// Why a session ended, as a metric label: few values, so a dashboard can graph each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndReason {
    /// The client closed it.
    Client = 0,
    /// The plugin closed it.
    Plugin = 1,
    /// The client vanished (reset, write failure).
    ClientGone = 2,
    /// Idle, over its maximum length, or its handshake timed out.
    Timeout = 3,
    /// A CPU budget or the memory limit was exceeded.
    Limit = 4,
    /// The plugin trapped.
    Trap = 5,
    /// The host shut down.
    Shutdown = 6,
    /// A protocol error or a client too slow to take its messages.
    Failed = 7,
}

impl EndReason {
    pub(crate) const ALL: [Self; 8] = [
        Self::Client,
        Self::Plugin,
        Self::ClientGone,
        Self::Timeout,
        Self::Limit,
        Self::Trap,
        Self::Shutdown,
        Self::Failed,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client_closed",
            Self::Plugin => "plugin_closed",
            Self::ClientGone => "client_gone",
            Self::Timeout => "timeout",
            Self::Limit => "limit",
            Self::Trap => "trap",
            Self::Shutdown => "shutdown",
            Self::Failed => "failed",
        }
    }
}

const KINDS: usize = SessionKind::ALL.len();
const REASONS: usize = EndReason::ALL.len();

/// Every counter of one plugin (by name, across its versions: a dashboard follows the plugin
/// through reloads).
#[derive(Debug, Default)]
pub(crate) struct PluginMetrics {
    /// Responses by status class (index: first digit - 1).
    pub(crate) requests: [AtomicU64; STATUS_CLASSES.len()],
    /// How long `handle` took, trapped or not.
    pub(crate) handle: Latency,
    /// Sessions started, by [`SessionKind`].
    pub(crate) sessions_started: [AtomicU64; KINDS],
    /// Sessions ended, by kind and [`EndReason`].
    pub(crate) sessions_ended: [[AtomicU64; REASONS]; KINDS],
    /// Bytes read from clients: request bodies, raw session bytes, WebSocket message payloads.
    pub(crate) bytes_in: AtomicU64,
    /// Bytes written to clients: response bodies, raw session bytes, WebSocket payloads.
    pub(crate) bytes_out: AtomicU64,
    /// Traps in any export (`handle`, `upgrade`, events).
    pub(crate) traps: AtomicU64,
    /// Guest CPU time of sessions and managed WebSockets, in nanoseconds.
    pub(crate) cpu_nanos: AtomicU64,
    /// Times a new version replaced a serving one.
    pub(crate) reloads: AtomicU64,
    /// Times a file could not become a serving version (the previous one, if any, kept).
    pub(crate) load_failures: AtomicU64,
    /// How long loading took (compiling, or reading the compiled-artifact cache, and checking).
    pub(crate) load: Latency,
    /// Lines of the plugin's stdout/stderr left out by its log rate limit.
    pub(crate) guest_log_dropped: Arc<AtomicU64>,
    /// Messages its instances published to its topics.
    pub(crate) topic_publishes: AtomicU64,
    /// Subscribers' outboxes (on this host) that took one of those messages.
    pub(crate) topic_deliveries: AtomicU64,
    /// Subscribers (on this host) whose outbox was full, so the message was dropped for them.
    pub(crate) topic_drops: AtomicU64,
}

impl PluginMetrics {
    /// Counts a response with `status`.
    pub(crate) fn count_response(&self, status: u16) {
        let class = usize::from(status / 100).saturating_sub(1);
        if let Some(counter) = self.requests.get(class) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a session of `kind` starting.
    pub(crate) fn session_started(&self, kind: SessionKind) {
        add(&self.sessions_started[kind as usize], 1);
    }

    /// Counts a session of `kind` ending for `reason`.
    pub(crate) fn session_ended(&self, kind: SessionKind, reason: EndReason) {
        add(&self.sessions_ended[kind as usize][reason as usize], 1);
    }

    /// Sessions of `kind` alive now: started minus ended, so no second gauge is kept.
    pub(crate) fn live_sessions(&self, kind: SessionKind) -> u64 {
        let started = self.sessions_started[kind as usize].load(Ordering::Relaxed);
        let ended: u64 = self.sessions_ended[kind as usize]
            .iter()
            .map(|counter| counter.load(Ordering::Relaxed))
            .sum();
        started.saturating_sub(ended)
    }
}

/// Adds `count` to `counter`; relaxed, since nothing is ordered by a metric.
pub(crate) fn add(counter: &AtomicU64, count: u64) {
    counter.fetch_add(count, Ordering::Relaxed);
}

/// Reads `counter`.
pub(crate) fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Every plugin's counters, by name. Looked up when a plugin is loaded or fails to load, never
/// per request.
#[derive(Debug, Default)]
pub struct Metrics {
    plugins: Mutex<BTreeMap<String, Arc<PluginMetrics>>>,
}

impl Metrics {
    /// The counters of plugin `name`, created at zero on first use.
    pub(crate) fn plugin(&self, name: &str) -> Arc<PluginMetrics> {
        let mut plugins = self.lock();
        if let Some(metrics) = plugins.get(name) {
            return metrics.clone();
        }
        plugins.entry(name.to_owned()).or_default().clone()
    }

    /// Every plugin's counters, in name order, for a scrape.
    pub(crate) fn plugins(&self) -> Vec<(String, Arc<PluginMetrics>)> {
        self.lock()
            .iter()
            .map(|(name, metrics)| (name.clone(), metrics.clone()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<PluginMetrics>>> {
        self.plugins
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_count_each_observation_once() {
        let latency = Latency::default();
        latency.observe(Duration::from_micros(30));
        latency.observe(Duration::from_millis(3));
        latency.observe(Duration::from_secs(60));
        let (sum, count, buckets) = latency.snapshot();
        assert_eq!(count, 3);
        assert!((sum - 60.00303).abs() < 1e-6, "{sum}");
        assert_eq!(buckets.first(), Some(&(0.000_05, 1)));
        assert_eq!(buckets.iter().find(|(b, _)| *b == 0.005), Some(&(0.005, 1)));
        assert_eq!(buckets.last(), Some(&(f64::MAX, 1)));
    }

    #[test]
    fn live_sessions_are_started_minus_ended() {
        let metrics = PluginMetrics::default();
        metrics.session_started(SessionKind::Managed);
        metrics.session_started(SessionKind::Managed);
        metrics.session_ended(SessionKind::Managed, EndReason::Client);
        assert_eq!(metrics.live_sessions(SessionKind::Managed), 1);
        assert_eq!(metrics.live_sessions(SessionKind::Raw), 0);
        metrics.count_response(204);
        metrics.count_response(503);
        assert_eq!(read(&metrics.requests[1]), 1);
        assert_eq!(read(&metrics.requests[4]), 1);
    }
}
