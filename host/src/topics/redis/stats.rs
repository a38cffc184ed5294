//! Counters of the Redis backend, readable while the host runs (tests, the benchmark,
//! monitoring): what went to the broker, what came from it, and what was dropped.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Live counters of cross-host delivery; all zero with the `local` backend.
#[derive(Debug, Default)]
pub struct PubSubStats {
    pub(super) published: AtomicU64,
    pub(super) received: AtomicU64,
    pub(super) delivered: AtomicU64,
    pub(super) overflowed: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) rejected: AtomicU64,
    pub(super) connects: AtomicU64,
    pub(super) subscribed: AtomicU64,
    pub(super) up: AtomicBool,
}

/// A copy of [`PubSubStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PubSubCounts {
    /// Messages written to the broker (`PUBLISH` sent and answered) since start.
    pub published: u64,
    /// Messages from other hosts taken from the broker since start (this host's own, which
    /// the broker sends back, are not counted: they were delivered locally at publish time).
    pub received: u64,
    /// Local subscribers whose outbox took a message received from the broker, since start.
    pub delivered: u64,
    /// Local subscribers whose outbound buffer was full when a message from the broker came,
    /// so that it was dropped for them (their plugin's `overflow = "drop"`), since start. With
    /// `overflow = "close"` such a subscriber is cut off instead, as for a local publish.
    pub overflowed: u64,
    /// Publishes meant for other hosts that were not sent: the broker was down or the queue to
    /// it was full (at-most-once), since start.
    pub dropped: u64,
    /// Messages on a subscribed channel that were not Switchyard messages or were malformed,
    /// ignored (and logged at a bounded rate), since start.
    pub rejected: u64,
    /// Times the connection to the broker came up (the first time and every reconnection).
    pub connects: u64,
    /// Channels subscribed at the broker right now.
    pub subscribed: u64,
    /// Whether cross-host delivery is up right now.
    pub up: bool,
}

impl PubSubStats {
    /// The counters now.
    pub fn counts(&self) -> PubSubCounts {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        PubSubCounts {
            published: load(&self.published),
            received: load(&self.received),
            delivered: load(&self.delivered),
            overflowed: load(&self.overflowed),
            dropped: load(&self.dropped),
            rejected: load(&self.rejected),
            connects: load(&self.connects),
            subscribed: load(&self.subscribed),
            up: self.up.load(Ordering::Acquire),
        }
    }

    /// Whether cross-host delivery is up right now.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub(super) fn add(counter: &AtomicU64, count: usize) {
        counter.fetch_add(count as u64, Ordering::Relaxed);
    }
}
