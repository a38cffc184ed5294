//! The in-process topic registry: subscribers of every topic of every plugin, in one map.
//!
//! A publish queues the frame in every subscriber's outbox (cheap: no write, no wake-up), then
//! asks the registry's flusher task to write what the topic's subscribers hold queued, each
//! socket as far as it takes it without waiting. So one publish costs one task wake-up, not
//! one per subscriber, and the writes to every subscriber's socket run outside the publishing
//! call: they are not the publisher's CPU time (a plugin's CPU limits would otherwise cut off
//! a publisher to a large room on a busy machine). Where a socket does not take everything,
//! that connection's own writer takes over. Outside an async runtime (unit tests) the publish
//! writes at once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::{ConnectionId, Delivery, Outbox, Pushed, TopicBackend, WireFrame};

/// Subscribers' outboxes the flusher writes before it lets other tasks run: a publish to a
/// large room does not hold a worker thread for the whole room at once.
const FLUSH_SLICE: usize = 1024;

/// Subscriptions held in this process; publishing reaches this process's connections only.
#[derive(Debug, Default)]
pub struct LocalTopics {
    registry: Arc<Registry>,
    /// Started by the first publish made inside an async runtime.
    flusher: OnceLock<Flusher>,
}

#[derive(Debug, Default)]
struct Registry {
    /// (plugin, topic) → subscribers. A read lock per publish: publishing is far more frequent
    /// than subscribing, and many publishes may run at once.
    topics: RwLock<HashMap<TopicKey, Subscribers>>,
    /// Topics published to since the flusher last looked.
    dirty: Mutex<HashSet<TopicKey>>,
    /// Wakes the flusher.
    wake: Notify,
}

/// The flusher task; it ends with the registry.
#[derive(Debug)]
struct Flusher(JoinHandle<()>);

impl Drop for Flusher {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A topic, scoped to its plugin.
type TopicKey = (Arc<str>, Arc<str>);

/// One topic's subscribers, in a list a publish walks from front to back (mostly in the order
/// they joined: leaving moves the last one into the gap), with an index to find a connection.
/// A walk over a list touches memory in order, where a walk over a map's buckets jumps.
#[derive(Debug, Default)]
struct Subscribers {
    list: Vec<Arc<Outbox>>,
    /// Connection → its place in `list`; `ids` holds the reverse.
    index: HashMap<ConnectionId, usize>,
    ids: Vec<ConnectionId>,
}

impl Subscribers {
    fn insert(&mut self, connection: ConnectionId, outbox: Arc<Outbox>) {
        if let Some(slot) = self
            .index
            .get(&connection)
            .and_then(|&at| self.list.get_mut(at))
        {
            *slot = outbox;
            return;
        }
        self.index.insert(connection, self.list.len());
        self.list.push(outbox);
        self.ids.push(connection);
    }

    fn remove(&mut self, connection: ConnectionId) {
        let Some(at) = self.index.remove(&connection) else {
            return;
        };
        if at >= self.list.len() {
            return;
        }
        self.list.swap_remove(at);
        self.ids.swap_remove(at);
        if let Some(&moved) = self.ids.get(at) {
            self.index.insert(moved, at);
        }
    }

    fn len(&self) -> usize {
        self.list.len()
    }

    fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

impl LocalTopics {
    /// Subscribers of `topic` of plugin `scope` right now.
    pub fn subscribers(&self, scope: &str, topic: &str) -> usize {
        self.registry
            .read()
            .get(&key(scope, topic))
            .map_or(0, Subscribers::len)
    }

    /// Has what was just queued for the subscribers of `topic` written: by the flusher task,
    /// or at once outside an async runtime.
    fn flush_later(&self, topic: TopicKey) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.registry.flush(&topic, &mut Vec::new());
            return;
        };
        self.flusher
            .get_or_init(|| Flusher(runtime.spawn(flush_dirty(self.registry.clone()))));
        self.registry
            .dirty
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert(topic);
        self.registry.wake.notify_one();
    }
}

impl Registry {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<TopicKey, Subscribers>> {
        // Every update is a single insert or remove, so a poisoned map is still consistent.
        self.topics
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<TopicKey, Subscribers>> {
        self.topics
            .write()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// The subscribers of `topic` into `outboxes` (emptied first): taken under the lock, so
    /// that the writes happen without it.
    fn subscribers_of(&self, topic: &TopicKey, outboxes: &mut Vec<Arc<Outbox>>) {
        outboxes.clear();
        if let Some(subscribers) = self.read().get(topic) {
            outboxes.extend(subscribers.list.iter().cloned());
        }
    }

    /// Writes what the subscribers of `topic` hold queued, in one go.
    fn flush(&self, topic: &TopicKey, outboxes: &mut Vec<Arc<Outbox>>) {
        self.subscribers_of(topic, outboxes);
        for outbox in outboxes.drain(..) {
            outbox.flush();
        }
    }
}

/// The flusher: whenever topics were published to, writes what their subscribers hold queued,
/// a slice of subscribers at a time.
async fn flush_dirty(registry: Arc<Registry>) {
    let mut outboxes = Vec::new();
    loop {
        registry.wake.notified().await;
        let topics: Vec<TopicKey> = registry
            .dirty
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .drain()
            .collect();
        for topic in topics {
            registry.subscribers_of(&topic, &mut outboxes);
            for (i, outbox) in outboxes.drain(..).enumerate() {
                if i > 0 && i % FLUSH_SLICE == 0 {
                    tokio::task::yield_now().await;
                }
                outbox.flush();
            }
        }
    }
}

fn key(scope: &str, topic: &str) -> TopicKey {
    (Arc::from(scope), Arc::from(topic))
}

impl TopicBackend for LocalTopics {
    fn subscribe(&self, scope: &str, topic: &str, connection: ConnectionId, outbox: Arc<Outbox>) {
        self.registry
            .write()
            .entry(key(scope, topic))
            .or_default()
            .insert(connection, outbox);
    }

    fn unsubscribe(&self, scope: &str, topic: &str, connection: ConnectionId) {
        let mut topics = self.registry.write();
        let key = key(scope, topic);
        if let Some(subscribers) = topics.get_mut(&key) {
            subscribers.remove(connection);
            // A topic nobody listens to any more takes no memory.
            if subscribers.is_empty() {
                topics.remove(&key);
            }
        }
    }

    fn publish(&self, scope: &str, topic: &str, frame: WireFrame) -> Delivery {
        let key = key(scope, topic);
        let mut delivery = Delivery::default();
        {
            let topics = self.registry.read();
            let subscribers = topics
                .get(&key)
                .map_or(&[][..], |subscribers| &subscribers.list);
            for outbox in subscribers {
                // Clones share the header's and the payload's buffers: the message is framed
                // and stored once.
                match outbox.push_shared(&frame) {
                    Pushed::Queued => delivery.queued += 1,
                    Pushed::Dropped => delivery.dropped += 1,
                    Pushed::Closed => delivery.closed += 1,
                }
            }
        }
        if delivery.queued > 0 {
            self.flush_later(key);
        }
        delivery
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::super::outbox::tests::socket_pair;
    use super::super::{Batch, Flushed, Overflow};
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

    /// Leaving keeps the list and its index in step (the last member moves into the gap), and
    /// subscribing again replaces a connection's outbox instead of adding it twice.
    #[tokio::test]
    async fn members_leave_and_rejoin_without_losing_or_doubling_anyone() {
        let topics = LocalTopics::default();
        let outboxes: Vec<_> = (0..5).map(|_| outbox(1024)).collect();
        for (id, outbox) in outboxes.iter().enumerate() {
            topics.subscribe("chat", "room", id as u64, outbox.clone());
        }
        topics.unsubscribe("chat", "room", 1);
        topics.unsubscribe("chat", "room", 4);
        let again = outbox(1024);
        topics.subscribe("chat", "room", 3, again.clone());
        topics.unsubscribe("chat", "room", 0);
        assert_eq!(topics.subscribers("chat", "room"), 2);
        assert_eq!(
            topics
                .publish("chat", "room", Bytes::from_static(b"x").into())
                .queued,
            2
        );
        for gone in [0, 1, 3, 4] {
            outboxes[gone].close();
            assert_eq!(outboxes[gone].next_batch().await, Batch::Closed, "{gone}");
        }
        assert_eq!(
            frames(&outboxes[2]).await,
            [Bytes::from_static(b"x").into()]
        );
        assert_eq!(frames(&again).await, [Bytes::from_static(b"x").into()]);
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
        assert!(topics.registry.read().is_empty());
    }

    /// With sockets attached, the flusher writes a publish to every subscriber's socket (no
    /// connection writer runs here): a subscriber that reads gets every message in order,
    /// while one that does not read is cut off at its bound.
    #[tokio::test]
    async fn the_flusher_writes_publishes_and_a_subscriber_that_does_not_read_is_cut_off() {
        use tokio::io::AsyncReadExt as _;
        let topics = LocalTopics::default();
        let (fast_socket, mut fast_peer) = socket_pair().await;
        let (slow_socket, _slow_peer) = socket_pair().await;
        let fast = outbox(1 << 30);
        fast.attach(fast_socket);
        let slow = outbox(64 * 1024);
        slow.attach(slow_socket);
        topics.subscribe("chat", "room", 1, fast.clone());
        topics.subscribe("chat", "room", 2, slow.clone());
        const MESSAGES: usize = 2_000;
        let reader = tokio::spawn(async move {
            let mut received = vec![0u8; MESSAGES * 1024];
            tokio::time::timeout(
                std::time::Duration::from_secs(10),
                fast_peer.read_exact(&mut received),
            )
            .await
            .expect("every message arrives in time")
            .unwrap();
            received
        });
        for i in 0..MESSAGES {
            let mut message = vec![b'.'; 1024];
            message[..8].copy_from_slice(format!("{i:08}").as_bytes());
            topics.publish("chat", "room", Bytes::from(message).into());
            // The flusher runs when the publisher lets it (as after a guest call).
            tokio::task::yield_now().await;
        }
        assert!(
            slow.is_overflowed(),
            "the subscriber that does not read is cut off"
        );
        // What the fast subscriber's socket did not take waits for its writer.
        if !matches!(fast.write_queued(), Flushed::Idle) {
            let writer = fast.clone();
            tokio::spawn(async move {
                loop {
                    match writer.write_queued() {
                        Flushed::Idle | Flushed::Closed => return,
                        _ => tokio::time::sleep(std::time::Duration::from_millis(1)).await,
                    }
                }
            });
        }
        let received = reader.await.unwrap();
        for (i, chunk) in received.chunks(1024).enumerate() {
            assert_eq!(
                &chunk[..8],
                format!("{i:08}").as_bytes(),
                "message {i} in order"
            );
        }
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
