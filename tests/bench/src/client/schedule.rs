//! When a load is measured: a warm-up, then a timed window. Only round trips that start and
//! end inside the window count toward latency; answers that arrive inside it count toward
//! throughput.

use std::time::{Duration, Instant};

/// A sliced load's measured time is cut into slices of this length, and the servers it compares
/// take turns slice by slice in a rotating order, so a burst of other work on a shared machine
/// falls on all of them alike; each figure is the median of its slices.
pub(crate) const SLICE: Duration = Duration::from_secs(1);
/// Warm-up of every slice after a load's first (which warms up for the run's warm-up time).
pub(crate) const SLICE_WARMUP: Duration = Duration::from_millis(300);

/// How long a load warms up and how long it is measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// Load before measuring starts.
    pub(crate) warmup: Duration,
    /// The measured time.
    pub(crate) measure: Duration,
}

impl Window {
    /// The window of slice number `slice` of a sliced load whose first slice warms up for
    /// `first_warmup`.
    pub(crate) fn slice(slice: u64, first_warmup: Duration) -> Self {
        Self {
            warmup: if slice == 0 {
                first_warmup
            } else {
                SLICE_WARMUP
            },
            measure: SLICE,
        }
    }
}

/// A [`Window`] placed in time, once every connection is open.
#[derive(Debug, Clone, Copy)]
pub(super) struct Schedule {
    from: Instant,
    until: Instant,
}

impl Schedule {
    /// The window starting its warm-up now.
    pub(super) fn start(window: Window) -> Self {
        let from = Instant::now() + window.warmup;
        Self {
            from,
            until: from + window.measure,
        }
    }

    /// Whether a round trip may still begin at `now`.
    pub(super) fn running(&self, now: Instant) -> bool {
        now < self.until
    }

    /// Whether an answer at `done` counts toward throughput.
    pub(super) fn counts(&self, done: Instant) -> bool {
        (self.from..self.until).contains(&done)
    }

    /// Whether a round trip from `sent` to `done` counts toward latency.
    pub(super) fn times(&self, sent: Instant, done: Instant) -> bool {
        sent >= self.from && done <= self.until
    }
}
