//! The plugins folder: compiled plugin versions, the route table they are served by, loading
//! and hot reload, and each plugin's sidecar settings.

pub(crate) mod loader;
pub mod plugin;
pub mod registry;
pub mod sidecar;
pub(crate) mod watcher;
