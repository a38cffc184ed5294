//! The `host` role: Switchyard itself, in-process as its binary runs it, serving a plugins
//! folder on `127.0.0.1:0`.

use std::path::PathBuf;
use std::sync::Arc;

use switchyard_host::{HostConfig, Limits, PluginLimits, Runtime, Server};

/// Serves `plugins_dir` until killed, allowing `max_sessions` sessions host-wide and per
/// plugin (the per-plugin default would otherwise stop the memory section at 1,000), keeping
/// compiled plugins in `cache_dir` if given.
pub(super) async fn serve(
    plugins_dir: PathBuf,
    max_sessions: u32,
    cache_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let config = HostConfig::new(plugins_dir, ([127, 0, 0, 1], 0).into());
    let limits = Limits {
        max_sessions,
        plugin: PluginLimits {
            max_sessions,
            ..PluginLimits::default()
        },
        ..Limits::default()
    };
    let mut runtime = Runtime::new(&limits)?;
    if let Some(dir) = cache_dir {
        runtime = runtime.with_artifact_cache(&dir)?;
    }
    let runtime = Arc::new(runtime);
    let server = Server::start(config, runtime).await?;
    super::announce(server.local_addr())?;
    server.run_until(std::future::pending()).await
}
