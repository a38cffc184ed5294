//! Renders `/metrics`: reads the host's gauges and counters ([`HostStats`], [`PubSubStats`],
//! every plugin's [`PluginMetrics`](super::metrics::PluginMetrics)) at scrape time and writes
//! them in the Prometheus text format with `prometheus-client`'s encoder. Nothing is counted
//! here: the counting happens where the events are, in plain atomics.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry as PromRegistry;

use crate::http::admission::HostStats;
use crate::observe::metrics::{
    EndReason, Latency, Metrics, PluginMetrics, STATUS_CLASSES, SessionKind, read,
};
use crate::plugins::registry::Registry;
use crate::topics::redis::PubSubStats;

/// Everything a scrape reads.
#[derive(Clone)]
pub(crate) struct Sources {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) stats: Arc<HostStats>,
    pub(crate) pubsub: Arc<PubSubStats>,
    /// The serving versions, for `switchyard_plugin_info`.
    pub(crate) registry: Arc<Registry>,
    /// Plugin instances the host admits at once (the pool's size), for its occupancy.
    pub(crate) instance_slots: u32,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources").finish_non_exhaustive()
    }
}

/// The Prometheus text of everything now.
pub(crate) fn render(sources: &Sources) -> String {
    let mut registry = PromRegistry::with_prefix("switchyard");
    registry.register_collector(Box::new(sources.clone()));
    let mut text = String::new();
    // Writing into a String cannot fail, and our collector never returns an error.
    if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        tracing::error!("rendering the metrics failed: {err}");
    }
    text
}

impl Collector for Sources {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.encode_host(&mut encoder)?;
        self.encode_pubsub(&mut encoder)?;
        let plugins = self.metrics.plugins();
        encode_plugins(&mut encoder, &plugins, &self.registry)
    }
}

impl Sources {
    fn encode_host(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = &self.stats;
        let websockets = i64::from(stats.live_websockets());
        let awake = i64::from(stats.awake_websockets());
        gauge(
            encoder,
            "open_connections",
            "Open connections: HTTP, upgraded sessions and managed WebSockets",
            i64::from(stats.open_connections()),
        )?;
        counter(
            encoder,
            "refused_connections",
            "Connections closed on accept because the host had its maximum open",
            stats.refused_connections(),
        )?;
        gauge(
            encoder,
            "instances",
            "Plugin instances alive (the instance pool's occupancy)",
            i64::from(stats.live_instances()),
        )?;
        gauge(
            encoder,
            "instance_slots",
            "Plugin instances the host admits at once (the instance pool's size)",
            i64::from(self.instance_slots),
        )?;
        gauge(
            encoder,
            "sessions",
            "Raw upgraded sessions alive",
            i64::from(stats.live_sessions()),
        )?;
        gauge(
            encoder,
            "websockets",
            "Managed WebSocket connections open, hibernated or not",
            websockets,
        )?;
        gauge(
            encoder,
            "websockets_awake",
            "Managed WebSocket connections holding a live instance",
            awake,
        )?;
        gauge(
            encoder,
            "websockets_hibernated",
            "Managed WebSocket connections without a live instance",
            websockets.saturating_sub(awake).max(0),
        )?;
        let dropped = self
            .metrics
            .plugins()
            .iter()
            .map(|(_, plugin)| read(&plugin.guest_log_dropped))
            .sum();
        counter(
            encoder,
            "guest_log_dropped_lines",
            "Lines of plugins' stdout/stderr left out by the log rate limit",
            dropped,
        )
    }

    fn encode_pubsub(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counts = self.pubsub.counts();
        counter(
            encoder,
            "pubsub_published",
            "Messages written to the pub/sub broker",
            counts.published,
        )?;
        counter(
            encoder,
            "pubsub_received",
            "Messages from other hosts taken from the broker",
            counts.received,
        )?;
        counter(
            encoder,
            "pubsub_delivered",
            "Local subscribers that took a message from the broker",
            counts.delivered,
        )?;
        counter(
            encoder,
            "pubsub_overflowed",
            "Local subscribers whose outbound buffer was full, so a message from the broker was dropped for them",
            counts.overflowed,
        )?;
        counter(
            encoder,
            "pubsub_dropped",
            "Publishes for other hosts not sent (broker down or queue full)",
            counts.dropped,
        )?;
        counter(
            encoder,
            "pubsub_rejected",
            "Malformed or foreign messages on a subscribed channel, ignored",
            counts.rejected,
        )?;
        counter(
            encoder,
            "pubsub_connects",
            "Times the connection to the broker came up",
            counts.connects,
        )?;
        gauge(
            encoder,
            "pubsub_subscribed",
            "Channels subscribed at the broker",
            i64::try_from(counts.subscribed).unwrap_or(i64::MAX),
        )?;
        gauge(
            encoder,
            "pubsub_up",
            "1 while cross-host delivery is up",
            i64::from(counts.up),
        )
    }
}

type Plugins = [(String, Arc<PluginMetrics>)];
/// A per-plugin counter: its name, its help, and how to read it.
type PluginCounter = (&'static str, &'static str, fn(&PluginMetrics) -> u64);

fn encode_plugins(
    encoder: &mut DescriptorEncoder,
    plugins: &Plugins,
    registry: &Registry,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
        "plugin_info",
        "The version serving each plugin (always 1)",
        None,
        MetricType::Gauge,
    )?;
    for (name, _) in plugins {
        if let Some(plugin) = registry.get(name) {
            let labels = [("plugin", name.as_str()), ("version", plugin.version())];
            ConstGauge::new(1i64).encode(family.encode_family(&labels)?)?;
        }
    }
    let mut family = encoder.encode_descriptor(
        "plugin_requests",
        "Requests answered, by status class",
        None,
        MetricType::Counter,
    )?;
    for (name, plugin) in plugins {
        for (class, count) in STATUS_CLASSES.iter().zip(&plugin.requests) {
            let labels = [("plugin", name.as_str()), ("class", class)];
            ConstCounter::new(read(count)).encode(family.encode_family(&labels)?)?;
        }
    }
    histograms(
        encoder,
        plugins,
        "plugin_handle_seconds",
        "How long handle took",
        |p| &p.handle,
    )?;
    let mut family = encoder.encode_descriptor(
        "plugin_sessions",
        "Sessions alive, by kind (raw upgrade or managed WebSocket)",
        None,
        MetricType::Gauge,
    )?;
    for (name, plugin) in plugins {
        for kind in SessionKind::ALL {
            let labels = [("plugin", name.as_str()), ("kind", kind.as_str())];
            let live = i64::try_from(plugin.live_sessions(kind)).unwrap_or(i64::MAX);
            ConstGauge::new(live).encode(family.encode_family(&labels)?)?;
        }
    }
    let mut family = encoder.encode_descriptor(
        "plugin_sessions_ended",
        "Sessions ended, by kind and reason",
        None,
        MetricType::Counter,
    )?;
    for (name, plugin) in plugins {
        for (kind, ended) in SessionKind::ALL.iter().zip(&plugin.sessions_ended) {
            for (reason, count) in EndReason::ALL.iter().zip(ended) {
                let labels = [
                    ("plugin", name.as_str()),
                    ("kind", kind.as_str()),
                    ("reason", reason.as_str()),
                ];
                ConstCounter::new(read(count)).encode(family.encode_family(&labels)?)?;
            }
        }
    }
    let counters: [PluginCounter; 9] = [
        (
            "plugin_received_bytes",
            "Bytes from clients: request bodies, session bytes, WebSocket message payloads",
            |p| read(&p.bytes_in),
        ),
        (
            "plugin_sent_bytes",
            "Bytes to clients: response bodies, session bytes, WebSocket frames",
            |p| read(&p.bytes_out),
        ),
        ("plugin_traps", "Traps in any export", |p| read(&p.traps)),
        (
            "plugin_topic_publishes",
            "Messages published to the plugin's topics by its instances",
            |p| read(&p.topic_publishes),
        ),
        (
            "plugin_topic_deliveries",
            "Subscribers on this host whose outbox took a published message",
            |p| read(&p.topic_deliveries),
        ),
        (
            "plugin_topic_drops",
            "Subscribers on this host for whom a published message was dropped (outbox full)",
            |p| read(&p.topic_drops),
        ),
        (
            "plugin_reloads",
            "Times a new version replaced the serving one",
            |p| read(&p.reloads),
        ),
        (
            "plugin_load_failures",
            "Times a file could not become a serving version",
            |p| read(&p.load_failures),
        ),
        (
            "plugin_guest_log_dropped_lines",
            "Lines of the plugin's output left out by the log rate limit",
            |p| read(&p.guest_log_dropped),
        ),
    ];
    for (metric, help, value) in counters {
        let mut family = encoder.encode_descriptor(metric, help, None, MetricType::Counter)?;
        for (name, plugin) in plugins {
            let labels = [("plugin", name.as_str())];
            ConstCounter::new(value(plugin)).encode(family.encode_family(&labels)?)?;
        }
    }
    let mut family = encoder.encode_descriptor(
        "plugin_cpu_seconds",
        "Guest CPU time of sessions and managed WebSockets (counted when they end)",
        None,
        MetricType::Counter,
    )?;
    for (name, plugin) in plugins {
        let seconds = std::time::Duration::from_nanos(read(&plugin.cpu_nanos)).as_secs_f64();
        ConstCounter::new(seconds).encode(family.encode_family(&[("plugin", name.as_str())])?)?;
    }
    histograms(
        encoder,
        plugins,
        "plugin_load_seconds",
        "How long loading a version took (compile or cache, and checks)",
        |p| &p.load,
    )
}

fn histograms(
    encoder: &mut DescriptorEncoder,
    plugins: &Plugins,
    metric: &str,
    help: &str,
    latency: fn(&PluginMetrics) -> &Latency,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(metric, help, None, MetricType::Histogram)?;
    for (name, plugin) in plugins {
        let (sum, count, buckets) = latency(plugin).snapshot();
        let labels = [("plugin", name.as_str())];
        family
            .encode_family(&labels)?
            .encode_histogram::<NoExemplar>(sum, count, &buckets, None)?;
    }
    Ok(())
}

/// The label set of an exemplar we never give.
type NoExemplar = [(&'static str, &'static str); 0];

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}
