//! "Log at most N a second, then say how many were left out": a token bucket for log lines
//! that an attacker can make the host write (a plugin's own output, warnings about refused
//! requests), so a flood costs the log a bounded number of lines plus a count.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::config::{HOST_WARNINGS_BURST, HOST_WARNINGS_PER_SEC};

/// Whether an event may be logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Log it; `suppressed` events were left out since the last one logged (say so).
    Log { suppressed: u64 },
    /// Leave it out; it is counted.
    Suppress,
}

/// A token bucket: `burst` events at once, then `per_sec` a second.
#[derive(Debug)]
pub(crate) struct LogRateLimit {
    per_sec: f64,
    burst: f64,
    bucket: Mutex<Bucket>,
    /// Every event left out since start, for `/metrics` (never reset, unlike the bucket's).
    dropped: Option<Arc<AtomicU64>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
    /// Events left out since the last one logged or the last [`LogRateLimit::take_suppressed`].
    suppressed: u64,
}

impl LogRateLimit {
    /// A full bucket of `burst` events, refilled at `per_sec`.
    pub(crate) fn new(per_sec: u32, burst: u32) -> Self {
        Self {
            per_sec: f64::from(per_sec),
            burst: f64::from(burst),
            bucket: Mutex::new(Bucket {
                tokens: f64::from(burst),
                refilled: Instant::now(),
                suppressed: 0,
            }),
            dropped: None,
        }
    }

    /// The same limit, also adding every event it leaves out to `dropped`.
    pub(crate) fn counting_into(mut self, dropped: Arc<AtomicU64>) -> Self {
        self.dropped = Some(dropped);
        self
    }

    /// Takes a token for one event if there is one.
    pub(crate) fn check(&self) -> Verdict {
        let mut bucket = self.lock();
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_sec).min(self.burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Verdict::Log {
                suppressed: std::mem::take(&mut bucket.suppressed),
            }
        } else {
            bucket.suppressed = bucket.suppressed.saturating_add(1);
            if let Some(dropped) = &self.dropped {
                dropped.fetch_add(1, Ordering::Relaxed);
            }
            Verdict::Suppress
        }
    }

    /// The events left out and not yet reported, now reported by the caller.
    pub(crate) fn take_suppressed(&self) -> u64 {
        std::mem::take(&mut self.lock().suppressed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bucket> {
        // The bucket is plain numbers: a panic elsewhere cannot leave it inconsistent.
        self.bucket
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// Warnings the host writes about requests it refuses, each kind limited on its own, so an
/// attacker repeating one refusal gets a few lines and a count rather than one line each.
#[derive(Debug)]
pub(crate) struct HostWarnings {
    /// Upgrades refused: no session slot, or the plugin's answer cannot be a `101`.
    pub(crate) refused_upgrades: LogRateLimit,
    /// Requests refused with `503` for lack of capacity.
    pub(crate) busy: LogRateLimit,
}

impl Default for HostWarnings {
    fn default() -> Self {
        Self {
            refused_upgrades: LogRateLimit::new(HOST_WARNINGS_PER_SEC, HOST_WARNINGS_BURST),
            busy: LogRateLimit::new(HOST_WARNINGS_PER_SEC, HOST_WARNINGS_BURST),
        }
    }
}

/// Logs a warning through `limit`: left out when over it, and with the count of those left out
/// before it when logged.
macro_rules! limited_warn {
    ($limit:expr, $($arg:tt)+) => {
        match $limit.check() {
            $crate::ratelimit::Verdict::Log { suppressed: 0 } => tracing::warn!($($arg)+),
            $crate::ratelimit::Verdict::Log { suppressed } => {
                tracing::warn!(suppressed, "{} ({suppressed} more like it not logged)", format_args!($($arg)+))
            }
            $crate::ratelimit::Verdict::Suppress => {}
        }
    };
}
pub(crate) use limited_warn;

#[cfg(test)]
mod tests {
    use super::*;

    /// The burst passes, the rest is counted, and the count is handed over once.
    #[test]
    fn allows_the_burst_then_counts() {
        let limit = LogRateLimit::new(1, 3);
        for _ in 0..3 {
            assert_eq!(limit.check(), Verdict::Log { suppressed: 0 });
        }
        for _ in 0..5 {
            assert_eq!(limit.check(), Verdict::Suppress);
        }
        assert_eq!(limit.take_suppressed(), 5);
        assert_eq!(limit.take_suppressed(), 0);
    }

    /// Tokens come back with time, and the next logged event carries the count.
    #[test]
    fn refills_at_the_rate() {
        let limit = LogRateLimit::new(100, 1);
        assert_eq!(limit.check(), Verdict::Log { suppressed: 0 });
        assert_eq!(limit.check(), Verdict::Suppress);
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert_eq!(limit.check(), Verdict::Log { suppressed: 1 });
    }
}
