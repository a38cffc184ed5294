//! CPU limits for upgraded sessions, and `handle`'s deadline, enforced with epoch interruption.
//!
//! An engine-wide ticker advances the epoch every [`EPOCH_TICK`]; each store's deadline is one
//! tick ahead, so running guest code reaches [`CpuMeter::on_epoch`] once per tick. There the
//! guest yields to tokio (it never holds a worker thread), during an upgraded session the
//! session's CPU time is checked against its budgets, and during `handle` its wall-time
//! deadline: a `handle` past it is interrupted at its next tick. The caller's timeout alone would
//! only fire when the task is next polled, which under load (many spinning tasks taking turns of
//! a tick each) can be seconds late.
//!
//! A session's CPU time is the time the host spends polling it ([`Metered`]): guest code plus
//! the host's own work for it (its stream I/O), but never the time it waits for bytes or
//! sleeps. Measuring per poll costs two clock reads per wake-up; wasmtime's call hooks, which
//! would separate guest from host time exactly, fire on every guest↔host transition (about a
//! dozen per WebSocket message) and cost several per cent of an echo's throughput.
//!
//! Wall time inside a poll also counts the time the thread was descheduled, which on an
//! oversubscribed core can pass the per-wake-up limit for an event that used microseconds of CPU.
//! So that limit is confirmed before it closes anything: once the wall figure is over it, the
//! guest must also burn [`RUN_LIMIT_CONFIRMATION`] of its thread's own CPU clock (read only then,
//! at ticks: a system call of about half a microsecond, too dear for every poll) before the wake-up
//! is interrupted. A loop is caught that much later; a stalled thread is never taken for one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use wasmtime::UpdateDeadline;

/// How often running guest code is interrupted to yield and be measured. Every request waits
/// about one tick per spinning guest ahead of it in the scheduler's queue, so this sets how much
/// a looping plugin delays the others: 2 ms instead of 10 ms cut `/hello`'s median delay under
/// 400 looping requests from 70 ms to 15 ms (README, Limits). The ticker thread's 500 wake-ups a
/// second are the whole cost: a guest that runs for less than a tick is not made to yield
/// (see [`CpuMeter::on_epoch`]).
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(2);

/// CPU time, on the thread's own clock, that a guest must burn after its wake-up's wall-time figure
/// passed the per-wake-up limit before it is interrupted: five ticks, long enough that a thread
/// descheduled mid-event (which burns microseconds) never reaches it, short enough to add little to
/// a loop's run.
pub(crate) const RUN_LIMIT_CONFIRMATION: Duration = Duration::from_millis(10);

/// Which CPU limit a session broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CpuExceeded {
    /// All the CPU time the session may use is used up.
    SessionBudget,
    /// One wake-up ran too long without returning to the host: a loop.
    RunLimit,
}

/// A store's view of CPU limits: `handle`'s wall-time deadline while it runs, a session's clock
/// once it is upgraded.
#[derive(Debug, Default)]
pub(crate) struct CpuMeter {
    session: Option<Arc<SessionCpu>>,
    /// The limit that ended the session, if one did.
    exceeded: Option<CpuExceeded>,
    /// When the `handle` in progress must have answered.
    handle_deadline: Option<Instant>,
    /// Set when `handle` was interrupted at its deadline.
    handle_overran: bool,
    /// Set while a wake-up's wall-time figure is over the per-wake-up limit and the thread's CPU
    /// clock has not yet confirmed it.
    suspected_loop: Option<SuspectedLoop>,
}

/// A wake-up suspected of looping, and how much of the thread's CPU clock confirms it.
#[derive(Debug)]
struct SuspectedLoop {
    /// The wake-up ([`SessionCpu::wake_up`]) under suspicion; a later one starts afresh.
    wake_up: u64,
    /// The poll in progress when last looked at ([`SessionCpu::poll`]): the thread's clock only
    /// measures this guest within one poll (between polls, the thread runs other tasks).
    poll: u64,
    /// The thread's CPU clock when that poll started (or when the suspicion began in it).
    poll_cpu_start: Duration,
    /// The thread's CPU clock at the last tick.
    last_cpu: Duration,
    /// The guest's CPU time confirmed in the suspected wake-up's earlier polls.
    confirmed_before: Duration,
}

impl SuspectedLoop {
    /// Starts suspecting the wake-up in progress, counting from now.
    fn begin(session: &SessionCpu) -> Self {
        let now = thread_cpu_time();
        session.suspected.store(true, Ordering::Relaxed);
        Self {
            wake_up: session.wake_up(),
            poll: session.poll(),
            poll_cpu_start: now,
            last_cpu: now,
            confirmed_before: Duration::ZERO,
        }
    }

    /// Counts the guest's CPU time up to now; true once it confirms the loop.
    fn confirm(&mut self, session: &SessionCpu) -> bool {
        if self.wake_up != session.wake_up() {
            *self = Self::begin(session);
            return false;
        }
        let now = thread_cpu_time();
        let poll = session.poll();
        if self.poll != poll {
            // A new poll of the same wake-up: it read the clock as it started, since the
            // suspicion was already set then.
            self.confirmed_before += self.last_cpu.saturating_sub(self.poll_cpu_start);
            self.poll = poll;
            self.poll_cpu_start =
                Duration::from_nanos(session.poll_thread_cpu.load(Ordering::Relaxed));
        }
        self.last_cpu = now;
        self.confirmed_before + now.saturating_sub(self.poll_cpu_start) >= RUN_LIMIT_CONFIRMATION
    }
}

/// The calling thread's CPU time.
fn thread_cpu_time() -> Duration {
    let time = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(time.tv_sec).unwrap_or(0),
        u32::try_from(time.tv_nsec).unwrap_or(0),
    )
}

impl CpuMeter {
    /// From now on, interrupt guest code at the first tick after `deadline` (`None`: never).
    pub(crate) fn set_handle_deadline(&mut self, deadline: Option<Instant>) {
        self.handle_deadline = deadline;
    }

    /// Whether `handle` was interrupted at its deadline.
    pub(crate) fn handle_overran(&self) -> bool {
        self.handle_overran
    }

    /// From now on, enforce `session`'s budgets at every epoch tick.
    pub(crate) fn start_session(&mut self, session: Arc<SessionCpu>) {
        self.session = Some(session);
        self.suspected_loop = None;
    }

    /// Stops measuring against the session's budgets: the instance waits, parked, for another
    /// connection's event.
    pub(crate) fn end_session(&mut self) {
        self.session = None;
        self.suspected_loop = None;
    }

    /// The limit that ended the session, if any.
    pub(crate) fn exceeded(&self) -> Option<CpuExceeded> {
        self.exceeded
    }

    /// Called at every epoch tick reached in guest code: interrupt the guest if its session is
    /// over a budget, otherwise let tokio run other tasks before it continues.
    pub(crate) fn on_epoch(&mut self) -> UpdateDeadline {
        if self
            .handle_deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            self.handle_overran = true;
            return UpdateDeadline::Interrupt;
        }
        if let Some(session) = &self.session {
            match session.check() {
                Err(CpuExceeded::RunLimit) => {
                    let confirmed = match &mut self.suspected_loop {
                        Some(suspicion) => suspicion.confirm(session),
                        None => {
                            self.suspected_loop = Some(SuspectedLoop::begin(session));
                            false
                        }
                    };
                    if confirmed {
                        self.exceeded = Some(CpuExceeded::RunLimit);
                        return UpdateDeadline::Interrupt;
                    }
                    // Not confirmed yet: carry on as any long run does. A poll that has only
                    // just begun runs on to its next tick, so that the clock sees it run.
                    if session.running() < EPOCH_TICK {
                        return UpdateDeadline::Continue(1);
                    }
                    session.yielding.store(true, Ordering::Relaxed);
                }
                Err(exceeded) => {
                    self.exceeded = Some(exceeded);
                    return UpdateDeadline::Interrupt;
                }
                // The epoch moved on while the session waited for bytes, and the guest has only
                // just resumed: it has not held the worker for a tick, so a yield would only
                // cost it a trip through the scheduler (on a busy echo, one per message).
                Ok(running) if running < EPOCH_TICK => return UpdateDeadline::Continue(1),
                Ok(_) => session.yielding.store(true, Ordering::Relaxed),
            }
        }
        UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
    }
}

/// The CPU clock of one upgraded session, shared by the future that drives the session
/// ([`Metered`]) and the store's epoch callback (which runs inside that future's polls).
///
/// Atomics rather than a lock: both sides run on the same thread, one poll at a time; the
/// atomics only make the sharing safe to express.
#[derive(Debug)]
pub(crate) struct SessionCpu {
    total_budget: Duration,
    run_limit: Duration,
    /// The instant the nanosecond figures below count from.
    origin: Instant,
    /// When the poll in progress started, in nanoseconds after `origin`.
    poll_started: AtomicU64,
    /// CPU time of all finished polls, in nanoseconds.
    spent: AtomicU64,
    /// CPU time of the current wake-up's earlier polls (a wake-up spans several polls when the
    /// guest yields at epoch ticks), in nanoseconds.
    run_before: AtomicU64,
    /// Set when the guest yields at a tick: the next poll continues the same wake-up.
    yielding: AtomicBool,
    /// How many wake-ups have ended: the number of the one in progress.
    wake_ups: AtomicU64,
    /// Set while the wake-up in progress is suspected of looping ([`CpuMeter::on_epoch`]):
    /// only then does each poll read the thread's CPU clock as it starts.
    suspected: AtomicBool,
    /// The thread's CPU clock when the poll in progress started, in nanoseconds; kept only
    /// while `suspected`.
    poll_thread_cpu: AtomicU64,
}

impl SessionCpu {
    /// A clock allowing `total_budget` in all and `run_limit` per wake-up.
    pub(crate) fn new(total_budget: Duration, run_limit: Duration) -> Self {
        Self {
            total_budget,
            run_limit,
            origin: Instant::now(),
            poll_started: AtomicU64::new(0),
            spent: AtomicU64::new(0),
            run_before: AtomicU64::new(0),
            yielding: AtomicBool::new(false),
            wake_ups: AtomicU64::new(0),
            suspected: AtomicBool::new(false),
            poll_thread_cpu: AtomicU64::new(0),
        }
    }

    /// The number of the wake-up in progress.
    fn wake_up(&self) -> u64 {
        self.wake_ups.load(Ordering::Relaxed)
    }

    /// How long the poll in progress has run.
    fn running(&self) -> Duration {
        Duration::from_nanos(self.now_ns().saturating_sub(self.poll()))
    }

    /// The poll in progress, named by when it started.
    fn poll(&self) -> u64 {
        self.poll_started.load(Ordering::Relaxed)
    }

    /// CPU time used so far, polls in progress excluded.
    pub(crate) fn spent(&self) -> Duration {
        Duration::from_nanos(self.spent.load(Ordering::Relaxed))
    }

    fn now_ns(&self) -> u64 {
        // u64 nanoseconds last 584 years.
        self.origin.elapsed().as_nanos() as u64
    }

    fn poll_started(&self) {
        self.poll_started.store(self.now_ns(), Ordering::Relaxed);
        if self.suspected.load(Ordering::Relaxed) {
            // u64 nanoseconds of one thread's CPU last 584 years.
            let cpu = thread_cpu_time().as_nanos() as u64;
            self.poll_thread_cpu.store(cpu, Ordering::Relaxed);
        }
    }

    fn poll_ended(&self) {
        let ran = self
            .now_ns()
            .saturating_sub(self.poll_started.load(Ordering::Relaxed));
        self.spent.fetch_add(ran, Ordering::Relaxed);
        if self.yielding.swap(false, Ordering::Relaxed) {
            self.run_before.fetch_add(ran, Ordering::Relaxed);
        } else {
            // The guest went back to waiting on its own: the wake-up is over.
            self.run_before.store(0, Ordering::Relaxed);
            self.wake_ups.fetch_add(1, Ordering::Relaxed);
            self.suspected.store(false, Ordering::Relaxed);
        }
    }

    /// How long the poll in progress has run, or which budget the session has used up
    /// counting it.
    fn check(&self) -> Result<Duration, CpuExceeded> {
        let current = Duration::from_nanos(
            self.now_ns()
                .saturating_sub(self.poll_started.load(Ordering::Relaxed)),
        );
        let spent = self.spent() + current;
        let this_run = Duration::from_nanos(self.run_before.load(Ordering::Relaxed)) + current;
        if spent > self.total_budget {
            Err(CpuExceeded::SessionBudget)
        } else if this_run > self.run_limit {
            Err(CpuExceeded::RunLimit)
        } else {
            Ok(current)
        }
    }
}

/// A future whose polls are timed on a [`SessionCpu`].
pub(crate) struct Metered<F> {
    inner: Pin<Box<F>>,
    cpu: Arc<SessionCpu>,
}

impl<F> Metered<F> {
    pub(crate) fn new(inner: F, cpu: Arc<SessionCpu>) -> Self {
        Self {
            inner: Box::pin(inner),
            cpu,
        }
    }
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.cpu.poll_started();
        let polled = self.inner.as_mut().poll(cx);
        self.cpu.poll_ended();
        polled
    }
}

/// Runs `inner` with its polls timed on `cpu`, like [`Metered`] but without boxing it: for a
/// short call made once per event, where an allocation per call would show.
pub(crate) async fn metered<F: Future>(inner: F, cpu: &SessionCpu) -> F::Output {
    let mut inner = std::pin::pin!(inner);
    std::future::poll_fn(|cx| {
        cpu.poll_started();
        let polled = inner.as_mut().poll(cx);
        cpu.poll_ended();
        polled
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls the future once, sleeping `busy` inside the poll to stand for work.
    fn poll_once_busy(cpu: &Arc<SessionCpu>, busy: Duration) {
        let mut future = Metered::new(
            async move {
                std::thread::sleep(busy);
                std::future::pending::<()>().await
            },
            cpu.clone(),
        );
        let waker = std::task::Waker::noop();
        let polled = Pin::new(&mut future).poll(&mut Context::from_waker(waker));
        assert!(polled.is_pending());
    }

    /// Time inside polls counts; time between them does not.
    #[test]
    fn counts_only_time_inside_polls() {
        let cpu = Arc::new(SessionCpu::new(
            Duration::from_secs(10),
            Duration::from_secs(10),
        ));
        poll_once_busy(&cpu, Duration::from_millis(20));
        std::thread::sleep(Duration::from_millis(50));
        let spent = cpu.spent();
        assert!(spent >= Duration::from_millis(20), "{spent:?}");
        assert!(spent < Duration::from_millis(50), "{spent:?}");
    }

    /// Burns the thread's CPU (not just wall time) for `busy`.
    fn spin(busy: Duration) {
        let start = thread_cpu_time();
        let mut turns = 0_u64;
        while thread_cpu_time().saturating_sub(start) < busy && turns < 100_000_000 {
            turns += 1;
            std::hint::black_box(turns);
        }
    }

    /// A wake-up that yielded at ticks is still one wake-up: its polls add up to the limit, and
    /// a guest burning CPU past it is interrupted once the thread's clock confirms it.
    #[test]
    fn a_wake_up_spans_the_polls_it_yielded_between() {
        let cpu = Arc::new(SessionCpu::new(
            Duration::from_secs(10),
            Duration::from_millis(15),
        ));
        let mut meter = CpuMeter::default();
        meter.start_session(cpu.clone());
        cpu.yielding.store(true, Ordering::Relaxed);
        poll_once_busy(&cpu, Duration::from_millis(10));
        cpu.poll_started();
        spin(Duration::from_millis(10));
        // Over the limit by the wall figure: the suspicion starts, the guest runs on.
        assert!(matches!(
            meter.on_epoch(),
            UpdateDeadline::YieldCustom(1, _)
        ));
        assert_eq!(meter.exceeded(), None);
        spin(RUN_LIMIT_CONFIRMATION + Duration::from_millis(1));
        assert!(matches!(meter.on_epoch(), UpdateDeadline::Interrupt));
        assert_eq!(meter.exceeded(), Some(CpuExceeded::RunLimit));
    }

    /// A thread descheduled in the middle of an event (here: asleep) passes the limit by the wall
    /// figure, but its CPU clock does not confirm it: the wake-up runs on and ends normally.
    #[test]
    fn a_stalled_thread_is_not_taken_for_a_loop() {
        let cpu = Arc::new(SessionCpu::new(
            Duration::from_secs(10),
            Duration::from_millis(15),
        ));
        let mut meter = CpuMeter::default();
        meter.start_session(cpu.clone());
        cpu.poll_started();
        std::thread::sleep(Duration::from_millis(20));
        assert!(matches!(
            meter.on_epoch(),
            UpdateDeadline::YieldCustom(1, _)
        ));
        std::thread::sleep(RUN_LIMIT_CONFIRMATION + Duration::from_millis(5));
        assert!(matches!(
            meter.on_epoch(),
            UpdateDeadline::YieldCustom(1, _)
        ));
        assert_eq!(meter.exceeded(), None);
        // The event finishes: the next wake-up starts with no suspicion and a fresh run time.
        cpu.yielding.store(false, Ordering::Relaxed);
        cpu.poll_ended();
        cpu.poll_started();
        assert!(matches!(meter.on_epoch(), UpdateDeadline::Continue(1)));
        assert_eq!(meter.exceeded(), None);
    }

    /// A wake-up that ended on its own starts the next one from zero.
    #[test]
    fn a_finished_wake_up_resets_the_run_time() {
        let cpu = Arc::new(SessionCpu::new(
            Duration::from_secs(10),
            Duration::from_millis(15),
        ));
        let mut meter = CpuMeter::default();
        meter.start_session(cpu.clone());
        poll_once_busy(&cpu, Duration::from_millis(10));
        cpu.poll_started();
        std::thread::sleep(Duration::from_millis(10));
        assert!(matches!(
            meter.on_epoch(),
            UpdateDeadline::YieldCustom(1, _)
        ));
    }

    /// The session budget counts every poll, whether or not it was one wake-up.
    #[test]
    fn the_session_budget_counts_every_poll() {
        let cpu = Arc::new(SessionCpu::new(
            Duration::from_millis(15),
            Duration::from_secs(10),
        ));
        let mut meter = CpuMeter::default();
        meter.start_session(cpu.clone());
        poll_once_busy(&cpu, Duration::from_millis(10));
        poll_once_busy(&cpu, Duration::from_millis(10));
        cpu.poll_started();
        assert!(matches!(meter.on_epoch(), UpdateDeadline::Interrupt));
        assert_eq!(meter.exceeded(), Some(CpuExceeded::SessionBudget));
    }

    /// Outside a session, `handle` yields until its deadline, then is interrupted.
    #[test]
    fn handle_is_interrupted_only_past_its_deadline() {
        let mut meter = CpuMeter::default();
        assert!(matches!(
            meter.on_epoch(),
            UpdateDeadline::YieldCustom(1, _)
        ));
        meter.set_handle_deadline(Some(Instant::now() + Duration::from_secs(60)));
        assert!(matches!(
            meter.on_epoch(),
            UpdateDeadline::YieldCustom(1, _)
        ));
        assert!(!meter.handle_overran());
        meter.set_handle_deadline(Some(Instant::now()));
        assert!(matches!(meter.on_epoch(), UpdateDeadline::Interrupt));
        assert!(meter.handle_overran());
    }

    /// A guest that has only just resumed is not made to yield at a tick; one that has held
    /// the worker for a whole tick is.
    #[test]
    fn only_a_guest_that_ran_a_whole_tick_yields() {
        let cpu = Arc::new(SessionCpu::new(
            Duration::from_secs(10),
            Duration::from_secs(10),
        ));
        let mut meter = CpuMeter::default();
        meter.start_session(cpu.clone());
        cpu.poll_started();
        assert!(matches!(meter.on_epoch(), UpdateDeadline::Continue(1)));
        assert!(!cpu.yielding.load(Ordering::Relaxed));
        std::thread::sleep(EPOCH_TICK);
        assert!(matches!(
            meter.on_epoch(),
            UpdateDeadline::YieldCustom(1, _)
        ));
        assert!(cpu.yielding.load(Ordering::Relaxed));
    }
}
