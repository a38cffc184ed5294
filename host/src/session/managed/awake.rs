//! The budget of awake managed connections: how many may hold a live instance at once
//! (`--max-awake-websockets`), which sizes the instance pool.
//!
//! A connection that must wake while the budget is spent waits for a slot (for at most
//! [`WAKE_WAIT`]) instead of being closed at once, and nudges the awake connections: those
//! between events hibernate early, since under pressure an idle instance is worth less than a
//! waiting event. Only a wait that times out closes the connection (`1013`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::http::gauge::{Gauge, GaugeGuard};
use crate::session::managed::registry::Connection;
use crate::topics::ConnectionId;

/// Longest a connection waits for an awake slot before it is closed with `1013`.
pub(crate) const WAKE_WAIT: Duration = Duration::from_secs(5);

/// The awake connections' slots.
pub(crate) struct AwakeSlots {
    permits: Arc<Semaphore>,
    /// The host's count of awake connections, for its stats.
    counted: Arc<Gauge>,
    /// Connections waiting for a slot now.
    waiting: AtomicUsize,
    /// The connections holding a slot, to nudge when others wait.
    holders: Mutex<HashMap<ConnectionId, Weak<Connection>>>,
}

/// One awake connection's slot; dropping it gives the slot back.
pub(crate) struct AwakeSlot {
    _permit: OwnedSemaphorePermit,
    _counted: GaugeGuard,
    id: ConnectionId,
    slots: Arc<AwakeSlots>,
}

impl Drop for AwakeSlot {
    fn drop(&mut self) {
        self.slots.holders().remove(&self.id);
    }
}

impl AwakeSlots {
    /// `max` slots, counted in `counted`.
    pub(crate) fn new(max: u32, counted: Arc<Gauge>) -> Self {
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        Self {
            permits: Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))),
            counted,
            waiting: AtomicUsize::new(0),
            holders: Mutex::default(),
        }
    }

    /// A slot for `connection` if one is free now.
    pub(crate) fn try_take(self: &Arc<Self>, connection: &Arc<Connection>) -> Option<AwakeSlot> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        Some(self.slot(permit, connection))
    }

    /// A slot for `connection`, waiting up to `within` for one while nudging the awake
    /// connections to hibernate; `None` if none came free in time.
    pub(crate) async fn take(
        self: &Arc<Self>,
        connection: &Arc<Connection>,
        within: Duration,
    ) -> Option<AwakeSlot> {
        if let Some(slot) = self.try_take(connection) {
            return Some(slot);
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        self.nudge_holders();
        let acquired = tokio::time::timeout(within, self.permits.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        match acquired {
            Ok(Ok(permit)) => Some(self.slot(permit, connection)),
            // Timed out, or the semaphore was closed (it never is).
            _ => None,
        }
    }

    /// Whether a connection is waiting for a slot: an awake connection between events should
    /// then hibernate.
    pub(crate) fn wanted(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0
    }

    /// Wakes the task of every connection holding a slot; those between events hibernate.
    fn nudge_holders(&self) {
        let holders: Vec<Arc<Connection>> =
            self.holders().values().filter_map(Weak::upgrade).collect();
        for holder in holders {
            holder.nudge.notify_one();
        }
    }

    fn slot(
        self: &Arc<Self>,
        permit: OwnedSemaphorePermit,
        connection: &Arc<Connection>,
    ) -> AwakeSlot {
        self.holders()
            .insert(connection.id, Arc::downgrade(connection));
        AwakeSlot {
            _permit: permit,
            _counted: self.counted.enter(),
            id: connection.id,
            slots: self.clone(),
        }
    }

    fn holders(&self) -> std::sync::MutexGuard<'_, HashMap<ConnectionId, Weak<Connection>>> {
        // Single inserts and removes: a poisoned map is still consistent.
        self.holders
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::managed::registry::ConnectionLimits;
    use crate::topics::{Outbox, Overflow};

    fn connection(id: ConnectionId) -> Arc<Connection> {
        let limits = ConnectionLimits {
            max_message_bytes: 1024,
            max_attachment_bytes: 1024,
            max_topics: 1,
            max_topic_bytes: 8,
        };
        let outbox = Arc::new(Outbox::new(1024, Overflow::Close));
        Arc::new(Connection::new(id, outbox, limits, bytes::Bytes::new()))
    }

    /// A waiting connection nudges the holders, and gets the slot one of them gives back.
    #[tokio::test]
    async fn a_waiter_nudges_the_holders_and_gets_a_freed_slot() {
        let counted = Arc::new(Gauge::default());
        let slots = Arc::new(AwakeSlots::new(1, counted.clone()));
        let (holder, waiter) = (connection(1), connection(2));
        let held = slots.try_take(&holder).expect("one slot");
        assert!(slots.try_take(&waiter).is_none());
        assert_eq!(counted.live(), 1);
        let nudged = holder.nudge.notified();
        let waiting = tokio::spawn({
            let slots = slots.clone();
            async move { slots.take(&waiter, Duration::from_secs(5)).await.is_some() }
        });
        nudged.await;
        assert!(slots.wanted());
        drop(held);
        assert!(waiting.await.unwrap());
        assert!(!slots.wanted());
        assert_eq!(
            counted.live(),
            0,
            "the waiter's slot was dropped with its task"
        );
    }

    /// Without a slot coming free, the wait ends empty-handed.
    #[tokio::test]
    async fn a_wait_times_out() {
        let slots = Arc::new(AwakeSlots::new(1, Arc::new(Gauge::default())));
        let _held = slots.try_take(&connection(1));
        assert!(
            slots
                .take(&connection(2), Duration::from_millis(20))
                .await
                .is_none()
        );
        assert!(!slots.wanted());
    }
}
