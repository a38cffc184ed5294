//! The budget of awake managed connections: how many may hold a live instance at once
//! (`--max-awake-websockets`), which sizes the instance pool.
//!
//! A connection that must wake while the budget is spent waits for a slot (for at most
//! [`WAKE_WAIT`]) instead of being closed at once, and nudges the awake connections: those
//! between events hibernate early, since under pressure an idle instance is worth less than a
//! waiting event. Only a wait that times out closes the connection (`1013`).
//!
//! Plugins whose sidecar says `instances = "shared"` hand their instance back after each event:
//! it waits here, parked with its slot, for the next event of any of the plugin's connections
//! (the most recently parked first, whose memory is likeliest still in the CPU's caches). At most
//! [`MAX_PARKED_PER_PLUGIN`] wait per plugin; they are the first to go when a connection waits
//! for a slot, and a parked instance of an older version is dropped instead of being used.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::http::gauge::{Gauge, GaugeGuard};
use crate::plugins::plugin::{LoadedPlugin, PluginInstance};
use crate::session::managed::registry::Connection;
use crate::topics::ConnectionId;

/// Longest a connection waits for an awake slot before it is closed with `1013`.
pub(crate) const WAKE_WAIT: Duration = Duration::from_secs(5);

/// Shared instances parked per plugin at most. Events of one plugin run at the same time only
/// on different worker threads, or while one yields at an epoch tick, so a few are enough; an
/// instance handed back beyond this is dropped.
pub(crate) const MAX_PARKED_PER_PLUGIN: usize = 8;

/// The awake connections' slots.
pub(crate) struct AwakeSlots {
    permits: Arc<Semaphore>,
    /// The host's count of awake connections, for its stats.
    counted: Arc<Gauge>,
    /// Connections waiting for a slot now.
    waiting: AtomicUsize,
    /// The connections holding a slot, to nudge when others wait.
    holders: Mutex<HashMap<ConnectionId, Weak<Connection>>>,
    /// Shared instances between events, by plugin name, oldest first.
    parked: Mutex<HashMap<Arc<str>, Vec<Parked>>>,
}

/// One awake connection's slot; dropping it gives the slot back.
pub(crate) struct AwakeSlot {
    permit: OwnedSemaphorePermit,
    _counted: GaugeGuard,
    /// None for a shared instance taken for one event: it is handed back when the event
    /// returns, so nudging it would be in vain.
    _holder: Option<Holder>,
}

/// A connection's entry among the holders, removed when its slot goes.
struct Holder {
    id: ConnectionId,
    slots: Arc<AwakeSlots>,
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.slots.holders().remove(&self.id);
    }
}

/// A shared instance between events: it keeps its slot (not counted as an awake connection).
struct Parked {
    plugin: Arc<LoadedPlugin>,
    instance: PluginInstance,
    permit: OwnedSemaphorePermit,
    since: Instant,
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
            parked: Mutex::default(),
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
        // Parked instances are the cheapest to give up: nobody is using them.
        self.drop_parked(|_| true);
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Some(self.slot(permit, connection));
        }
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

    /// Parks `instance` of `plugin`, an instance of a plugin with shared instances whose event
    /// is over, for the plugin's next event; it keeps `slot`'s place in the budget. Dropped
    /// instead when connections wait for a slot, or when `MAX_PARKED_PER_PLUGIN` are parked.
    pub(crate) fn park(
        &self,
        plugin: Arc<LoadedPlugin>,
        instance: PluginInstance,
        slot: AwakeSlot,
    ) {
        if self.wanted() {
            return;
        }
        // The connection stops counting as awake only once the instance is parked, so whoever
        // sees the count drop finds the instance parked.
        let AwakeSlot {
            permit,
            _counted: counted,
            _holder: holder,
        } = slot;
        drop(holder);
        let parked = Parked {
            plugin,
            instance,
            permit,
            since: Instant::now(),
        };
        let overflow = {
            let mut all = self.parked();
            let queue = match all.get_mut(parked.plugin.name()) {
                Some(queue) => queue,
                None => all.entry(parked.plugin.name_arc()).or_default(),
            };
            queue.push(parked);
            if queue.len() > MAX_PARKED_PER_PLUGIN {
                Some(queue.remove(0))
            } else {
                None
            }
        };
        drop(counted);
        // Dropped outside the lock: dropping a store takes a few microseconds.
        drop(overflow);
    }

    /// The most recently parked instance of `current` (the plugin's version now), with a slot
    /// for one event; parked instances of other versions of the plugin are dropped.
    pub(crate) fn unpark(
        &self,
        current: &Arc<LoadedPlugin>,
    ) -> Option<(PluginInstance, AwakeSlot)> {
        let mut stale = Vec::new();
        let found = {
            let mut all = self.parked();
            let queue = all.get_mut(current.name())?;
            loop {
                match queue.pop() {
                    Some(parked) if Arc::ptr_eq(&parked.plugin, current) => break Some(parked),
                    Some(other) => stale.push(other),
                    None => break None,
                }
            }
        };
        drop(stale);
        let parked = found?;
        let slot = AwakeSlot {
            permit: parked.permit,
            _counted: self.counted.enter(),
            _holder: None,
        };
        Some((parked.instance, slot))
    }

    /// Drops the instances of plugin `name` parked for at least `idle`, and those of its
    /// versions no longer served (a removed plugin's would otherwise wait for an event that
    /// never comes).
    pub(crate) fn expire_parked(&self, name: &str, idle: Duration) {
        self.drop_parked(|parked| {
            parked.plugin.name() == name
                && (parked.plugin.is_retired() || parked.since.elapsed() >= idle)
        });
    }

    fn drop_parked(&self, which: impl Fn(&Parked) -> bool) {
        let mut dropped = Vec::new();
        {
            let mut all = self.parked();
            for queue in all.values_mut() {
                let (gone, kept) = std::mem::take(queue).into_iter().partition(|p| which(p));
                *queue = kept;
                dropped.extend::<Vec<Parked>>(gone);
            }
            all.retain(|_, queue| !queue.is_empty());
        }
        drop(dropped);
    }

    fn slot(
        self: &Arc<Self>,
        permit: OwnedSemaphorePermit,
        connection: &Arc<Connection>,
    ) -> AwakeSlot {
        self.holders()
            .insert(connection.id, Arc::downgrade(connection));
        AwakeSlot {
            permit,
            _counted: self.counted.enter(),
            _holder: Some(Holder {
                id: connection.id,
                slots: self.clone(),
            }),
        }
    }

    fn parked(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Vec<Parked>>> {
        // Whole pushes and pops: a poisoned map is still consistent.
        self.parked
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
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
