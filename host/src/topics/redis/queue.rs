//! The bounded queue between publishes and the connection that sends them to the broker: a
//! publish adds to it and returns at once (it never waits on the network); the link takes
//! everything queued in one go and sends it as one pipeline, so messages published while a
//! pipeline is in flight leave together in the next one. Bounded in messages and in bytes; a
//! publish that does not fit is dropped (and counted by the caller).

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::topics::WireFrame;

/// One publish waiting for the broker.
#[derive(Debug)]
pub(super) struct Outgoing {
    /// The channel it goes to.
    pub(super) channel: Vec<u8>,
    /// The frame, shared with the local subscribers' outboxes.
    pub(super) frame: WireFrame,
}

impl Outgoing {
    fn bytes(&self) -> usize {
        self.channel.len().saturating_add(self.frame.len())
    }
}

/// Publishes waiting for the broker, at most `max_messages` and `max_bytes`.
#[derive(Debug)]
pub(super) struct PublishQueue {
    waiting: Mutex<Waiting>,
    ready: Notify,
    max_messages: usize,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct Waiting {
    items: VecDeque<Outgoing>,
    bytes: usize,
}

impl PublishQueue {
    pub(super) fn new(max_messages: usize, max_bytes: usize) -> Self {
        Self {
            waiting: Mutex::default(),
            ready: Notify::new(),
            max_messages,
            max_bytes,
        }
    }

    /// Queues `item`; gives it back if the queue is full. An empty queue takes one publish of
    /// any size, so the byte limit never makes a message unsendable.
    pub(super) fn push(&self, item: Outgoing) -> Result<(), Outgoing> {
        let size = item.bytes();
        {
            let mut waiting = self.lock();
            let full = waiting.items.len() >= self.max_messages
                || (!waiting.items.is_empty()
                    && waiting.bytes.saturating_add(size) > self.max_bytes);
            if full {
                return Err(item);
            }
            waiting.bytes = waiting.bytes.saturating_add(size);
            waiting.items.push_back(item);
        }
        self.ready.notify_one();
        Ok(())
    }

    /// Everything queued, oldest first, once there is something. Cancel safe: nothing is taken
    /// until it returns.
    pub(super) async fn take_all(&self) -> Vec<Outgoing> {
        loop {
            {
                let mut waiting = self.lock();
                if !waiting.items.is_empty() {
                    waiting.bytes = 0;
                    return waiting.items.drain(..).collect();
                }
            }
            // `notify_one` keeps a permit when nobody waits, so a push between the check
            // above and this wait is not missed.
            self.ready.notified().await;
        }
    }

    /// Empties the queue; returns how many publishes it held.
    pub(super) fn clear(&self) -> usize {
        let mut waiting = self.lock();
        waiting.bytes = 0;
        let count = waiting.items.len();
        waiting.items.clear();
        count
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        // Every update leaves the queue consistent, so a poisoned lock is still usable.
        self.waiting
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn item(size: usize) -> Outgoing {
        Outgoing {
            channel: b"c".to_vec(),
            frame: Bytes::from(vec![0; size]).into(),
        }
    }

    #[tokio::test]
    async fn the_queue_is_bounded_in_messages_and_bytes() {
        let queue = PublishQueue::new(3, 100);
        assert!(
            queue.push(item(500)).is_ok(),
            "an empty queue takes anything"
        );
        assert!(queue.push(item(1)).is_err(), "over the bytes");
        assert_eq!(queue.take_all().await.len(), 1);
        for _ in 0..3 {
            assert!(queue.push(item(1)).is_ok());
        }
        assert!(queue.push(item(1)).is_err(), "over the count");
        assert_eq!(queue.clear(), 3);
        assert!(queue.push(item(1)).is_ok(), "room again");
        assert_eq!(queue.take_all().await.len(), 1);
    }
}
