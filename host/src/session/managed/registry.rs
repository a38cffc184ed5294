//! Which managed WebSocket connections are open, per plugin: the [`Hub`] hands out connection
//! numbers and keeps one [`PluginScope`] per plugin name, which holds that plugin's connections
//! and is the only way its host functions reach a connection or a topic. A scope outlives every
//! version of its plugin, so a reloaded version still reaches the connections its predecessor
//! accepted, and no plugin can reach another's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::config::PluginLimits;
use crate::ratelimit::LogRateLimit;
use crate::topics::local::LocalTopics;
use crate::topics::{ConnectionId, Outbox, TopicBackend, WireFrame};

/// The connections and topics of every plugin.
pub(crate) struct Hub {
    /// Scopes by plugin name; created on a plugin's first request, kept while the host runs
    /// (one small entry per plugin name ever served).
    scopes: Mutex<HashMap<Arc<str>, Arc<PluginScope>>>,
    topics: Arc<dyn TopicBackend>,
    /// The next connection number; numbers are never reused while the host runs.
    next_id: AtomicU64,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new(Arc::new(LocalTopics::default()))
    }
}

impl Hub {
    /// A hub whose topics live in `topics`.
    pub(crate) fn new(topics: Arc<dyn TopicBackend>) -> Self {
        Self {
            scopes: Mutex::default(),
            topics,
            next_id: AtomicU64::new(1),
        }
    }

    /// The scope of plugin `name`, made on first use.
    pub(crate) fn scope(&self, name: &str) -> Arc<PluginScope> {
        let mut scopes = self
            .scopes
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(scope) = scopes.get(name) {
            return scope.clone();
        }
        let name: Arc<str> = Arc::from(name);
        let scope = Arc::new(PluginScope {
            name: name.clone(),
            connections: RwLock::default(),
            topics: self.topics.clone(),
            overflow_log: LogRateLimit::new(
                crate::config::HOST_WARNINGS_PER_SEC,
                crate::config::HOST_WARNINGS_BURST,
            ),
        });
        scopes.insert(name, scope.clone());
        scope
    }

    /// A fresh connection number.
    pub(crate) fn next_id(&self) -> ConnectionId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// One plugin's open managed connections and its view of the topics.
pub(crate) struct PluginScope {
    name: Arc<str>,
    connections: RwLock<HashMap<ConnectionId, Arc<Connection>>>,
    topics: Arc<dyn TopicBackend>,
    /// Lines about this plugin's subscribers that fell behind, at a bounded rate.
    pub(crate) overflow_log: LogRateLimit,
}

impl PluginScope {
    /// The plugin's name, which is also its topics' namespace.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The open connection `id`, if it is this plugin's.
    pub(crate) fn get(&self, id: ConnectionId) -> Option<Arc<Connection>> {
        self.read().get(&id).cloned()
    }

    /// Adds `connection`; it can be addressed from now on.
    pub(crate) fn insert(&self, connection: Arc<Connection>) {
        self.write().insert(connection.id, connection);
    }

    /// Forgets connection `id` and takes it out of every topic: nothing reaches it any more.
    pub(crate) fn remove(&self, connection: &Connection) {
        self.write().remove(&connection.id);
        let topics = connection.leave_all();
        for topic in topics {
            self.topics.unsubscribe(&self.name, &topic, connection.id);
        }
    }

    /// Puts `connection` in `topic`, within its limits.
    pub(crate) fn subscribe(&self, connection: &Connection, topic: &str) -> Result<(), Joined> {
        let mut memberships = connection.lock_memberships();
        if memberships.closed {
            return Err(Joined::Closed);
        }
        if memberships.topics.iter().any(|joined| &**joined == topic) {
            return Ok(());
        }
        if memberships.topics.len() >= connection.limits.max_topics {
            return Err(Joined::TooMany);
        }
        // Under the membership lock, so a connection that is closing cannot be left behind
        // in a topic.
        self.topics
            .subscribe(&self.name, topic, connection.id, connection.outbox.clone());
        memberships.topics.push(Arc::from(topic));
        Ok(())
    }

    /// Takes `connection` out of `topic`; not being in it is fine.
    pub(crate) fn unsubscribe(&self, connection: &Connection, topic: &str) {
        let mut memberships = connection.lock_memberships();
        if let Some(at) = memberships
            .topics
            .iter()
            .position(|joined| &**joined == topic)
        {
            memberships.topics.swap_remove(at);
            self.topics.unsubscribe(&self.name, topic, connection.id);
        }
    }

    /// Queues `frame` for every subscriber of `topic` of this plugin.
    pub(crate) fn publish(&self, topic: &str, frame: WireFrame) -> crate::topics::Delivery {
        self.topics.publish(&self.name, topic, frame)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<ConnectionId, Arc<Connection>>> {
        // Every update is one insert or remove: a poisoned map is still consistent.
        self.connections
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<ConnectionId, Arc<Connection>>> {
        self.connections
            .write()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// Why a connection could not join a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Joined {
    /// It already belongs to as many topics as it may.
    TooMany,
    /// It is closing.
    Closed,
}

/// The limits a connection's host functions check, fixed when it is accepted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    pub(crate) max_message_bytes: usize,
    pub(crate) max_attachment_bytes: usize,
    pub(crate) max_topics: usize,
    pub(crate) max_topic_bytes: usize,
}

impl From<&PluginLimits> for ConnectionLimits {
    fn from(limits: &PluginLimits) -> Self {
        Self {
            max_message_bytes: limits.max_message_bytes,
            max_attachment_bytes: limits.max_attachment_bytes,
            max_topics: limits.max_topics_per_connection,
            max_topic_bytes: limits.max_topic_bytes,
        }
    }
}

/// A close the plugin asked for, carried to the connection's task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CloseRequest {
    pub(crate) code: u16,
    pub(crate) reason: String,
}

/// What the host keeps for one managed connection, whether or not an instance is alive: what
/// the host functions and publishes reach, shared with the connection's task.
pub(crate) struct Connection {
    pub(crate) id: ConnectionId,
    /// Frames waiting to be written to the socket.
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) limits: ConnectionLimits,
    /// The bytes the plugin keeps here across hibernation.
    attachment: Mutex<Bytes>,
    memberships: Mutex<Memberships>,
    /// A close the plugin asked for, until the connection's task starts it.
    close: Mutex<Option<CloseRequest>>,
    /// Whether `close` holds a request: the connection's task looks at it once per message,
    /// and a load is cheaper than taking the lock to find nothing.
    close_asked: AtomicBool,
    /// Wakes the connection's task when a close is asked for, or when other connections wait
    /// for an awake slot (an idle one then hibernates).
    pub(crate) nudge: Notify,
}

#[derive(Debug, Default)]
struct Memberships {
    topics: Vec<Arc<str>>,
    /// Set when the connection ends: it joins nothing any more.
    closed: bool,
}

impl Connection {
    pub(crate) fn new(
        id: ConnectionId,
        outbox: Arc<Outbox>,
        limits: ConnectionLimits,
        attachment: Bytes,
    ) -> Self {
        Self {
            id,
            outbox,
            limits,
            attachment: Mutex::new(attachment),
            memberships: Mutex::default(),
            close: Mutex::new(None),
            close_asked: AtomicBool::new(false),
            nudge: Notify::new(),
        }
    }

    /// The attachment as it is now.
    pub(crate) fn attachment(&self) -> Bytes {
        lock(&self.attachment).clone()
    }

    /// Replaces the attachment (the caller has checked its size).
    pub(crate) fn set_attachment(&self, attachment: Bytes) {
        *lock(&self.attachment) = attachment;
    }

    /// Asks the connection's task to close with `request` (the first request wins).
    pub(crate) fn ask_close(&self, request: CloseRequest) {
        let mut close = lock(&self.close);
        if close.is_none() {
            *close = Some(request);
            self.close_asked.store(true, Ordering::Release);
        }
        drop(close);
        self.nudge.notify_one();
    }

    /// The close the plugin asked for, once.
    pub(crate) fn take_close(&self) -> Option<CloseRequest> {
        // Set under the lock with the request: without it there is nothing to take.
        if !self.close_asked.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.close).take()
    }

    /// Marks the connection closed for joining and hands back its topics to leave.
    fn leave_all(&self) -> Vec<Arc<str>> {
        let mut memberships = self.lock_memberships();
        memberships.closed = true;
        std::mem::take(&mut memberships.topics)
    }

    fn lock_memberships(&self) -> std::sync::MutexGuard<'_, Memberships> {
        lock(&self.memberships)
    }
}

/// Locks `mutex`; every update under these locks is a single assignment, so a poisoned one
/// is still consistent.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}
