//! Settings the host runs with: where plugins live, where to listen, and the limits that keep
//! one plugin or client from hurting the others.
//!
//! Every limit is declared once, in [`limits::HOST`] and [`limits::PLUGIN`]: its flag, its
//! sidecar key, its unit, its default, the range it must lie in and what a client sees when it
//! is exceeded. The command line, the sidecar parser and the README's limits table
//! ([`docs::limits_table`]) are all derived from those tables; the structs below only hold the
//! values, typed for the code that uses them.

pub mod docs;
pub mod file;
pub mod limits;
pub mod pubsub;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use limits::{Limit, Unit};

use crate::topics::Overflow;

/// Address the host listens on when none is given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Folder the host loads plugins from when none is given.
pub const DEFAULT_PLUGINS_DIR: &str = "plugins";
/// Quiet time after the last change in the plugins folder before it is re-read, so a burst of
/// writes to one file causes one reload. Short, because it adds straight to reload latency: a
/// copy's writes arrive within a millisecond or two of each other, and a file caught half
/// written fails to load, is logged, and is retried on its next event.
pub const DEFAULT_RELOAD_DEBOUNCE: Duration = Duration::from_millis(25);
/// Plugin instances kept in the pool beyond the session limit, for plain requests in flight.
pub const REQUEST_INSTANCE_HEADROOM: u32 = 256;
/// HTTP connections allowed beyond `--max-sessions` by default: every upgraded session is an
/// open connection too, and plain requests need some room beside them.
pub const CONNECTION_HEADROOM: u32 = 1_024;
/// Most header fields in a request head by default; hyper's own default: up to it, the parser
/// keeps its header slots on the stack; above it, they are allocated for each request.
pub const DEFAULT_MAX_HEADERS: usize = 100;

/// Most header fields a plugin's answer (response or upgrade) may carry; more is refused with
/// `500` (`502` for an upgrade). Generous for any real response, and far below the 32,768 fields
/// at which `http`'s `HeaderMap` panics.
pub const MAX_GUEST_HEADERS: usize = 256;
/// Most bytes of header names and values, in all, in a plugin's answer; more is refused like
/// too many fields. As much as a client may send in a request head by default.
pub const MAX_GUEST_HEADER_BYTES: usize = 64 * 1024;
/// Largest response body a plugin may answer with; larger is refused with `500`. The body has
/// already been copied out of the guest when it is checked, so what this bounds is what the
/// host holds and sends per response, not the copy (the guest's memory limit bounds that).
pub const MAX_GUEST_BODY_BYTES: usize = 16 << 20;
/// Lines a plugin's stdout and stderr may log per second, all its instances together, once its
/// burst is spent; the rest are dropped and counted in a line that says how many.
pub const GUEST_LOG_LINES_PER_SEC: u32 = 100;
/// Lines a plugin may log at once before [`GUEST_LOG_LINES_PER_SEC`] applies: room for a panic's
/// backtrace or a short debugging burst.
pub const GUEST_LOG_BURST: u32 = 500;
/// Warnings of one kind that clients can provoke at will (a refused upgrade, a `503`) logged
/// per second once the burst is spent; the next one logged says how many were left out.
pub const HOST_WARNINGS_PER_SEC: u32 = 5;
/// Warnings of one kind logged at once before [`HOST_WARNINGS_PER_SEC`] applies.
pub const HOST_WARNINGS_BURST: u32 = 20;

/// Everything [`crate::Server`] needs besides its [`crate::Runtime`] (which holds the limits,
/// because the engine's instance pool is sized from them).
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Folder watched for `<name>.wasm` plugins and their `<name>.toml` sidecars.
    pub plugins_dir: PathBuf,
    /// Address to accept HTTP connections on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Quiet time before a changed plugins folder is re-read.
    pub reload_debounce: Duration,
    /// Where topics live: this process only, or shared through Redis with other hosts.
    pub pubsub: pubsub::PubSubConfig,
    /// Where the admin listener (`/metrics`, `/healthz`, `/readyz`) accepts; `None`: off.
    pub admin_listen: Option<SocketAddr>,
    /// Whether to write an access-log line per request and per ended session.
    pub access_log: bool,
    /// Serve HTTPS (HTTP/1.1 and HTTP/2 by ALPN) with this certificate and key instead of
    /// cleartext HTTP/1.1.
    pub tls: Option<TlsFiles>,
}

/// The PEM files of the listener's certificate chain and private key (`--tls-cert`,
/// `--tls-key`); both are watched and reloaded when they change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl HostConfig {
    /// A configuration with the default reload debounce.
    pub fn new(plugins_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        Self {
            plugins_dir: plugins_dir.into(),
            listen,
            reload_debounce: DEFAULT_RELOAD_DEBOUNCE,
            pubsub: pubsub::PubSubConfig::default(),
            admin_listen: None,
            access_log: false,
            tls: None,
        }
    }
}

/// Host-wide limits, plus the defaults every plugin starts from. [`Limits::default`] takes
/// each value from its declaration in [`limits::HOST`] / [`limits::PLUGIN`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Upgraded sessions alive at once, host-wide; more get `503` with `Retry-After`.
    pub max_sessions: u32,
    /// Managed WebSocket connections open at once, host-wide, hibernated or not.
    pub max_websockets: u32,
    /// Managed WebSocket connections holding a live instance at once, host-wide.
    pub max_awake_websockets: u32,
    /// Open connections, host-wide: HTTP connections being served plus upgraded sessions.
    /// Connections beyond it are closed as soon as they are accepted. `None`: derived from
    /// `max_sessions` (see [`Limits::max_connections`]).
    pub max_connections: Option<u32>,
    /// Largest request head in bytes, as sent: request line, header lines and the empty line
    /// that ends the head (`431` beyond).
    pub max_header_bytes: usize,
    /// Most header fields in a request head (`431` beyond).
    pub max_headers: usize,
    /// Longest request target in bytes (`414` beyond).
    pub max_uri_bytes: usize,
    /// Largest request body in bytes (`413` beyond).
    pub max_request_body: usize,
    /// Time a client has to send a complete request head; also how long a keep-alive
    /// connection may wait idle for its next request.
    pub header_read_timeout: Duration,
    /// Time a request body may go without progress (`408` beyond).
    pub body_read_timeout: Duration,
    /// On shutdown, how long live sessions may go on before they are closed.
    pub drain_timeout: Duration,
    /// Publishes waiting to be sent to the pub/sub broker (`--pubsub redis://…`) at most; more
    /// are dropped for other hosts (local subscribers still get them) and counted.
    pub pubsub_queue_messages: usize,
    /// Bytes of publishes waiting to be sent to the pub/sub broker at most; as above.
    pub pubsub_queue_bytes: usize,
    /// Time a client has to complete the TLS handshake (with `--tls-cert`).
    pub tls_handshake_timeout: Duration,
    /// TLS handshakes in progress at once; connections beyond it are closed at once.
    pub max_tls_handshakes: u32,
    /// What each plugin gets unless its sidecar says otherwise.
    pub plugin: PluginLimits,
}

impl Limits {
    /// Plugin instances the pooling allocator reserves: every session holds one, so does every
    /// awake managed WebSocket, and plain requests in flight need a few more.
    pub fn max_instances(&self) -> u32 {
        self.max_sessions
            .saturating_add(self.max_awake_websockets)
            .saturating_add(REQUEST_INSTANCE_HEADROOM)
    }

    /// Open connections allowed host-wide: as configured, else [`CONNECTION_HEADROOM`] more
    /// than the session and managed WebSocket limits together.
    pub fn max_connections(&self) -> u32 {
        self.max_connections.unwrap_or_else(|| {
            self.max_sessions
                .saturating_add(self.max_websockets)
                .saturating_add(CONNECTION_HEADROOM)
        })
    }

    /// Every value at zero, before the declared defaults are applied.
    fn unset() -> Self {
        Self {
            max_sessions: 0,
            max_websockets: 0,
            max_awake_websockets: 0,
            max_connections: None,
            max_header_bytes: 0,
            max_headers: 0,
            max_uri_bytes: 0,
            max_request_body: 0,
            header_read_timeout: Duration::ZERO,
            body_read_timeout: Duration::ZERO,
            drain_timeout: Duration::ZERO,
            pubsub_queue_messages: 0,
            pubsub_queue_bytes: 0,
            tls_handshake_timeout: Duration::ZERO,
            max_tls_handshakes: 0,
            plugin: PluginLimits::unset(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        let mut limits = Self::unset();
        for limit in limits::HOST {
            limit.apply_default(&mut limits);
        }
        for limit in limits::PLUGIN {
            limit.apply_default(&mut limits.plugin);
        }
        limits
    }
}

/// Limits for one plugin's instances and sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginLimits {
    /// Linear memory one instance may grow to, in bytes; growing past it fails in the guest.
    pub max_memory_bytes: usize,
    /// Wall time `handle` may take (`504` beyond).
    pub handle_timeout: Duration,
    /// CPU time one session may use in all.
    pub session_cpu_budget: Duration,
    /// CPU time one wake-up of a session may use without returning to the host.
    pub run_cpu_limit: Duration,
    /// Time from the `101` until the connection is handed over.
    pub handshake_timeout: Duration,
    /// Time a session may pass with no bytes either way.
    pub idle_timeout: Duration,
    /// Longest a session may last, if limited.
    pub max_session_duration: Option<Duration>,
    /// Sessions of this plugin alive at once (`503` beyond).
    pub max_sessions: u32,
    /// `handle` calls of this plugin in progress at once (`503` beyond).
    pub max_concurrent_requests: u32,
    /// Protocols this plugin may switch to; `None` allows any the client offered.
    pub allowed_upgrades: Option<Vec<String>>,
    /// Time without events after which a managed WebSocket's instance is dropped.
    pub hibernate_after: Duration,
    /// Largest managed WebSocket message, either way (and frame, from the client).
    pub max_message_bytes: usize,
    /// Bytes of frames queued for one managed WebSocket.
    pub max_outbound_bytes: usize,
    /// Largest attachment of a managed WebSocket.
    pub max_attachment_bytes: usize,
    /// Topics one managed WebSocket may belong to.
    pub max_topics_per_connection: usize,
    /// Longest topic name, in bytes.
    pub max_topic_bytes: usize,
    /// Client silence after which the host pings a managed WebSocket.
    pub ping_interval: Duration,
    /// Client silence (pongs included) after which a managed WebSocket is closed.
    pub websocket_idle_timeout: Duration,
    /// What a publish does to a subscriber whose outbound buffer is full (sidecar `overflow`).
    pub overflow: Overflow,
    /// Whether a managed WebSocket's events run on an instance of its own or on instances the
    /// plugin's connections share (sidecar `instances`).
    pub instances: InstanceModel,
}

/// How a plugin's managed WebSockets get the instances their events run on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum InstanceModel {
    /// Each awake connection has an instance of its own, made when it wakes and dropped when it
    /// hibernates: one user's data never reaches another's events. The default.
    #[default]
    PerConnection,
    /// An event borrows an instance from a few the plugin's connections share, and hands it back
    /// when it returns: the instance's memory stays warm in the CPU's caches, a busy connection
    /// costs no instance of its own, and each event runs on the plugin's current version. Only
    /// for plugins that keep nothing about a connection in memory between events (the
    /// attachment is the place for that, as hibernation already requires).
    Shared,
}

impl PluginLimits {
    /// Every value at zero, before the declared defaults are applied.
    fn unset() -> Self {
        Self {
            max_memory_bytes: 0,
            handle_timeout: Duration::ZERO,
            session_cpu_budget: Duration::ZERO,
            run_cpu_limit: Duration::ZERO,
            handshake_timeout: Duration::ZERO,
            idle_timeout: Duration::ZERO,
            max_session_duration: None,
            max_sessions: 0,
            max_concurrent_requests: 0,
            allowed_upgrades: None,
            hibernate_after: Duration::ZERO,
            max_message_bytes: 0,
            max_outbound_bytes: 0,
            max_attachment_bytes: 0,
            max_topics_per_connection: 0,
            max_topic_bytes: 0,
            ping_interval: Duration::ZERO,
            websocket_idle_timeout: Duration::ZERO,
            overflow: Overflow::Close,
            instances: InstanceModel::PerConnection,
        }
    }
}

impl Default for PluginLimits {
    fn default() -> Self {
        Limits::default().plugin
    }
}
