//! Latency histogram (HdrHistogram, nanoseconds, three significant digits) and the summary a
//! table row prints: answers per second, median and 99th percentile.

use std::time::Duration;

use hdrhistogram::Histogram;

use super::schedule::Window;

/// Slowest round trip the histogram can hold; slower ones are recorded as this.
const MAX_RECORDED: Duration = Duration::from_secs(60);

/// What one load measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Summary {
    /// Answers per second in the measured window.
    pub(crate) per_sec: f64,
    /// Median round trip.
    pub(crate) p50: Duration,
    /// 99th-percentile round trip.
    pub(crate) p99: Duration,
}

/// Round trips of every connection of one load.
pub(super) struct Latencies {
    histogram: Histogram<u64>,
    answers: u64,
}

impl Latencies {
    pub(super) fn new() -> Self {
        let max = u64::try_from(MAX_RECORDED.as_nanos()).unwrap_or(u64::MAX);
        Self {
            histogram: Histogram::new_with_bounds(1, max, 3)
                .expect("constant, valid histogram bounds"),
            answers: 0,
        }
    }

    /// One answer inside the measured window.
    pub(super) fn count_answer(&mut self) {
        self.answers += 1;
    }

    /// One round trip inside the measured window.
    pub(super) fn record(&mut self, round_trip: Duration) {
        let nanos = u64::try_from(round_trip.as_nanos()).unwrap_or(u64::MAX);
        self.histogram.saturating_record(nanos.max(1));
    }

    pub(super) fn summary(&self, window: Window) -> anyhow::Result<Summary> {
        anyhow::ensure!(
            !self.histogram.is_empty(),
            "no round trip completed inside the measured window"
        );
        let quantile = |q| Duration::from_nanos(self.histogram.value_at_quantile(q));
        Ok(Summary {
            per_sec: self.answers as f64 / window.measure.as_secs_f64(),
            p50: quantile(0.5),
            p99: quantile(0.99),
        })
    }
}
