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

impl Summary {
    /// The median of each figure over several measurements of one load (`None` if there are
    /// none): robust against the few that a burst of other work on the machine stretched.
    pub(crate) fn median_of(summaries: &[Summary]) -> Option<Summary> {
        fn median<T: Copy + PartialOrd>(mut values: Vec<T>) -> Option<T> {
            values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
            values.get(values.len() / 2).copied()
        }
        Some(Summary {
            per_sec: median(summaries.iter().map(|s| s.per_sec).collect())?,
            p50: median(summaries.iter().map(|s| s.p50).collect())?,
            p99: median(summaries.iter().map(|s| s.p99).collect())?,
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_summaries_takes_each_figure_apart() {
        let summary = |per_sec, p50, p99| Summary {
            per_sec,
            p50: Duration::from_micros(p50),
            p99: Duration::from_micros(p99),
        };
        let median = Summary::median_of(&[
            summary(10.0, 5, 900),
            summary(30.0, 1, 100),
            summary(20.0, 3, 300),
        ])
        .unwrap();
        assert_eq!(median.per_sec, 20.0);
        assert_eq!(median.p50, Duration::from_micros(3));
        assert_eq!(median.p99, Duration::from_micros(300));
        assert!(Summary::median_of(&[]).is_none());
    }
}
