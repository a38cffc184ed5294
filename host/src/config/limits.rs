//! The one declaration of every limit: [`HOST`] for host-wide limits, [`PLUGIN`] for the
//! per-plugin ones (whose flags set the default every plugin starts from, and whose sidecar
//! keys let one plugin's `[limits]` table override it).
//!
//! Each entry names its flag and sidecar key, its unit, its default, the range a value must lie
//! in (checked for flags by the command line, for sidecar keys when the plugin loads), and what
//! a client sees when the limit is exceeded. The values a range excludes are the ones that would
//! make the host or a plugin useless (a zero timeout, a memory no plugin fits in) or a limit
//! meaningless (a `handle` deadline of centuries).

use std::time::Duration;

use super::{DEFAULT_MAX_HEADERS, Limits, PluginLimits};

/// How a limit's number is read and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A plain count.
    Count,
    /// Bytes.
    Bytes,
    /// Mebibytes.
    Mebibytes,
    /// Milliseconds.
    Millis,
    /// Seconds.
    Seconds,
}

impl Unit {
    /// Placeholder shown for the value in `--help`.
    pub fn value_name(self) -> &'static str {
        match self {
            Unit::Count => "N",
            Unit::Bytes => "BYTES",
            Unit::Mebibytes => "MIB",
            Unit::Millis => "MS",
            Unit::Seconds => "SECS",
        }
    }
}

/// A limit's value when no flag or sidecar key sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// This number.
    Value(u64),
    /// No limit.
    Unlimited,
    /// Computed from other limits, as described.
    Derived(&'static str),
}

/// One limit, declared once. `T` is the struct its value lands in.
#[derive(Debug)]
pub struct Limit<T: 'static> {
    /// Command-line flag without the dashes, if the limit has one.
    pub flag: Option<&'static str>,
    /// Key in a plugin sidecar's `[limits]` table, for limits a plugin may override.
    pub sidecar_key: Option<&'static str>,
    /// How the number is read and shown.
    pub unit: Unit,
    /// The value when nothing sets it.
    pub default: Preset,
    /// Smallest allowed value.
    pub min: u64,
    /// Largest allowed value.
    pub max: u64,
    /// What is limited, as the README's table and `--help` say it.
    pub what: &'static str,
    /// What happens when the limit is exceeded.
    pub exceeded: &'static str,
    /// Stores a value (already checked against `min..=max`).
    pub set: fn(&mut T, u64),
}

impl<T> Limit<T> {
    /// The name people know this limit by: its flag, else its sidecar key.
    pub fn name(&self) -> &'static str {
        self.flag.or(self.sidecar_key).unwrap_or("")
    }

    /// Stores `value` if it lies in the declared range; otherwise says why not, in words that
    /// name the limit by `name` (a flag or a sidecar key).
    pub fn try_set(&self, target: &mut T, value: u64, name: &str) -> Result<(), String> {
        if (self.min..=self.max).contains(&value) {
            (self.set)(target, value);
            Ok(())
        } else {
            Err(format!(
                "{name} = {value} is out of range: it must be between {} and {} ({})",
                self.min, self.max, self.what
            ))
        }
    }

    /// Stores the declared default, if there is one.
    pub(crate) fn apply_default(&self, target: &mut T) {
        if let Preset::Value(default) = self.default {
            (self.set)(target, default);
        }
    }
}

/// Bytes in a mebibyte.
pub const MIB: u64 = 1 << 20;
/// Milliseconds in a day: the ceiling of most timeouts, past which a limit stops limiting.
const DAY_MS: u64 = 86_400_000;
/// Instances and sessions are counted in `u32`; the pool reserves memory per slot, so a
/// million is already far beyond what one machine holds.
const MAX_COUNT: u64 = 1_000_000;
/// The largest linear memory an instance may be given, in MiB (the pool reserves address
/// space of this size per slot).
const MAX_MEMORY_MIB: u64 = 4096;

fn millis(value: u64) -> Duration {
    Duration::from_millis(value)
}

/// A declared count, which every range keeps within `u32`.
fn count(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

/// A declared size or count kept as `usize`, which every range keeps within it on 64-bit hosts.
fn to_usize(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// Host-wide limits.
pub const HOST: &[Limit<Limits>] = &[
    Limit {
        flag: Some("max-sessions"),
        sidecar_key: None,
        unit: Unit::Count,
        default: Preset::Value(1_000),
        min: 1,
        max: MAX_COUNT,
        what: "live upgraded sessions, host-wide",
        exceeded: "`503` + `Retry-After: 1`",
        set: |limits, value| limits.max_sessions = count(value),
    },
    Limit {
        flag: Some("max-connections"),
        sidecar_key: None,
        unit: Unit::Count,
        default: Preset::Derived("`--max-sessions` + `--max-websockets` + 1,024"),
        min: 1,
        max: MAX_COUNT,
        what: "open connections, host-wide (HTTP connections being served plus upgraded sessions plus managed WebSockets)",
        exceeded: "the new connection is closed as soon as it is accepted, and counted; one warning per 10 s says how many were",
        set: |limits, value| limits.max_connections = Some(count(value)),
    },
    Limit {
        flag: Some("max-websockets"),
        sidecar_key: None,
        unit: Unit::Count,
        default: Preset::Value(10_000),
        min: 1,
        max: MAX_COUNT,
        what: "open managed WebSocket connections, host-wide (hibernated or not)",
        exceeded: "`503` + `Retry-After: 1`, after `handle` answered",
        set: |limits, value| limits.max_websockets = count(value),
    },
    Limit {
        flag: Some("max-awake-websockets"),
        sidecar_key: None,
        unit: Unit::Count,
        default: Preset::Value(1_000),
        min: 1,
        max: MAX_COUNT,
        what: "managed WebSocket connections holding a live instance (not hibernated), host-wide; both engines' instance pools are sized for them (the concurrent engine's also for `--max-sessions`)",
        exceeded: "a new connection hibernates right after `on-open`; one that must wake waits for a slot (up to 5 s, while awake connections between events hibernate early), then is closed with `1013`",
        set: |limits, value| limits.max_awake_websockets = count(value),
    },
    Limit {
        flag: Some("max-header-bytes"),
        sidecar_key: None,
        unit: Unit::Bytes,
        default: Preset::Value(64 << 10),
        min: 1024,
        max: 1 << 20,
        what: "request head size: request line, header lines and the empty line that ends the head, byte for byte as received",
        exceeded: "`431`, connection closed",
        set: |limits, value| limits.max_header_bytes = to_usize(value),
    },
    Limit {
        flag: Some("max-headers"),
        sidecar_key: None,
        unit: Unit::Count,
        default: Preset::Value(DEFAULT_MAX_HEADERS as u64),
        min: 1,
        max: 10_000,
        what: "header fields in a request head (each line counts, repeated names too)",
        exceeded: "`431`, connection closed (HTTP/2: only the stream)",
        set: |limits, value| limits.max_headers = to_usize(value),
    },
    Limit {
        flag: Some("max-uri-bytes"),
        sidecar_key: None,
        unit: Unit::Bytes,
        default: Preset::Value(8 << 10),
        min: 16,
        max: 1 << 20,
        what: "request target length",
        exceeded: "`414`",
        set: |limits, value| limits.max_uri_bytes = to_usize(value),
    },
    Limit {
        flag: Some("max-body-bytes"),
        sidecar_key: None,
        unit: Unit::Bytes,
        default: Preset::Value(8 << 20),
        min: 0,
        max: 1 << 30,
        what: "request body",
        exceeded: "`413`",
        set: |limits, value| limits.max_request_body = to_usize(value),
    },
    Limit {
        flag: Some("header-read-timeout-ms"),
        sidecar_key: None,
        unit: Unit::Millis,
        default: Preset::Value(10_000),
        min: 100,
        max: 600_000,
        what: "time to send a request head (slowloris)",
        exceeded: "`408`, connection closed; a keep-alive connection that has sent no byte of a next request in that time is closed without a reply",
        set: |limits, value| limits.header_read_timeout = millis(value),
    },
    Limit {
        flag: Some("body-read-timeout-ms"),
        sidecar_key: None,
        unit: Unit::Millis,
        default: Preset::Value(10_000),
        min: 100,
        max: 600_000,
        what: "time a request body may go without a byte arriving",
        exceeded: "`408`, connection closed",
        set: |limits, value| limits.body_read_timeout = millis(value),
    },
    Limit {
        flag: Some("drain-timeout-ms"),
        sidecar_key: None,
        unit: Unit::Millis,
        default: Preset::Value(10_000),
        min: 0,
        max: DAY_MS,
        what: "drain on shutdown",
        exceeded: "sessions closed with 1001",
        set: |limits, value| limits.drain_timeout = millis(value),
    },
    Limit {
        flag: Some("pubsub-queue-messages"),
        sidecar_key: None,
        unit: Unit::Count,
        // A second of publishing at 10,000 msg/s: far more than waits on a healthy Redis
        // connection (a pipeline leaves as soon as the previous one is answered).
        default: Preset::Value(10_000),
        min: 1,
        max: MAX_COUNT,
        what: "publishes waiting to be sent to Redis (`--pubsub redis://…`)",
        exceeded: "the publish still reaches this host's subscribers; for other hosts it is dropped, counted and logged (at most once per 10 s)",
        set: |limits, value| limits.pubsub_queue_messages = to_usize(value),
    },
    Limit {
        flag: Some("pubsub-queue-bytes"),
        sidecar_key: None,
        unit: Unit::Bytes,
        default: Preset::Value(16 * MIB),
        min: 1024,
        max: 1 << 30,
        what: "bytes of publishes waiting to be sent to Redis (an empty queue always takes one)",
        exceeded: "as for `pubsub-queue-messages`",
        set: |limits, value| limits.pubsub_queue_bytes = to_usize(value),
    },
    Limit {
        flag: Some("tls-handshake-timeout-ms"),
        sidecar_key: None,
        unit: Unit::Millis,
        default: Preset::Value(10_000),
        min: 100,
        max: 600_000,
        what: "time to complete the TLS handshake (`--tls-cert`)",
        exceeded: "connection closed without a reply",
        set: |limits, value| limits.tls_handshake_timeout = millis(value),
    },
    Limit {
        flag: Some("max-tls-handshakes"),
        sidecar_key: None,
        unit: Unit::Count,
        // Each handshake costs a signature (about 1 ms of CPU with ring's ECDSA P-256): 1,024
        // waiting at once is a second of work on one core, more than any real burst of
        // clients needs and little enough that a flood of half-open handshakes is bounded.
        default: Preset::Value(1_024),
        min: 1,
        max: MAX_COUNT,
        what: "TLS handshakes in progress at once, host-wide (`--tls-cert`)",
        exceeded: "the new connection is closed before its handshake; logged at a bounded rate",
        set: |limits, value| limits.max_tls_handshakes = count(value),
    },
];

/// Per-plugin limits: the flag sets the default for every plugin, the sidecar key overrides it
/// for one.
pub const PLUGIN: &[Limit<PluginLimits>] = &[
    Limit {
        flag: Some("plugin-max-sessions"),
        sidecar_key: Some("max_sessions"),
        unit: Unit::Count,
        default: Preset::Value(1_000),
        min: 1,
        max: MAX_COUNT,
        what: "live sessions of one plugin",
        exceeded: "`503` + `Retry-After: 1`",
        set: |limits, value| limits.max_sessions = count(value),
    },
    Limit {
        flag: Some("plugin-max-concurrent-requests"),
        sidecar_key: Some("max_concurrent_requests"),
        unit: Unit::Count,
        // Plugins have no I/O to wait on, so their `handle` calls are CPU-bound and more of
        // them than cores gains no throughput: each is one more task taking turns of one epoch
        // tick on the same workers as every other plugin's requests. Measured with 400 looping
        // requests on a 2-core machine (README, Limits): 8 keeps others' p99 under ~100 ms.
        default: Preset::Value(8),
        min: 1,
        max: MAX_COUNT,
        what: "`handle` calls of one plugin in progress at once",
        exceeded: "`503` + `Retry-After: 1`, before any guest code runs",
        set: |limits, value| limits.max_concurrent_requests = count(value),
    },
    Limit {
        flag: Some("memory-mib"),
        sidecar_key: Some("memory_mib"),
        unit: Unit::Mebibytes,
        default: Preset::Value(64),
        min: 1,
        max: MAX_MEMORY_MIB,
        what: "linear memory per instance (a plugin may only lower it; one that needs more at start is refused at load)",
        exceeded: "the guest's allocation fails and it traps: `500` in `handle`, session closed in `upgrade`; logged as \"memory limit\"",
        set: |limits, value| limits.max_memory_bytes = to_usize(value.saturating_mul(MIB)),
    },
    Limit {
        flag: Some("handle-timeout-ms"),
        sidecar_key: Some("handle_timeout_ms"),
        unit: Unit::Millis,
        default: Preset::Value(2_000),
        min: 1,
        max: 600_000,
        what: "wall time of `handle`",
        exceeded: "`504`, instance dropped",
        set: |limits, value| limits.handle_timeout = millis(value),
    },
    Limit {
        flag: Some("session-cpu-ms"),
        sidecar_key: Some("session_cpu_ms"),
        unit: Unit::Millis,
        default: Preset::Value(30_000),
        min: 10,
        max: DAY_MS,
        what: "CPU time per session",
        exceeded: "session closed, \"CPU budget used up\"",
        set: |limits, value| limits.session_cpu_budget = millis(value),
    },
    Limit {
        flag: Some("run-cpu-ms"),
        sidecar_key: Some("run_cpu_ms"),
        unit: Unit::Millis,
        default: Preset::Value(1_000),
        min: 10,
        max: 600_000,
        what: "CPU time per wake-up of a session",
        exceeded: "session closed, \"CPU limit per wake-up exceeded\" (a loop)",
        set: |limits, value| limits.run_cpu_limit = millis(value),
    },
    Limit {
        flag: Some("handshake-timeout-ms"),
        sidecar_key: Some("handshake_timeout_ms"),
        unit: Unit::Millis,
        default: Preset::Value(10_000),
        min: 100,
        max: 600_000,
        what: "from `101` to the connection being handed over",
        exceeded: "session dropped",
        set: |limits, value| limits.handshake_timeout = millis(value),
    },
    Limit {
        flag: Some("idle-timeout-ms"),
        sidecar_key: Some("idle_timeout_ms"),
        unit: Unit::Millis,
        default: Preset::Value(300_000),
        min: 100,
        max: DAY_MS,
        what: "no bytes either way in a session",
        exceeded: "session closed, \"idle\"",
        set: |limits, value| limits.idle_timeout = millis(value),
    },
    Limit {
        flag: Some("max-session-secs"),
        sidecar_key: Some("max_session_secs"),
        unit: Unit::Seconds,
        default: Preset::Unlimited,
        min: 1,
        max: 365 * 86_400,
        what: "session length",
        exceeded: "session closed",
        set: |limits, value| limits.max_session_duration = Some(Duration::from_secs(value)),
    },
    Limit {
        flag: Some("hibernate-after-ms"),
        sidecar_key: Some("hibernate_after_ms"),
        unit: Unit::Millis,
        default: Preset::Value(10_000),
        min: 1,
        max: DAY_MS,
        what: "time without events after which a managed WebSocket's instance is dropped (the connection hibernates)",
        exceeded: "nothing the client sees: the socket stays open and pings are answered; the next event runs on a fresh instance",
        set: |limits, value| limits.hibernate_after = millis(value),
    },
    Limit {
        flag: Some("max-message-bytes"),
        sidecar_key: Some("max_message_bytes"),
        unit: Unit::Bytes,
        default: Preset::Value(MIB),
        min: 125,
        max: 64 * MIB,
        what: "a managed WebSocket message (and frame), either way",
        exceeded: "from the client: close `1009`; from the plugin: `send`/`publish` return `too-large`",
        set: |limits, value| limits.max_message_bytes = to_usize(value),
    },
    Limit {
        flag: Some("max-outbound-bytes"),
        sidecar_key: Some("max_outbound_bytes"),
        unit: Unit::Bytes,
        default: Preset::Value(MIB),
        min: 1024,
        max: 1 << 30,
        what: "frames queued for one managed WebSocket and not yet written (an empty queue always takes one message)",
        exceeded: "`send` returns `backpressure`; a publish closes the connection with `1008` (`overflow = \"close\"`) or is dropped for it (`\"drop\"`), counted and logged",
        set: |limits, value| limits.max_outbound_bytes = to_usize(value),
    },
    Limit {
        flag: Some("max-attachment-bytes"),
        sidecar_key: Some("max_attachment_bytes"),
        unit: Unit::Bytes,
        default: Preset::Value(4 << 10),
        min: 0,
        max: MIB,
        what: "a managed WebSocket's attachment",
        exceeded: "`set-attachment` returns `too-large`; in the `websocket` answer: `502`",
        set: |limits, value| limits.max_attachment_bytes = to_usize(value),
    },
    Limit {
        flag: Some("max-topics-per-connection"),
        sidecar_key: Some("max_topics_per_connection"),
        unit: Unit::Count,
        default: Preset::Value(64),
        min: 0,
        max: 10_000,
        what: "topics one managed WebSocket belongs to",
        exceeded: "`subscribe` returns `too-many-topics`; in the `websocket` answer: `502`",
        set: |limits, value| limits.max_topics_per_connection = to_usize(value),
    },
    Limit {
        flag: Some("max-topic-bytes"),
        sidecar_key: Some("max_topic_bytes"),
        unit: Unit::Bytes,
        default: Preset::Value(128),
        min: 1,
        max: 4096,
        what: "a topic name",
        exceeded: "`subscribe`/`publish` return `invalid-topic`; in the `websocket` answer: `502`",
        set: |limits, value| limits.max_topic_bytes = to_usize(value),
    },
    Limit {
        flag: Some("ping-interval-ms"),
        sidecar_key: Some("ping_interval_ms"),
        unit: Unit::Millis,
        default: Preset::Value(30_000),
        min: 100,
        max: DAY_MS,
        what: "time a managed WebSocket's client may be silent before the host pings it",
        exceeded: "the host sends a ping (a live client answers with a pong)",
        set: |limits, value| limits.ping_interval = millis(value),
    },
    Limit {
        flag: Some("websocket-idle-timeout-ms"),
        sidecar_key: Some("websocket_idle_timeout_ms"),
        unit: Unit::Millis,
        default: Preset::Value(60_000),
        min: 100,
        max: DAY_MS,
        what: "time a managed WebSocket's client may send nothing at all, pongs included (keep it above `ping_interval_ms`)",
        exceeded: "close `1001` \"idle for …\"",
        set: |limits, value| limits.websocket_idle_timeout = millis(value),
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_lies_in_its_range_and_names_are_unique() {
        let mut names = std::collections::BTreeSet::new();
        let host = HOST.iter().map(|l| (l.name(), l.default, l.min, l.max));
        let plugin = PLUGIN.iter().map(|l| (l.name(), l.default, l.min, l.max));
        for (name, default, min, max) in host.chain(plugin) {
            assert!(!name.is_empty());
            assert!(names.insert(name), "{name} is declared twice");
            assert!(min <= max, "{name}");
            if let Preset::Value(default) = default {
                assert!((min..=max).contains(&default), "{name}'s default");
            }
        }
    }

    #[test]
    fn out_of_range_values_are_refused_with_the_name() {
        let memory = PLUGIN
            .iter()
            .find(|l| l.sidecar_key == Some("memory_mib"))
            .unwrap();
        let mut limits = PluginLimits::default();
        let err = memory.try_set(&mut limits, 0, "memory_mib").unwrap_err();
        assert!(err.starts_with("memory_mib = 0 is out of range"), "{err}");
        memory.try_set(&mut limits, 16, "memory_mib").unwrap();
        assert_eq!(limits.max_memory_bytes, 16 << 20);
    }
}
