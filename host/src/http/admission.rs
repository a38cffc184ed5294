//! Admission and accounting: how many plugin instances and upgraded sessions are alive, and
//! whether one more session may start. A full host or plugin answers `503` with `Retry-After`
//! before any guest code runs, rather than failing later in an obscure way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::http::gauge::{Gauge, GaugeGuard};
use crate::plugins::plugin::LoadedPlugin;

/// Live counts for the whole host; shared by every request and session.
#[derive(Debug, Default)]
pub struct HostStats {
    /// Plugin instances alive (requests being handled plus sessions).
    pub(crate) instances: Arc<Gauge>,
    /// Upgraded sessions alive, host-wide.
    pub(crate) sessions: Arc<Gauge>,
    /// HTTP connections being served (not yet upgraded; an upgraded one counts as a session
    /// or a managed WebSocket).
    pub(crate) connections: Arc<Gauge>,
    /// Managed WebSocket connections open, hibernated or not.
    pub(crate) websockets: Arc<Gauge>,
    /// Managed WebSocket connections holding a live instance.
    pub(crate) awake_websockets: Arc<Gauge>,
    /// Connections closed on accept because the host had its maximum open, since start.
    refused_connections: AtomicU64,
    /// Upgraded sessions alive per plugin name; kept across reloads, since a plugin's limit is
    /// about the plugin, not one version of its file.
    per_plugin: Mutex<HashMap<String, Arc<Gauge>>>,
    /// `handle` calls in progress per plugin name, for the same reason.
    requests_per_plugin: Mutex<HashMap<String, Arc<Gauge>>>,
}

/// A request was not admitted: the plugin already runs as many `handle` calls as it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the plugin's limit of {0} concurrent requests is reached")]
pub(crate) struct RequestRefused(pub(crate) u32);

/// Why a session was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SessionRefused {
    /// The host-wide session limit is reached.
    #[error("the host-wide limit of {0} live sessions is reached")]
    HostFull(u32),
    /// This plugin's session limit is reached.
    #[error("the plugin's limit of {0} live sessions is reached")]
    PluginFull(u32),
}

/// A managed WebSocket was not admitted: the host-wide limit of open ones is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the host-wide limit of {0} managed WebSockets is reached")]
pub(crate) struct WebSocketRefused(pub(crate) u32);

/// A session slot, held for the session's whole life.
#[derive(Debug)]
pub(crate) struct SessionPermit {
    _host: GaugeGuard,
    _plugin: GaugeGuard,
}

impl HostStats {
    /// Plugin instances alive now.
    pub fn live_instances(&self) -> u32 {
        self.instances.live()
    }

    /// Upgraded sessions alive now.
    pub fn live_sessions(&self) -> u32 {
        self.sessions.live()
    }

    /// Managed WebSocket connections open now, hibernated or not.
    pub fn live_websockets(&self) -> u32 {
        self.websockets.live()
    }

    /// Managed WebSocket connections holding a live instance now (not hibernated).
    pub fn awake_websockets(&self) -> u32 {
        self.awake_websockets.live()
    }

    /// Open connections now: HTTP connections being served plus upgraded sessions plus managed
    /// WebSockets.
    pub fn open_connections(&self) -> u32 {
        self.connections
            .live()
            .saturating_add(self.sessions.live())
            .saturating_add(self.websockets.live())
    }

    /// Connections refused because the host had its maximum open, since it started.
    pub fn refused_connections(&self) -> u64 {
        self.refused_connections.load(Ordering::Relaxed)
    }

    /// Takes a slot for a newly accepted connection if fewer than `max` are open; counts the
    /// refusal otherwise. Sessions are counted in: each one is a connection that was upgraded.
    pub(crate) fn admit_connection(&self, max: u32) -> Option<GaugeGuard> {
        let upgraded = self.sessions.live().saturating_add(self.websockets.live());
        let room = max.saturating_sub(upgraded);
        let slot = self.connections.try_enter(room);
        if slot.is_none() {
            self.refused_connections.fetch_add(1, Ordering::Relaxed);
        }
        slot
    }

    /// Takes a session slot for `plugin`, if both the host and the plugin have one free.
    pub(crate) fn admit_session(
        &self,
        plugin: &LoadedPlugin,
        host_max: u32,
    ) -> Result<SessionPermit, SessionRefused> {
        let plugin_max = plugin.limits().max_sessions;
        let plugin_gauge = gauge_of(&self.per_plugin, plugin.name());
        let host = self
            .sessions
            .try_enter(host_max)
            .ok_or(SessionRefused::HostFull(host_max))?;
        let plugin = plugin_gauge
            .try_enter(plugin_max)
            .ok_or(SessionRefused::PluginFull(plugin_max))?;
        Ok(SessionPermit {
            _host: host,
            _plugin: plugin,
        })
    }

    /// Takes a slot for a new managed WebSocket among the open ones, for its whole life.
    pub(crate) fn admit_websocket(&self, max_open: u32) -> Result<GaugeGuard, WebSocketRefused> {
        self.websockets
            .try_enter(max_open)
            .ok_or(WebSocketRefused(max_open))
    }

    /// Takes a slot for one `handle` call of `plugin`, held until its answer is ready. CPU-bound
    /// plugins yield every epoch tick, so each call in progress is one more task taking turns
    /// with everyone else's: the limit keeps one plugin from filling the run queue.
    pub(crate) fn admit_request(
        &self,
        plugin: &LoadedPlugin,
    ) -> Result<GaugeGuard, RequestRefused> {
        let max = plugin.limits().max_concurrent_requests;
        gauge_of(&self.requests_per_plugin, plugin.name())
            .try_enter(max)
            .ok_or(RequestRefused(max))
    }
}

/// The gauge for plugin `name` in `gauges`, created at zero on first use. Called for every
/// request, so the name is only copied into the map the first time.
fn gauge_of(gauges: &Mutex<HashMap<String, Arc<Gauge>>>, name: &str) -> Arc<Gauge> {
    let mut gauges = gauges.lock().unwrap_or_else(|poison| poison.into_inner());
    if let Some(gauge) = gauges.get(name) {
        return gauge.clone();
    }
    gauges.entry(name.to_owned()).or_default().clone()
}
