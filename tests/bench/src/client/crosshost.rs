//! The cross-host latency client: one member of a room on host A publishes numbered messages
//! at a fixed rate; one member of the same room on host B times each from just before it was
//! written on A until it is read on B, and counts what never came (lost) and what came twice.
//! The publisher also receives its own messages (on A, locally): they are timed the same way,
//! as the same-host baseline of the same run.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::AsyncWriteExt as _;

use super::frame;
use super::ws::{self, Socket};

/// Largest message a member accepts (the numbered messages are under 40 bytes).
const MAX_MESSAGE: usize = 1024;
/// How long the receiver waits for the first message of the synchronising ones, each.
const SYNC_WAIT: Duration = Duration::from_millis(200);
/// Synchronising messages tried before the load fails: host B subscribes at Redis a moment
/// after its member joins, and what is published before that does not reach it.
const SYNC_ATTEMPTS: usize = 50;
/// How long the receiver waits for stragglers after the last publish.
const DRAIN: Duration = Duration::from_secs(2);
/// What the numbered messages start with (the synchronising ones start with `sync `).
const PREFIX: &str = "seq ";

/// What one load measured.
pub(crate) struct LatencyFigures {
    /// Publish on A → read on B, per message received on B (in the order received).
    pub(crate) latencies: Vec<Duration>,
    /// Publish on A → read by the publisher itself on A: the same-host baseline.
    pub(crate) same_host: Vec<Duration>,
    /// Per message read on both hosts: how much later B read it than A (zero if B was first).
    /// A stall of the machine delays both reads alike, so this is what crossing hosts adds.
    pub(crate) added: Vec<Duration>,
    /// Messages published.
    pub(crate) sent: usize,
    /// Published messages B never received.
    pub(crate) lost: usize,
    /// Messages B received more than once.
    pub(crate) duplicates: usize,
    /// Messages B received out of publish order.
    pub(crate) reordered: usize,
}

/// When each message was written, by number (set by the publisher just before writing).
type SentAt = Rc<RefCell<Vec<Option<Instant>>>>;

/// What one receiving member records.
#[derive(Default)]
struct Received {
    /// How often each message arrived.
    times_seen: Vec<u32>,
    latencies: Vec<Duration>,
    /// Each message's first latency, by number.
    by_number: Vec<Option<Duration>>,
    last: Option<usize>,
    reordered: usize,
    synced: bool,
    failure: Option<String>,
}

/// Publishes `count` messages at `rate` per second to `path` on `publish_on`, received by a
/// member on `receive_on`.
pub(crate) async fn latency(
    publish_on: SocketAddr,
    receive_on: SocketAddr,
    path: &str,
    count: usize,
    rate: u64,
) -> anyhow::Result<LatencyFigures> {
    let Socket {
        reader: receiver,
        writer: _receiver_writer,
    } = one(receive_on, path).await.context("the receiver on B")?;
    let Socket {
        reader: own,
        writer: mut publisher,
    } = one(publish_on, path).await.context("the publisher on A")?;
    let sent_at: SentAt = Rc::new(RefCell::new(vec![None; count]));
    let tally = || {
        Rc::new(RefCell::new(Received {
            times_seen: vec![0; count],
            by_number: vec![None; count],
            ..Received::default()
        }))
    };
    let (state, own_state) = (tally(), tally());
    let reading = tokio::task::spawn_local(receive(receiver, sent_at.clone(), state.clone()));
    let draining = tokio::task::spawn_local(receive(own, sent_at.clone(), own_state.clone()));
    let result = async {
        for attempt in 0..SYNC_ATTEMPTS {
            publisher
                .write_all(&frame::text(&format!("sync {attempt}")))
                .await
                .context("publishing")?;
            tokio::time::sleep(SYNC_WAIT).await;
            if state.borrow().synced {
                break;
            }
        }
        if !state.borrow().synced {
            bail!("nothing published on A reached B in {SYNC_ATTEMPTS} tries");
        }
        let interval = Duration::from_secs(1) / u32::try_from(rate.max(1)).unwrap_or(u32::MAX);
        let start = tokio::time::Instant::now();
        for number in 0..count {
            // A fixed schedule, not a sleep after each: the rate holds even if a write waits.
            tokio::time::sleep_until(start + interval * u32::try_from(number).unwrap_or(0)).await;
            let message = frame::text(&format!("{PREFIX}{number:08}"));
            if let Some(slot) = sent_at.borrow_mut().get_mut(number) {
                *slot = Some(Instant::now());
            }
            publisher.write_all(&message).await.context("publishing")?;
        }
        let deadline = tokio::time::Instant::now() + DRAIN;
        while tokio::time::Instant::now() < deadline {
            if state.borrow().latencies.len() >= count
                && own_state.borrow().latencies.len() >= count
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        anyhow::Ok(())
    }
    .await;
    reading.abort();
    draining.abort();
    result?;
    let state = state.borrow();
    if let Some(failure) = &state.failure {
        bail!("the receiver on B: {failure}");
    }
    if let Some(failure) = &own_state.borrow().failure {
        bail!("the publisher's own copies on A: {failure}");
    }
    let own = own_state.borrow();
    let added = state
        .by_number
        .iter()
        .zip(&own.by_number)
        .filter_map(|(b, a)| Some(b.as_ref()?.saturating_sub(*a.as_ref()?)))
        .collect();
    Ok(LatencyFigures {
        latencies: state.latencies.clone(),
        same_host: own.latencies.clone(),
        added,
        sent: count,
        lost: state.times_seen.iter().filter(|seen| **seen == 0).count(),
        duplicates: state.times_seen.iter().filter(|seen| **seen > 1).count(),
        reordered: state.reordered,
    })
}

/// One quiet member at `addr{path}`.
async fn one(addr: SocketAddr, path: &str) -> anyhow::Result<Socket> {
    ws::open_quiet(addr, path, 1, 1)
        .await?
        .pop()
        .context("no session opened")
}

/// A receiver: records every message's latency until aborted or its connection fails.
async fn receive(
    mut reader: tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    sent_at: SentAt,
    state: Rc<RefCell<Received>>,
) {
    let mut message = Vec::with_capacity(MAX_MESSAGE);
    loop {
        if let Err(err) = frame::read_message(&mut reader, &mut message, MAX_MESSAGE).await {
            state.borrow_mut().failure = Some(format!("{err:#}"));
            return;
        }
        let now = Instant::now();
        let mut state = state.borrow_mut();
        let text = String::from_utf8_lossy(&message);
        if text.starts_with("sync ") {
            state.synced = true;
            continue;
        }
        let Some(number) = text
            .strip_prefix(PREFIX)
            .and_then(|digits| digits.parse::<usize>().ok())
        else {
            state.failure = Some(format!("received {text:?}, which nobody published"));
            return;
        };
        let Some(Some(sent)) = sent_at.borrow().get(number).copied() else {
            state.failure = Some(format!("received message {number} before it was sent"));
            return;
        };
        if let Some(seen) = state.times_seen.get_mut(number) {
            *seen += 1;
        }
        if state.last.is_some_and(|last| number < last) {
            state.reordered += 1;
        }
        state.last = Some(number);
        let latency = now - sent;
        state.latencies.push(latency);
        if let Some(slot @ None) = state.by_number.get_mut(number) {
            *slot = Some(latency);
        }
    }
}
