//! Settings the host runs with: where plugins live, where to listen, and the limits that keep
//! one plugin or client from hurting the others. Every default is a named constant.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Address the host listens on when none is given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Folder the host loads plugins from when none is given.
pub const DEFAULT_PLUGINS_DIR: &str = "plugins";
/// Plugin instances that may be alive at once, host-wide (requests in flight plus live
/// upgraded sessions). The pooling allocator reserves its slots up front.
pub const DEFAULT_MAX_INSTANCES: u32 = 1_000;
/// Linear memory one plugin instance may grow to.
pub const DEFAULT_MAX_MEMORY_BYTES: usize = 64 << 20;
/// Largest request body the host reads before calling a plugin.
pub const DEFAULT_MAX_REQUEST_BODY: usize = 8 << 20;
/// Time a client has to send a complete request head.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Quiet time after the last change in the plugins folder before it is re-read, so a burst of
/// writes to one file causes one reload.
pub const DEFAULT_RELOAD_DEBOUNCE: Duration = Duration::from_millis(100);

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

/// Limits applied to every plugin and connection.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Plugin instances alive at once, host-wide; sizes the pooling allocator.
    pub max_instances: u32,
    /// Linear memory one instance may grow to, in bytes.
    pub max_memory_bytes: usize,
    /// Largest request body read before calling a plugin; larger bodies get `413`.
    pub max_request_body: usize,
    /// Time a client has to send a complete request head.
    pub header_read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_instances: DEFAULT_MAX_INSTANCES,
            max_memory_bytes: DEFAULT_MAX_MEMORY_BYTES,
            max_request_body: DEFAULT_MAX_REQUEST_BODY,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
        }
    }
}
