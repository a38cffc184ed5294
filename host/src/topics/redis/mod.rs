//! Topics shared by several hosts through Redis pub/sub (`--pubsub redis://HOST:PORT[/DB]`).
//!
//! [`RedisTopics`] wraps the in-process [`LocalTopics`]: a publish is queued to this host's
//! subscribers directly (once, with no round trip through Redis) and also handed to a bounded
//! queue that the link sends to Redis; messages of other hosts that Redis delivers are queued to
//! this host's subscribers. A host subscribes at Redis to a topic's channel when its first local
//! subscriber joins and unsubscribes when its last one leaves (one subscription per topic and
//! host, not per connection). Channel names and the message format: [`channel`].
//!
//! Guarantees: at most once across hosts, like Redis pub/sub itself. A publish never waits on
//! the network; while Redis is unreachable, or when the queue to it is full, publishes meant for
//! other hosts are dropped and counted ([`PubSubStats`]) while local delivery goes on. Messages
//! of one publisher reach a subscriber on another host in the order they were published (one
//! queue, one connection, Redis keeps a connection's order).
//!
//! # Log lines (one per change of state, not per message)
//! - `pubsub: cross-host delivery down` (warn), with `error` and `retry_in_ms`: the host could
//!   not reach Redis at start, or lost it; it retries with a jittered backoff from 100 ms up to
//!   4 s, logging attempts at debug level only.
//! - `pubsub: cross-host delivery up` (info), with `topics` (channels subscribed again) and
//!   `redis` (the URL without a password): connected, at start or again.
//! - `pubsub: dropped cross-host publishes` (warn), with `dropped` (count in the last 10 s):
//!   at most once per 10 s while publishes are being dropped.
//! - `pubsub: ignored a message from Redis on channel "…": <reason>` (warn, rate-limited).
//! - `pubsub: a message from another host on topic "…" of plugin "…" was dropped for N
//!   subscriber(s) whose outbound buffer is full` (warn, rate-limited): with `overflow =
//!   "drop"`, counted in [`PubSubCounts::overflowed`].
//!
//! # Choices
//! - The client is redis-rs (`redis`, tokio, no default features): the maintained, widely used
//!   Rust client, light (its core needs no TLS, no cluster, no scripting), with a dedicated
//!   pub/sub connection whose sink and stream split (subscribe while receiving) and pipelines.
//!   fred reconnects and resubscribes by itself, but brings far more (its own router, pools,
//!   many command families) for what is here one small reconnect loop (`link`) that knows
//!   exactly which channels are wanted and logs and counts every change of state.
//! - Plain `PUBLISH`/`SUBSCRIBE`, not Redis 7's sharded `SPUBLISH`/`SSUBSCRIBE`: sharding only
//!   matters in Redis Cluster (where a plain publish is broadcast to every node), which a
//!   `redis://` URL does not address, and plain pub/sub works with any Redis version.
//! - redis-rs hands received messages over an unbounded channel; this module takes each at
//!   once and only queues it to outboxes (which never wait), so that channel stays short.

mod channel;
mod link;
mod queue;
mod stats;

use std::collections::HashSet;
use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use self::channel::{ChannelNames, HostId};
use self::queue::{Outgoing, PublishQueue};
use super::local::LocalTopics;
use super::{ConnectionId, Delivery, Outbox, TopicBackend, WireFrame};
use crate::config::pubsub::{PubSubPrefix, RedisUrl};
use crate::ratelimit::LogRateLimit;

pub use stats::{PubSubCounts, PubSubStats};

/// Topics of this host, shared with every host on the same Redis server and prefix.
pub struct RedisTopics {
    shared: Arc<Shared>,
    /// Cancelled when the backend is dropped: the link and its connections end.
    stop: CancellationToken,
}

/// Sizes of the queue between publishes and the Redis connection.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// Publishes waiting at most.
    pub max_messages: usize,
    /// Bytes (channel names and frames) waiting at most.
    pub max_bytes: usize,
}

/// What the backend and its link share.
struct Shared {
    local: LocalTopics,
    names: ChannelNames,
    host: HostId,
    /// Which channels this host wants, and which of those changed since the link last looked.
    interest: Mutex<Interest>,
    /// Wakes the link when `interest` changed.
    interest_changed: Notify,
    queue: PublishQueue,
    stats: Arc<PubSubStats>,
    /// Lines about garbage on a channel, at a bounded rate: anyone who can publish to the
    /// broker can send it.
    garbage_log: LogRateLimit,
    /// Lines about messages from other hosts dropped for a full local outbox, at a bounded
    /// rate: a slow client gets one with every message.
    overflow_log: LogRateLimit,
}

#[derive(Debug, Default)]
struct Interest {
    /// Channels with at least one local subscriber.
    wanted: HashSet<Vec<u8>>,
    /// Channels added to or removed from `wanted` since the link last took them.
    changed: HashSet<Vec<u8>>,
}

impl RedisTopics {
    /// Starts the link to `url` (in the background: the host serves locally until Redis is
    /// reachable) and returns the backend. Must be called inside a tokio runtime.
    pub fn start(
        url: &RedisUrl,
        prefix: &PubSubPrefix,
        limits: QueueLimits,
        stats: Arc<PubSubStats>,
    ) -> anyhow::Result<Self> {
        // Small writes (one message, one pipeline) must leave at once, not wait for Nagle.
        let info = ::redis::IntoConnectionInfo::into_connection_info(url.as_str())?
            .set_tcp_settings(::redis::io::tcp::TcpSettings::default().set_nodelay(true));
        let client = ::redis::Client::open(info)?;
        let shared = Arc::new(Shared {
            local: LocalTopics::default(),
            names: ChannelNames::new(prefix),
            host: new_host_id(),
            interest: Mutex::default(),
            interest_changed: Notify::new(),
            queue: PublishQueue::new(limits.max_messages, limits.max_bytes),
            stats,
            garbage_log: LogRateLimit::new(
                crate::config::HOST_WARNINGS_PER_SEC,
                crate::config::HOST_WARNINGS_BURST,
            ),
            overflow_log: LogRateLimit::new(
                crate::config::HOST_WARNINGS_PER_SEC,
                crate::config::HOST_WARNINGS_BURST,
            ),
        });
        let stop = CancellationToken::new();
        // In the caller's span, so the link's lines name the host they are about.
        tokio::spawn(
            link::run(shared.clone(), client, url.to_string(), stop.clone()).in_current_span(),
        );
        tokio::spawn(link::report_drops(shared.clone(), stop.clone()).in_current_span());
        Ok(Self { shared, stop })
    }
}

impl Drop for RedisTopics {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Shared {
    fn interest(&self) -> std::sync::MutexGuard<'_, Interest> {
        // Every update is a single insert or remove, so a poisoned set is still consistent.
        self.interest
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn dropped(&self, count: usize) {
        PubSubStats::add(&self.stats.dropped, count);
    }
}

impl TopicBackend for RedisTopics {
    fn subscribe(&self, scope: &str, topic: &str, connection: ConnectionId, outbox: Arc<Outbox>) {
        let shared = &self.shared;
        // Under the interest lock, so a concurrent unsubscribe of the topic's last member
        // cannot remove the channel after this subscriber was added.
        let mut interest = shared.interest();
        shared.local.subscribe(scope, topic, connection, outbox);
        let channel = shared.names.channel(scope, topic);
        if !interest.wanted.contains(&channel) {
            interest.wanted.insert(channel.clone());
            interest.changed.insert(channel);
            drop(interest);
            shared.interest_changed.notify_one();
        }
    }

    fn unsubscribe(&self, scope: &str, topic: &str, connection: ConnectionId) {
        let shared = &self.shared;
        let mut interest = shared.interest();
        shared.local.unsubscribe(scope, topic, connection);
        if shared.local.subscribers(scope, topic) > 0 {
            return;
        }
        let channel = shared.names.channel(scope, topic);
        if interest.wanted.remove(&channel) {
            interest.changed.insert(channel);
            drop(interest);
            shared.interest_changed.notify_one();
        }
    }

    fn publish(&self, scope: &str, topic: &str, frame: WireFrame) -> Delivery {
        let shared = &self.shared;
        let delivery = shared.local.publish(scope, topic, frame.clone());
        if !shared.stats.is_up() {
            shared.dropped(1);
        } else {
            let outgoing = Outgoing {
                channel: shared.names.channel(scope, topic),
                frame,
            };
            if shared.queue.push(outgoing).is_err() {
                shared.dropped(1);
            }
        }
        delivery
    }
}

/// A random id for this backend: the standard library seeds each hasher state with random keys
/// (different for every state made), mixed with the process id and the time.
fn new_host_id() -> HostId {
    let mut id = [0; 16];
    for (half, salt) in id.chunks_mut(8).zip([0_u64, 1]) {
        let mut hasher = std::hash::RandomState::new().build_hasher();
        hasher.write_u64(salt);
        hasher.write_u32(std::process::id());
        if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            hasher.write_u128(now.as_nanos());
        }
        half.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    id
}
