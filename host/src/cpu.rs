//! CPU limits for guest code, enforced with epoch interruption.
//!
//! An engine-wide ticker advances the epoch every [`EPOCH_TICK`]; each store's deadline is one
//! tick ahead, so running guest code reaches [`CpuMeter::on_epoch`] once per tick. There the
//! guest yields to tokio (it never holds a worker thread), and during an upgraded session its
//! CPU time is checked against the session's budgets. Call hooks tell when guest code starts and
//! stops running, so time spent waiting (for bytes, or in a host call) is not counted.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::{CallHook, UpdateDeadline};

/// How often running guest code is interrupted to yield and be measured.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Which CPU limit a session broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CpuExceeded {
    /// All the guest CPU time the session may use is used up.
    SessionBudget,
    /// One wake-up ran too long without returning to the host: a loop.
    RunLimit,
}

/// Budgets in force while an upgraded session runs.
#[derive(Debug, Clone, Copy)]
struct SessionBudgets {
    total: Duration,
    per_run: Duration,
}

/// Measures how long a store's guest code has run.
#[derive(Debug, Default)]
pub(crate) struct CpuMeter {
    /// `None` while `handle` runs: its limit is wall time, enforced by the caller's timeout.
    session: Option<SessionBudgets>,
    /// Guest CPU time so far in the session.
    spent: Duration,
    /// Guest CPU time since the guest last started running (a wake-up).
    this_run: Duration,
    /// When the guest last started or resumed running, if it is running now.
    running_since: Option<Instant>,
    /// Set by the yield future when a guest that yielded at a tick resumes; the meter cannot be
    /// reached from that future, hence the shared slot.
    resumed_at: Arc<Mutex<Option<Instant>>>,
    /// The limit that ended the session, if one did.
    exceeded: Option<CpuExceeded>,
}

impl CpuMeter {
    /// From now on, enforce session budgets: `total` guest CPU time in all, and `per_run` for
    /// a single wake-up.
    pub(crate) fn start_session(&mut self, total: Duration, per_run: Duration) {
        self.session = Some(SessionBudgets { total, per_run });
        self.spent = Duration::ZERO;
    }

    /// The limit that ended the session, if any.
    pub(crate) fn exceeded(&self) -> Option<CpuExceeded> {
        self.exceeded
    }

    /// Guest CPU time used so far in the session.
    pub(crate) fn spent(&self) -> Duration {
        self.spent
    }

    /// Follows the guest in and out of its code.
    pub(crate) fn on_call_hook(&mut self, hook: CallHook) {
        match hook {
            CallHook::CallingWasm => {
                self.take_resumed();
                self.this_run = Duration::ZERO;
                self.running_since = Some(Instant::now());
            }
            // A host call (a WASI import, a stream operation) is waiting, not computing.
            CallHook::CallingHost => self.pause(),
            CallHook::ReturningFromHost => self.running_since = Some(Instant::now()),
            CallHook::ReturningFromWasm => {
                self.pause();
                self.this_run = Duration::ZERO;
            }
        }
    }

    /// Called at every epoch tick reached in guest code: interrupt the guest if it is over a
    /// budget, otherwise let tokio run other tasks before it continues.
    pub(crate) fn on_epoch(&mut self) -> UpdateDeadline {
        self.pause();
        if let Some(budgets) = self.session {
            let exceeded = if self.spent > budgets.total {
                Some(CpuExceeded::SessionBudget)
            } else if self.this_run > budgets.per_run {
                Some(CpuExceeded::RunLimit)
            } else {
                None
            };
            if exceeded.is_some() {
                self.exceeded = exceeded;
                return UpdateDeadline::Interrupt;
            }
        }
        UpdateDeadline::YieldCustom(1, self.yield_then_resume())
    }

    /// Adds the time since the guest started running to the totals; it is not running now.
    fn pause(&mut self) {
        self.take_resumed();
        if let Some(since) = self.running_since.take() {
            let ran = since.elapsed();
            self.spent += ran;
            self.this_run += ran;
        }
    }

    fn take_resumed(&mut self) {
        let resumed = self
            .resumed_at
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .take();
        if resumed.is_some() {
            self.running_since = resumed;
        }
    }

    /// Yields to tokio once, then notes when the guest got the thread back.
    fn yield_then_resume(&self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let resumed_at = self.resumed_at.clone();
        Box::pin(async move {
            tokio::task::yield_now().await;
            *resumed_at
                .lock()
                .unwrap_or_else(|poison| poison.into_inner()) = Some(Instant::now());
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Busy time between hooks counts; time outside guest code does not.
    #[test]
    fn counts_only_time_in_guest_code() {
        let mut meter = CpuMeter::default();
        meter.start_session(Duration::from_secs(10), Duration::from_secs(10));
        meter.on_call_hook(CallHook::CallingWasm);
        std::thread::sleep(Duration::from_millis(20));
        meter.on_call_hook(CallHook::ReturningFromWasm);
        std::thread::sleep(Duration::from_millis(50));
        let spent = meter.spent();
        assert!(spent >= Duration::from_millis(20), "{spent:?}");
        assert!(spent < Duration::from_millis(50), "{spent:?}");
    }

    /// A wake-up over its limit is interrupted at the next tick.
    #[test]
    fn interrupts_a_run_over_its_limit() {
        let mut meter = CpuMeter::default();
        meter.start_session(Duration::from_secs(10), Duration::from_millis(5));
        meter.on_call_hook(CallHook::CallingWasm);
        std::thread::sleep(Duration::from_millis(10));
        assert!(matches!(meter.on_epoch(), UpdateDeadline::Interrupt));
        assert_eq!(meter.exceeded(), Some(CpuExceeded::RunLimit));
    }

    /// Outside a session the meter only ever yields.
    #[test]
    fn handle_is_never_interrupted_by_the_meter() {
        let mut meter = CpuMeter::default();
        meter.on_call_hook(CallHook::CallingWasm);
        std::thread::sleep(Duration::from_millis(5));
        assert!(matches!(
            meter.on_epoch(),
            UpdateDeadline::YieldCustom(1, _)
        ));
    }
}
