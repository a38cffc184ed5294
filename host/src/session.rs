//! An upgraded session: once hyper has switched the connection, the client's bytes are piped
//! into the `upgrade` export of the same instance that answered `handle`, and its output back to
//! the client, until the guest drops its output, the client goes away, or the guest traps.

use std::sync::Arc;
use std::time::Instant;

use hyper::upgrade::OnUpgrade;
use tokio::sync::oneshot;
use wasmtime::component::StreamReader;

use crate::bindings;
use crate::plugin::{LoadedPlugin, PluginInstance};
use crate::pump::{self, ClientBytes, ClientSink, OutputEnd};

/// Which request a session belongs to, for its log lines.
pub(crate) struct SessionLabel {
    /// The plugin version that accepted the upgrade; held so it outlives a reload.
    pub(crate) plugin: Arc<LoadedPlugin>,
    /// The request's path and query.
    pub(crate) path: String,
}

/// How a session ended.
#[derive(Debug)]
enum SessionEnd {
    /// The guest dropped its output stream.
    GuestFinished,
    /// Writing to the client failed.
    ClientGone,
}

/// Waits for hyper to hand over the connection, then runs the guest's session to its end.
pub(crate) async fn run(
    instance: PluginInstance,
    request: bindings::Request,
    on_upgrade: OnUpgrade,
    label: SessionLabel,
) {
    let plugin = &label.plugin;
    let upgraded = match on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(err) => {
            tracing::warn!(plugin = %plugin.name(), version = %plugin.version(), path = %label.path, "connection closed before the upgrade completed: {err}");
            return;
        }
    };
    let started = Instant::now();
    tracing::debug!(plugin = %plugin.name(), version = %plugin.version(), path = %label.path, "session started");
    match drive(instance, request, pump::split(upgraded)).await {
        Ok(end) => tracing::info!(
            plugin = %plugin.name(),
            version = %plugin.version(),
            path = %label.path,
            duration_ms = started.elapsed().as_millis() as u64,
            "session ended: {}",
            match end {
                SessionEnd::GuestFinished => "plugin closed it",
                SessionEnd::ClientGone => "client went away",
            }
        ),
        Err(trap) => tracing::error!(
            plugin = %plugin.name(),
            version = %plugin.version(),
            path = %label.path,
            duration_ms = started.elapsed().as_millis() as u64,
            "session ended: plugin trapped in upgrade: {trap:#}"
        ),
    }
}

/// Calls `upgrade` with the client's bytes and pipes its output to the client until the output
/// ends. Dropping the store afterwards frees the instance and its pool slot, and closes the
/// connection.
async fn drive(
    mut instance: PluginInstance,
    request: bindings::Request,
    (early, reader, writer): (bytes::Bytes, pump::ClientReader, pump::ClientWriter),
) -> anyhow::Result<SessionEnd> {
    let exports = instance.bindings.switchyard_plugin_handler().clone();
    instance
        .store
        .run_concurrent(async move |accessor| -> anyhow::Result<SessionEnd> {
            let input = accessor
                .with(|mut store| StreamReader::new(&mut store, ClientBytes::new(early, reader)))?;
            let output = exports.call_upgrade(accessor, request, input).await?;
            let (ended_tx, ended_rx) = oneshot::channel();
            accessor
                .with(|mut store| output.pipe(&mut store, ClientSink::new(writer, ended_tx)))?;
            // The guest's session keeps running inside `run_concurrent` while we wait here.
            Ok(match ended_rx.await {
                Ok(OutputEnd::ClientGone) => SessionEnd::ClientGone,
                Ok(OutputEnd::GuestClosed) | Err(_) => SessionEnd::GuestFinished,
            })
        })
        .await?
}
