//! Settings the host runs with: where plugins live, where to listen, and the limits that keep
//! one plugin or client from hurting the others. Every default is a named constant, and the
//! README's limits table lists them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Address the host listens on when none is given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Folder the host loads plugins from when none is given.
pub const DEFAULT_PLUGINS_DIR: &str = "plugins";
/// Quiet time after the last change in the plugins folder before it is re-read, so a burst of
/// writes to one file causes one reload. Short, because it adds straight to reload latency: a
/// copy's writes arrive within a millisecond or two of each other, and a file caught half
/// written fails to load, is logged, and is retried on its next event.
pub const DEFAULT_RELOAD_DEBOUNCE: Duration = Duration::from_millis(25);

/// Upgraded sessions alive at once, host-wide.
pub const DEFAULT_MAX_SESSIONS: u32 = 1_000;
/// Plugin instances kept in the pool beyond the session limit, for plain requests in flight.
pub const REQUEST_INSTANCE_HEADROOM: u32 = 256;
/// Largest request head (request line plus headers); larger ones get `431`.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// Longest request target (path and query); longer ones get `414`.
pub const DEFAULT_MAX_URI_BYTES: usize = 8 * 1024;
/// Largest request body the host reads before calling a plugin; larger ones get `413`.
pub const DEFAULT_MAX_REQUEST_BODY: usize = 8 << 20;
/// Time a client has to send a complete request head (slowloris defence).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// On shutdown, how long live sessions may go on before they are closed.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Linear memory one plugin instance may grow to.
pub const DEFAULT_MAX_MEMORY_BYTES: usize = 64 << 20;
/// Wall time `handle` may take; past it the client gets `504`.
pub const DEFAULT_HANDLE_TIMEOUT: Duration = Duration::from_secs(2);
/// CPU time one upgraded session may use in all.
pub const DEFAULT_SESSION_CPU_BUDGET: Duration = Duration::from_secs(30);
/// CPU time one wake-up of a session may use before it returns to waiting: catches a
/// guest stuck in a loop long before it has burnt its whole budget.
pub const DEFAULT_RUN_CPU_LIMIT: Duration = Duration::from_secs(1);
/// Time from the plugin's `101` until the connection is handed over.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// `handle` calls of one plugin in progress at once; more get `503` with `Retry-After`.
/// Plugins have no I/O to wait on, so their calls are CPU-bound and more of them than cores
/// gains no throughput: each is one more task taking 10 ms turns on the same workers as every
/// other plugin's requests. 16 keeps a plugin that loops in every call from slowing others'
/// requests by more than a few tens of milliseconds on a 2-core machine (README, Limits).
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: u32 = 8;
/// Time an upgraded session may pass with no bytes in either direction.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Everything [`crate::Server`] needs to run.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Folder watched for `<name>.wasm` plugins and their `<name>.toml` sidecars.
    pub plugins_dir: PathBuf,
    /// Address to accept HTTP connections on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Limits applied to every plugin and connection.
    pub limits: Limits,
    /// Quiet time before a changed plugins folder is re-read.
    pub reload_debounce: Duration,
}

impl HostConfig {
    /// A configuration with every limit at its default.
    pub fn new(plugins_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        Self {
            plugins_dir: plugins_dir.into(),
            listen,
            limits: Limits::default(),
            reload_debounce: DEFAULT_RELOAD_DEBOUNCE,
        }
    }
}

/// Host-wide limits, plus the defaults every plugin starts from.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Upgraded sessions alive at once, host-wide; more get `503` with `Retry-After`.
    pub max_sessions: u32,
    /// Largest request head in bytes (`431` beyond).
    pub max_header_bytes: usize,
    /// Longest request target in bytes (`414` beyond).
    pub max_uri_bytes: usize,
    /// Largest request body in bytes (`413` beyond).
    pub max_request_body: usize,
    /// Time a client has to send a complete request head.
    pub header_read_timeout: Duration,
    /// On shutdown, how long live sessions may go on before they are closed.
    pub drain_timeout: Duration,
    /// What each plugin gets unless its sidecar says otherwise.
    pub plugin: PluginLimits,
}

impl Limits {
    /// Plugin instances the pooling allocator reserves: every session holds one, and plain
    /// requests in flight need a few more.
    pub fn max_instances(&self) -> u32 {
        self.max_sessions.saturating_add(REQUEST_INSTANCE_HEADROOM)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_uri_bytes: DEFAULT_MAX_URI_BYTES,
            max_request_body: DEFAULT_MAX_REQUEST_BODY,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            plugin: PluginLimits::default(),
        }
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
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            max_memory_bytes: DEFAULT_MAX_MEMORY_BYTES,
            handle_timeout: DEFAULT_HANDLE_TIMEOUT,
            session_cpu_budget: DEFAULT_SESSION_CPU_BUDGET,
            run_cpu_limit: DEFAULT_RUN_CPU_LIMIT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_session_duration: None,
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            allowed_upgrades: None,
        }
    }
}
