//! One load: its connections run as local tasks, each keeping one round trip in flight, and
//! every round trip is counted against the load's [`Schedule`] in one shared histogram.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::time::Instant;

use anyhow::Context as _;

use super::schedule::{Schedule, Window};
use super::stats::{Latencies, Summary};

/// The round trips of one load as each of its connections sees them: whether to begin another,
/// and where a finished one is counted. Cloned into every connection's task (one thread).
#[derive(Clone)]
pub(super) struct RoundTrips {
    schedule: Schedule,
    latencies: Rc<RefCell<Latencies>>,
}

impl RoundTrips {
    /// The instant a new round trip begins, or `None` once the measured window is over.
    pub(super) fn begin(&self) -> Option<Instant> {
        let now = Instant::now();
        self.schedule.running(now).then_some(now)
    }

    /// Counts the round trip that began at `sent` and has just ended: toward throughput if it
    /// ended inside the window, toward latency if it lay wholly inside it.
    pub(super) fn end(&self, sent: Instant) {
        let done = Instant::now();
        let mut latencies = self.latencies.borrow_mut();
        if self.schedule.counts(done) {
            latencies.count_answer();
        }
        if self.schedule.times(sent, done) {
            latencies.record(done - sent);
        }
    }
}

/// Runs `each(connection, round_trips)` for every connection as a local task, the window
/// starting now, and summarises their round trips. Every task is awaited (none is left
/// running); the first error any of them reported fails the load, `what` naming it.
pub(super) async fn run<C, F, Fut>(
    connections: Vec<C>,
    window: Window,
    what: &str,
    each: F,
) -> anyhow::Result<Summary>
where
    F: Fn(C, RoundTrips) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + 'static,
{
    let latencies = Rc::new(RefCell::new(Latencies::new()));
    let round_trips = RoundTrips {
        schedule: Schedule::start(window),
        latencies: latencies.clone(),
    };
    let tasks: Vec<_> = connections
        .into_iter()
        .map(|connection| tokio::task::spawn_local(each(connection, round_trips.clone())))
        .collect();
    let mut result = Ok(());
    for task in tasks {
        let outcome = task
            .await
            .with_context(|| format!("{what}'s task panicked"));
        if result.is_ok() {
            result = outcome.and_then(|inner| inner);
        }
    }
    result?;
    let summary = latencies.borrow().summary(window)?;
    Ok(summary)
}
