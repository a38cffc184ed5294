//! Topics: a message published once reaches every connection subscribed to the topic, without
//! guest code running per recipient (the host frames it once and hands the same bytes to every
//! subscriber's [`Outbox`], which writes them to its socket at once when it can, or queues
//! them). Topics are scoped to the plugin that uses them: two plugins' topics
//! named alike are different topics.
//!
//! Delivery is at most once, like Redis pub/sub and NATS core: a subscriber that falls behind
//! past its outbox's limit loses messages or is cut off, by its [`Overflow`] policy, and a
//! publisher is never slowed down by a subscriber. Messages from one publisher reach each
//! subscriber in the order they were published (every outbox is a FIFO, writes directly only
//! when nothing is queued, and a publish has reached all of them before it returns).
//!
//! The registry is behind [`TopicBackend`]: the in-process [`local::LocalTopics`] (`--pubsub
//! local`, the default), or [`redis::RedisTopics`], which wraps it and shares topics with every
//! host on the same Redis server (`--pubsub redis://…`).

pub mod local;
mod outbox;
pub mod redis;

use std::sync::Arc;

pub use outbox::{
    Batch, CONTROL_ROOM, Flushed, Outbox, Overflow, Pushed, Refused, Socket, WireFrame,
};

/// A connection, as the host numbers them.
pub type ConnectionId = u64;

/// What one publish did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Subscribers whose outbox took the message.
    pub queued: usize,
    /// Subscribers whose outbox was full and dropped it.
    pub dropped: usize,
    /// Subscribers that are cut off or gone (their outbox is closed).
    pub closed: usize,
}

/// Where subscriptions live and publishes go.
pub trait TopicBackend: Send + Sync {
    /// Delivers what is published to `topic` of plugin `scope` into `outbox` from now on.
    /// Subscribing again replaces the earlier outbox of the same connection.
    fn subscribe(&self, scope: &str, topic: &str, connection: ConnectionId, outbox: Arc<Outbox>);

    /// Stops delivering `topic` of plugin `scope` to `connection`; unknown ones are ignored.
    fn unsubscribe(&self, scope: &str, topic: &str, connection: ConnectionId);

    /// Queues `frame` (already framed for the wire) in the outbox of every subscriber of
    /// `topic` of plugin `scope`. Never waits.
    fn publish(&self, scope: &str, topic: &str, frame: WireFrame) -> Delivery;
}
