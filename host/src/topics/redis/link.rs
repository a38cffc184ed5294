//! The link to Redis: connects (one publishing and one subscribing connection), subscribes to
//! every wanted channel, then sends queued publishes, delivers what arrives and follows changes
//! of interest until a connection fails; then it drops what was queued, says that cross-host
//! delivery is down, and tries again after a jittered, growing pause, for as long as the host
//! runs. Every state change is one log line (texts in the parent module's doc).

use std::collections::HashSet;
use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use futures_util::StreamExt as _;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{AsyncConnectionConfig, Client, Msg};
use tokio_util::sync::CancellationToken;

use super::channel::{self, Opened};
use super::{PubSubStats, Shared};
use crate::ratelimit::limited_warn;
use crate::topics::TopicBackend as _;

/// First pause before connecting again.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest pause between attempts: below 5 s, so that with the handshake and the resubscription
/// cross-host delivery is back within 5 s of Redis being back, however long it was away.
const BACKOFF_MAX: Duration = Duration::from_secs(4);
/// Time to open a connection (TCP and handshake) before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Time Redis has to answer a command (a pipeline of publishes, a subscription change, a ping)
/// before the connection is taken for dead.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the subscribing connection is pinged, so a connection that silently died (no
/// reset, e.g. a host gone from the network) is noticed rather than waited on forever.
const PING_INTERVAL: Duration = Duration::from_secs(10);
/// Channels per `SUBSCRIBE`/`UNSUBSCRIBE` command when many change at once (a reconnection).
const CHANNELS_PER_COMMAND: usize = 1_000;
/// While publishes are being dropped, at most one line per this interval says how many.
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Runs the link until `stop` is cancelled.
pub(super) async fn run(shared: Arc<Shared>, client: Client, url: String, stop: CancellationToken) {
    let mut backoff = Backoff::default();
    // Whether the last state logged was "down", so each outage is logged once.
    let mut logged_down = false;
    loop {
        let outcome = tokio::select! {
            () = stop.cancelled() => {
                // The host is stopping: its connections to Redis close with this task.
                shared.stats.up.store(false, Ordering::Release);
                return;
            }
            outcome = connect_and_serve(&shared, &client, &url, &mut backoff) => outcome,
        };
        shared.stats.up.store(false, Ordering::Release);
        shared.stats.subscribed.store(0, Ordering::Relaxed);
        // What was queued for the lost connection will not be sent (at most once).
        shared.dropped(shared.queue.clear());
        // A connection that came up since the last line is a new outage, logged again.
        if backoff.was_reset() {
            logged_down = false;
        }
        let pause = backoff.next();
        let error = format!("{:#}", outcome.err().unwrap_or_else(|| anyhow!("closed")));
        if logged_down {
            tracing::debug!(%error, retry_in_ms = pause.as_millis() as u64, "pubsub: still down");
        } else {
            tracing::warn!(
                %error,
                retry_in_ms = pause.as_millis() as u64,
                redis = %url,
                "pubsub: cross-host delivery down"
            );
            logged_down = true;
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// One connection's life: returns why it ended.
async fn connect_and_serve(
    shared: &Shared,
    client: &Client,
    url: &str,
    backoff: &mut Backoff,
) -> anyhow::Result<()> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    let publisher = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .context("connecting the publishing connection")?;
    let (mut sink, stream) = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(|_| anyhow!("no connection within {CONNECT_TIMEOUT:?}"))?
        .context("connecting the subscribing connection")?
        .split();
    // Everything wanted now is subscribed; changes from here on are the `changed` set's.
    let wanted: Vec<Vec<u8>> = {
        let mut interest = shared.interest();
        interest.changed.clear();
        interest.wanted.iter().cloned().collect()
    };
    let mut subscribed = HashSet::with_capacity(wanted.len());
    for chunk in wanted.chunks(CHANNELS_PER_COMMAND) {
        answer(sink.subscribe(chunk)).await.context("SUBSCRIBE")?;
        subscribed.extend(chunk.iter().cloned());
    }
    // A publish that saw the last connection up just as it went down may still be queued: it
    // belongs to the outage and is dropped (and counted) with it; nothing older than this
    // moment goes out.
    shared.dropped(shared.queue.clear());
    shared
        .stats
        .subscribed
        .store(subscribed.len() as u64, Ordering::Relaxed);
    PubSubStats::add(&shared.stats.connects, 1);
    shared.stats.up.store(true, Ordering::Release);
    backoff.reset();
    tracing::info!(
        topics = subscribed.len(),
        redis = %url,
        "pubsub: cross-host delivery up"
    );
    tokio::select! {
        result = send_publishes(shared, publisher) => result,
        result = follow_subscriptions(shared, &mut sink, stream, &mut subscribed) => result,
    }
}

/// Sends whatever is queued as one pipeline, then waits for more; returns on the first error.
async fn send_publishes(
    shared: &Shared,
    mut connection: MultiplexedConnection,
) -> anyhow::Result<()> {
    loop {
        let batch = shared.queue.take_all().await;
        let mut pipeline = redis::pipe();
        for outgoing in &batch {
            pipeline
                .cmd("PUBLISH")
                .arg(&outgoing.channel[..])
                .arg(channel::Sealed {
                    host: &shared.host,
                    frame: &outgoing.frame,
                })
                .ignore();
        }
        match answer(pipeline.query_async::<()>(&mut connection)).await {
            Ok(()) => PubSubStats::add(&shared.stats.published, batch.len()),
            Err(err) => {
                shared.dropped(batch.len());
                return Err(err.context("PUBLISH"));
            }
        }
    }
}

/// Delivers what arrives and follows changes of interest; returns when the connection fails.
async fn follow_subscriptions(
    shared: &Shared,
    sink: &mut PubSubSink,
    mut stream: PubSubStream,
    subscribed: &mut HashSet<Vec<u8>>,
) -> anyhow::Result<()> {
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.reset();
    loop {
        tokio::select! {
            message = stream.next() => match message {
                Some(message) => receive(shared, &message),
                None => return Err(anyhow!("Redis closed the subscribing connection")),
            },
            () = shared.interest_changed.notified() => {
                update_subscriptions(shared, sink, subscribed).await?;
            }
            _ = ping.tick() => {
                answer(sink.ping::<redis::Value>()).await.context("PING")?;
            }
        }
    }
}

/// Subscribes to channels that became wanted and unsubscribes from those no longer wanted.
async fn update_subscriptions(
    shared: &Shared,
    sink: &mut PubSubSink,
    subscribed: &mut HashSet<Vec<u8>>,
) -> anyhow::Result<()> {
    let (add, remove): (Vec<Vec<u8>>, Vec<Vec<u8>>) = {
        let mut interest = shared.interest();
        let changed = std::mem::take(&mut interest.changed);
        changed
            .into_iter()
            .filter(|channel| interest.wanted.contains(channel) != subscribed.contains(channel))
            .partition(|channel| interest.wanted.contains(channel))
    };
    for chunk in add.chunks(CHANNELS_PER_COMMAND) {
        answer(sink.subscribe(chunk)).await.context("SUBSCRIBE")?;
        subscribed.extend(chunk.iter().cloned());
    }
    for chunk in remove.chunks(CHANNELS_PER_COMMAND) {
        answer(sink.unsubscribe(chunk))
            .await
            .context("UNSUBSCRIBE")?;
        for channel in chunk {
            subscribed.remove(channel);
        }
    }
    shared
        .stats
        .subscribed
        .store(subscribed.len() as u64, Ordering::Relaxed);
    Ok(())
}

/// Queues a message from Redis to this host's subscribers of its topic, unless it is this
/// host's own or is not a well-formed Switchyard message (then it is logged and ignored).
fn receive(shared: &Shared, message: &Msg) {
    let channel = message.get_channel::<Vec<u8>>().unwrap_or_default();
    let Some((scope, topic)) = shared.names.parse(&channel) else {
        reject(shared, &channel, "not a channel of this deployment");
        return;
    };
    match channel::open(&shared.host, message.get_payload_bytes()) {
        Ok(Opened::Own) => {}
        Ok(Opened::Frame(frame)) => {
            PubSubStats::add(&shared.stats.received, 1);
            let delivery = shared.local.publish(&scope, topic, frame);
            PubSubStats::add(&shared.stats.delivered, delivery.queued);
            if delivery.dropped > 0 {
                PubSubStats::add(&shared.stats.overflowed, delivery.dropped);
                limited_warn!(
                    shared.overflow_log,
                    "pubsub: a message from another host on topic {topic:?} of plugin {scope:?} \
                     was dropped for {} subscriber(s) whose outbound buffer is full",
                    delivery.dropped
                );
            }
        }
        Err(refused) => reject(shared, &channel, &refused.to_string()),
    }
}

fn reject(shared: &Shared, channel: &[u8], reason: &str) {
    PubSubStats::add(&shared.stats.rejected, 1);
    let channel = String::from_utf8_lossy(channel);
    limited_warn!(
        shared.garbage_log,
        "pubsub: ignored a message from Redis on channel {channel:?}: {reason}"
    );
}

/// `request` within [`RESPONSE_TIMEOUT`].
async fn answer<T>(request: impl Future<Output = redis::RedisResult<T>>) -> anyhow::Result<T> {
    match tokio::time::timeout(RESPONSE_TIMEOUT, request).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(anyhow!("no answer from Redis within {RESPONSE_TIMEOUT:?}")),
    }
}

/// Logs, at most once per [`DROP_LOG_INTERVAL`], how many publishes were dropped since the
/// last line, while any are.
pub(super) async fn report_drops(shared: Arc<Shared>, stop: CancellationToken) {
    let mut reported = shared.stats.dropped.load(Ordering::Relaxed);
    let mut tick = tokio::time::interval(DROP_LOG_INTERVAL);
    tick.reset();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = shared.stats.dropped.load(Ordering::Relaxed);
        if now > reported {
            tracing::warn!(
                dropped = now - reported,
                total = now,
                "pubsub: dropped cross-host publishes"
            );
            reported = now;
        }
    }
}

/// Pauses between connection attempts: doubling from [`BACKOFF_MIN`] to [`BACKOFF_MAX`], each
/// drawn between half and all of that (so hosts that lost Redis together do not all knock at
/// once when it returns).
#[derive(Debug)]
struct Backoff {
    ceiling: Duration,
    reset_since_last: bool,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            ceiling: BACKOFF_MIN,
            reset_since_last: false,
        }
    }
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = (ceiling * 2).min(BACKOFF_MAX);
        let mut hasher = std::hash::RandomState::new().build_hasher();
        hasher.write_u128(ceiling.as_nanos());
        let fraction = 0.5 + (hasher.finish() % 1_000) as f64 / 2_000.0;
        ceiling.mul_f64(fraction)
    }

    fn reset(&mut self) {
        self.ceiling = BACKOFF_MIN;
        self.reset_since_last = true;
    }

    /// Whether a connection came up since the last call.
    fn was_reset(&mut self) -> bool {
        std::mem::take(&mut self.reset_since_last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_to_the_cap_jittered_and_start_over_after_a_connection() {
        let mut backoff = Backoff::default();
        let pauses: Vec<Duration> = (0..10).map(|_| backoff.next()).collect();
        let first = pauses.first().copied().unwrap_or_default();
        assert!(
            first >= BACKOFF_MIN / 2 && first <= BACKOFF_MIN,
            "{first:?}"
        );
        for pause in &pauses {
            assert!(
                *pause >= BACKOFF_MIN / 2 && *pause <= BACKOFF_MAX,
                "{pause:?}"
            );
        }
        let last = pauses.last().copied().unwrap_or_default();
        assert!(last >= BACKOFF_MAX / 2, "capped, not stuck low: {last:?}");
        assert!(!backoff.was_reset());
        backoff.reset();
        assert!(backoff.was_reset());
        assert!(backoff.next() <= BACKOFF_MIN);
    }
}
