//! Counters of live things (instances, sessions) that can refuse to grow past a limit, and
//! whose guards count down on drop so nothing is ever leaked by an early return or a trap.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// How many of something are alive right now.
#[derive(Debug, Default)]
pub struct Gauge {
    live: AtomicU32,
}

impl Gauge {
    /// How many are alive.
    pub fn live(&self) -> u32 {
        self.live.load(Ordering::Acquire)
    }

    /// Counts one more, without limit, until the guard is dropped.
    pub(crate) fn enter(self: &Arc<Self>) -> GaugeGuard {
        self.live.fetch_add(1, Ordering::AcqRel);
        GaugeGuard(self.clone())
    }

    /// Counts one more if fewer than `max` are alive.
    pub(crate) fn try_enter(self: &Arc<Self>, max: u32) -> Option<GaugeGuard> {
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |live| {
                (live < max).then_some(live + 1)
            })
            .ok()
            .map(|_| GaugeGuard(self.clone()))
    }
}

/// One counted thing; dropping it counts it out.
#[derive(Debug)]
pub struct GaugeGuard(Arc<Gauge>);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_limit_and_counts_down_on_drop() {
        let gauge = Arc::new(Gauge::default());
        let first = gauge.try_enter(2).unwrap();
        let _second = gauge.try_enter(2).unwrap();
        assert!(gauge.try_enter(2).is_none());
        drop(first);
        assert_eq!(gauge.live(), 1);
        assert!(gauge.try_enter(2).is_some());
    }
}
