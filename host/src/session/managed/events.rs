//! Calling a managed WebSocket's plugin: `on-open`, `on-message` and `on-close`, each on a fiber
//! with the connection's CPU metered (a loop is cut off at its budget), and the instance's life
//! around them: the instance that answered `handle` runs `on-open`; it is dropped when the
//! connection hibernates; the next event instantiates the plugin's *current* version.
//!
//! A live instance keeps the version it was made from until it hibernates, so a reload reaches
//! a busy connection at its next wake, never in the middle of a conversation.
//!
//! A plugin with shared instances (`instances = "shared"`) works the same way, except that the
//! instance goes back to the plugin's parked ones after every event ([`AwakeSlots::park`]) and
//! the next event takes the most recently parked one of the plugin's current version, whichever
//! connection parked it. So each event runs on the current version, and the instance whose memory
//! the CPU has just touched serves the next message of any connection.

use std::sync::Arc;

use crate::config::InstanceModel;
use crate::engine::bindings::MessageRef;
use crate::engine::cpu::{CpuExceeded, SessionCpu, metered};
use crate::http::admission::HostStats;
use crate::plugins::plugin::{LoadedPlugin, PluginInstance};
use crate::plugins::registry::Registry;
use crate::session::managed::awake::{AwakeSlot, AwakeSlots, WAKE_WAIT};
use crate::session::managed::imports::RealtimeCtx;
use crate::session::managed::registry::{Connection, PluginScope};
use crate::topics::ConnectionId;

/// Why an event could not be delivered; the connection is closed with [`EventFailure::code`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum EventFailure {
    /// The plugin trapped.
    #[error("plugin trapped in {event}: {trap:#}")]
    Trap {
        /// The event.
        event: &'static str,
        /// The trap.
        trap: anyhow::Error,
    },
    /// The plugin used up a CPU budget and was interrupted.
    #[error("plugin interrupted in {event}: {}", match .exceeded {
        CpuExceeded::SessionBudget => "the connection's CPU budget is used up",
        CpuExceeded::RunLimit => "CPU limit per event exceeded (plugin stuck in a loop?)",
    })]
    Cpu {
        /// The event.
        event: &'static str,
        /// Which budget.
        exceeded: CpuExceeded,
    },
    /// The plugin asked for more memory than its limit, then trapped.
    #[error("plugin reached its memory limit in {event}")]
    Memory {
        /// The event.
        event: &'static str,
    },
    /// The plugin is no longer served: no version to wake.
    #[error("the plugin was removed; no version left to run {event}")]
    PluginRemoved {
        /// The event.
        event: &'static str,
    },
    /// No instance could be had to wake the connection: the host is at its limit.
    #[error("no instance free to wake the connection for {event}: {reason}")]
    Busy {
        /// The event.
        event: &'static str,
        /// Which limit.
        reason: String,
    },
    /// Instantiating the plugin failed.
    #[error("instantiating the plugin for {event} failed: {error:#}")]
    Instantiate {
        /// The event.
        event: &'static str,
        /// Why.
        error: anyhow::Error,
    },
}

impl EventFailure {
    /// The close code the client gets: `1011` for a plugin fault, `1001` for a plugin that is
    /// gone, `1013` (try again later) for a host at its limit.
    pub(crate) fn code(&self) -> u16 {
        match self {
            Self::Trap { .. }
            | Self::Cpu { .. }
            | Self::Memory { .. }
            | Self::Instantiate { .. } => 1011,
            Self::PluginRemoved { .. } => 1001,
            Self::Busy { .. } => 1013,
        }
    }

    /// The close reason the client gets: short, naming no internals.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::Trap { .. } | Self::Cpu { .. } | Self::Memory { .. } => "plugin failed",
            Self::Instantiate { .. } => "plugin failed to start",
            Self::PluginRemoved { .. } => "plugin removed",
            Self::Busy { .. } => "server busy, try again later",
        }
    }
}

/// What waking a connection needs from the host.
pub(crate) struct WakeContext {
    /// The current version of each plugin.
    pub(crate) registry: Arc<Registry>,
    /// Live instances are counted here.
    pub(crate) stats: Arc<HostStats>,
    /// The slots of awake connections.
    pub(crate) awake: Arc<AwakeSlots>,
}

/// A live instance of a connection, and its place among the awake connections (none for the
/// first instance of a connection accepted while they were all taken: it runs `on-open` only).
struct Awake {
    instance: PluginInstance,
    slot: Option<AwakeSlot>,
}

/// A connection's side of the plugin: its live instance, if awake, and the version that runs.
pub(crate) struct Guest {
    /// The version of the live instance; while hibernated, the last one that ran.
    plugin: Arc<LoadedPlugin>,
    awake: Option<Awake>,
    scope: Arc<PluginScope>,
    /// The connection whose events these are: each of its instances reaches it directly.
    connection: Arc<Connection>,
    /// The connection's CPU clock, across all its instances.
    cpu: Arc<SessionCpu>,
    wake: Arc<WakeContext>,
    /// Whether an instance this connection handed back waits among the plugin's parked ones
    /// since its last event: its hibernation timer then drops those left idle that long.
    parked: bool,
}

impl Guest {
    /// The connection's guest, awake with `instance` (the one that answered `handle`).
    pub(crate) fn new(
        plugin: Arc<LoadedPlugin>,
        mut instance: PluginInstance,
        slot: Option<AwakeSlot>,
        scope: Arc<PluginScope>,
        connection: Arc<Connection>,
        wake: Arc<WakeContext>,
    ) -> Self {
        let limits = plugin.limits();
        let cpu = Arc::new(SessionCpu::new(
            limits.session_cpu_budget,
            limits.run_cpu_limit,
        ));
        adopt(&mut instance, &cpu, &connection);
        Self {
            plugin,
            awake: Some(Awake { instance, slot }),
            scope,
            connection,
            cpu,
            wake,
            parked: false,
        }
    }

    /// Whether an instance is alive for the connection: its own, or one it parked.
    pub(crate) fn is_awake(&self) -> bool {
        self.awake.is_some() || self.parked
    }

    /// Whether the live instance should go now that its event is over: it holds no place
    /// among the awake connections, or other connections wait for one.
    pub(crate) fn should_hibernate_early(&self) -> bool {
        self.awake
            .as_ref()
            .is_some_and(|awake| awake.slot.is_none() || self.wake.awake.wanted())
    }

    /// The plugin version the connection's events run on (or last ran on).
    pub(crate) fn plugin(&self) -> &LoadedPlugin {
        &self.plugin
    }

    /// The version the connection's events run on (or last ran on).
    pub(crate) fn version(&self) -> &str {
        self.plugin.version()
    }

    /// Drops the instance, freeing its pool slot; the next event makes a fresh one (or, with
    /// shared instances, takes a parked one). If this connection parked an instance since its
    /// last event, the plugin's parked instances left unused for `hibernate_after` go too, and
    /// any of a version no longer served.
    pub(crate) fn hibernate(&mut self) {
        self.awake = None;
        if std::mem::take(&mut self.parked) {
            let limits = self.plugin.limits();
            self.wake
                .awake
                .expire_parked(self.plugin.name(), limits.hibernate_after);
        }
    }

    /// CPU time the plugin has used on this connection.
    pub(crate) fn cpu_spent(&self) -> std::time::Duration {
        self.cpu.spent()
    }

    /// Calls `on-open`.
    pub(crate) async fn on_open(&mut self, id: ConnectionId) -> Result<(), EventFailure> {
        const EVENT: &str = "on-open";
        let cpu = self.cpu.clone();
        let instance = self.instance(EVENT).await?;
        let events = instance.bindings.switchyard_plugin_events().clone();
        let called = Box::pin(metered(events.call_on_open(&mut instance.store, id), &cpu)).await;
        self.finish(EVENT, called)
    }

    /// Calls `on-message`, lowering `message` straight from the framing's buffer.
    pub(crate) async fn on_message(
        &mut self,
        id: ConnectionId,
        message: MessageRef<'_>,
    ) -> Result<(), EventFailure> {
        const EVENT: &str = "on-message";
        let cpu = self.cpu.clone();
        let instance = self.instance(EVENT).await?;
        let on_message = instance.on_message_func();
        // Boxed: the call's future is a few KiB, and inline it would make every connection's
        // task that much larger for its whole life, hibernated or not.
        let called = Box::pin(metered(
            on_message.call_async(&mut instance.store, (id, message)),
            &cpu,
        ))
        .await;
        self.finish(EVENT, called)
    }

    /// Calls `on-close`.
    pub(crate) async fn on_close(
        &mut self,
        id: ConnectionId,
        code: u16,
        reason: &str,
    ) -> Result<(), EventFailure> {
        const EVENT: &str = "on-close";
        let cpu = self.cpu.clone();
        let instance = self.instance(EVENT).await?;
        let events = instance.bindings.switchyard_plugin_events().clone();
        let called = Box::pin(metered(
            events.call_on_close(&mut instance.store, id, code, reason),
            &cpu,
        ))
        .await;
        self.finish(EVENT, called)
    }

    /// After a call: a failed instance is dropped and the failure named.
    fn finish(
        &mut self,
        event: &'static str,
        called: wasmtime::Result<()>,
    ) -> Result<(), EventFailure> {
        let Err(trap) = called else {
            self.hand_back();
            return Ok(());
        };
        let failure = match self.awake.as_ref().map(|awake| awake.instance.store.data()) {
            Some(state) if state.cpu.exceeded().is_some() => EventFailure::Cpu {
                event,
                exceeded: state.cpu.exceeded().unwrap_or(CpuExceeded::RunLimit),
            },
            Some(state) if state.memory.refused => EventFailure::Memory { event },
            _ => EventFailure::Trap {
                event,
                trap: trap.into(),
            },
        };
        // A trapped instance may not be entered again.
        self.awake = None;
        Err(failure)
    }

    /// With shared instances, parks the live instance for the plugin's next event. An instance
    /// without a place among the awake connections is not kept: it goes with the event.
    fn hand_back(&mut self) {
        if self.plugin.limits().instances != InstanceModel::Shared {
            return;
        }
        let Some(Awake { mut instance, slot }) = self.awake.take() else {
            return;
        };
        let Some(slot) = slot else { return };
        let state = instance.store.data_mut();
        state.cpu.end_session();
        state.realtime.clear_own();
        self.wake.awake.park(self.plugin.clone(), instance, slot);
        self.parked = true;
    }

    /// A parked instance of the plugin's current version, if it shares instances and one is
    /// parked, made this connection's for the next event.
    fn unpark(&mut self) -> Option<Awake> {
        // The version that ran the last event is current unless retired: no lookup per event.
        let current = if self.plugin.is_retired() {
            self.wake.registry.get(self.scope.name())?
        } else {
            self.plugin.clone()
        };
        if current.limits().instances != InstanceModel::Shared {
            return None;
        }
        let (mut instance, slot) = self.wake.awake.unpark(&current)?;
        adopt(&mut instance, &self.cpu, &self.connection);
        self.plugin = current;
        Some(Awake {
            instance,
            slot: Some(slot),
        })
    }

    /// The live instance: a parked one (shared instances), or one made from the plugin's
    /// current version if the connection was hibernating.
    async fn instance(&mut self, event: &'static str) -> Result<&mut PluginInstance, EventFailure> {
        if self.awake.is_none() {
            self.awake = match self.unpark() {
                Some(parked) => Some(parked),
                // Boxed, like the calls: instantiating is a large future, needed once per wake.
                None => Some(Box::pin(self.wake_up(event)).await?),
            };
        }
        match &mut self.awake {
            Some(awake) => Ok(&mut awake.instance),
            None => Err(EventFailure::PluginRemoved { event }),
        }
    }

    async fn wake_up(&mut self, event: &'static str) -> Result<Awake, EventFailure> {
        let Some(current) = self.wake.registry.get(self.scope.name()) else {
            return Err(EventFailure::PluginRemoved { event });
        };
        let slot = self
            .wake
            .awake
            .take(&self.connection, WAKE_WAIT)
            .await
            .ok_or_else(|| EventFailure::Busy {
                event,
                reason: format!(
                    "every awake slot (--max-awake-websockets) stayed taken for {WAKE_WAIT:?}"
                ),
            })?;
        let realtime = RealtimeCtx::new(
            self.scope.clone(),
            current.limits(),
            current.metrics_handle(),
        );
        let mut instance = match current
            .instantiate_with(&self.wake.stats.instances, realtime)
            .await
        {
            Ok(instance) => instance,
            Err(err) if err.is::<wasmtime::PoolConcurrencyLimitError>() => {
                return Err(EventFailure::Busy {
                    event,
                    reason: format!("{err}"),
                });
            }
            Err(err) => {
                return Err(EventFailure::Instantiate {
                    event,
                    error: err.into(),
                });
            }
        };
        adopt(&mut instance, &self.cpu, &self.connection);
        if current.version() != self.plugin.version() {
            tracing::debug!(
                from = %self.plugin.version(),
                to = %current.version(),
                "woke on a new version of the plugin"
            );
        }
        tracing::debug!(version = %current.version(), "{event}: woke from hibernation");
        self.plugin = current;
        Ok(Awake {
            instance,
            slot: Some(slot),
        })
    }
}

/// Makes `instance` run `connection`'s events: its CPU counts on the connection's clock, and its
/// host functions reach the connection directly.
fn adopt(instance: &mut PluginInstance, cpu: &Arc<SessionCpu>, connection: &Arc<Connection>) {
    let state = instance.store.data_mut();
    state.cpu.start_session(cpu.clone());
    state.realtime.set_own(connection.clone());
    // A refusal in an earlier event, which the guest survived, is not this event's.
    state.memory.refused = false;
}
