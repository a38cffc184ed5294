//! The in-process topic registry: subscribers of every topic of every plugin, in one map.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::{ConnectionId, Delivery, Outbox, Pushed, TopicBackend, WireFrame};

/// Subscriptions held in this process; publishing reaches this process's connections only.
#[derive(Debug, Default)]
pub struct LocalTopics {
    /// (plugin, topic) → subscribers. A read lock per publish: publishing is far more frequent
    /// than subscribing, and many publishes may run at once.
    topics: RwLock<HashMap<TopicKey, HashMap<ConnectionId, Arc<Outbox>>>>,
}

/// A topic, scoped to its plugin.
type TopicKey = (Arc<str>, Arc<str>);

impl LocalTopics {
    /// Subscribers of `topic` of plugin `scope` right now.
    pub fn subscribers(&self, scope: &str, topic: &str) -> usize {
        self.read().get(&key(scope, topic)).map_or(0, HashMap::len)
    }

    fn read(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<TopicKey, HashMap<ConnectionId, Arc<Outbox>>>> {
        // Every update is a single insert or remove, so a poisoned map is still consistent.
        self.topics
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn write(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<TopicKey, HashMap<ConnectionId, Arc<Outbox>>>>
    {
        self.topics
            .write()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

fn key(scope: &str, topic: &str) -> TopicKey {
    (Arc::from(scope), Arc::from(topic))
}

impl TopicBackend for LocalTopics {
    fn subscribe(&self, scope: &str, topic: &str, connection: ConnectionId, outbox: Arc<Outbox>) {
        self.write()
            .entry(key(scope, topic))
            .or_default()
            .insert(connection, outbox);
    }

    fn unsubscribe(&self, scope: &str, topic: &str, connection: ConnectionId) {
        let mut topics = self.write();
        let key = key(scope, topic);
        if let Some(subscribers) = topics.get_mut(&key) {
            subscribers.remove(&connection);
            // A topic nobody listens to any more takes no memory.
            if subscribers.is_empty() {
                topics.remove(&key);
            }
        }
    }

    fn publish(&self, scope: &str, topic: &str, frame: WireFrame) -> Delivery {
        let topics = self.read();
        let mut delivery = Delivery::default();
        for outbox in topics
            .get(&key(scope, topic))
            .into_iter()
            .flat_map(HashMap::values)
        {
            // Written at once where the socket takes it; a clone queued otherwise shares the
            // header's and the payload's buffers: the message is framed and stored once.
            match outbox.push_shared(&frame) {
                Pushed::Queued => delivery.queued += 1,
                Pushed::Dropped => delivery.dropped += 1,
                Pushed::Closed => delivery.closed += 1,
            }
        }
        delivery
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::super::{Batch, Overflow};
    use super::*;

    fn outbox(max_bytes: usize) -> Arc<Outbox> {
        Arc::new(Outbox::new(max_bytes, Overflow::Close))
    }

    async fn frames(outbox: &Outbox) -> Vec<WireFrame> {
        match outbox.next_batch().await {
            Batch::Frames(frames) => frames,
            other => panic!("expected frames, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_publish_reaches_every_subscriber_of_the_topic_once() {
        let topics = LocalTopics::default();
        let (a, b, other) = (outbox(1024), outbox(1024), outbox(1024));
        topics.subscribe("chat", "room-1", 1, a.clone());
        topics.subscribe("chat", "room-1", 2, b.clone());
        topics.subscribe("chat", "room-2", 3, other.clone());
        let delivery = topics.publish("chat", "room-1", Bytes::from_static(b"hi").into());
        assert_eq!(delivery.queued, 2);
        assert_eq!(frames(&a).await, [Bytes::from_static(b"hi").into()]);
        assert_eq!(frames(&b).await, [Bytes::from_static(b"hi").into()]);
        other.close();
        assert_eq!(
            other.next_batch().await,
            Batch::Closed,
            "room-2 got nothing"
        );
    }

    #[test]
    fn topics_are_scoped_to_their_plugin() {
        let topics = LocalTopics::default();
        topics.subscribe("chat", "news", 1, outbox(1024));
        assert_eq!(
            topics.publish("feed", "news", Bytes::from_static(b"x").into()),
            Delivery::default()
        );
        assert_eq!(
            topics
                .publish("chat", "news", Bytes::from_static(b"x").into())
                .queued,
            1
        );
    }

    #[test]
    fn unsubscribing_the_last_member_forgets_the_topic() {
        let topics = LocalTopics::default();
        topics.subscribe("chat", "room", 1, outbox(1024));
        topics.subscribe("chat", "room", 2, outbox(1024));
        topics.unsubscribe("chat", "room", 1);
        assert_eq!(topics.subscribers("chat", "room"), 1);
        topics.unsubscribe("chat", "room", 2);
        topics.unsubscribe("chat", "room", 2);
        assert_eq!(topics.subscribers("chat", "room"), 0);
        assert!(topics.read().is_empty());
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_cut_off_while_the_others_keep_receiving() {
        let topics = LocalTopics::default();
        let (slow, fast) = (outbox(10), outbox(1024));
        topics.subscribe("chat", "room", 1, slow.clone());
        topics.subscribe("chat", "room", 2, fast.clone());
        let mut closed = 0;
        for i in 0..5 {
            closed += topics
                .publish("chat", "room", Bytes::from(format!("msg {i}")).into())
                .closed;
        }
        assert_eq!(slow.next_batch().await, Batch::Overflowed);
        assert!(closed >= 1);
        let received = frames(&fast).await;
        let expected: Vec<WireFrame> = (0..5)
            .map(|i| Bytes::from(format!("msg {i}")).into())
            .collect();
        assert_eq!(received, expected, "in publish order, none lost");
    }
}
