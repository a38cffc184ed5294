//! The fan-out client: a room of quiet members, one of which publishes a text message per
//! round, and every member, the publisher included (as in a chat room), must receive it. A
//! round is timed from just before the publish is written until the last member has read it,
//! and the next round starts only then: the latency is publish → last delivery, and deliveries
//! per second are the members over that time.
//!
//! Each member's reads run as a local task; they share one [`Round`] that counts deliveries of
//! the current round's message. A message of an earlier round (one a slow joiner missed during
//! the first, synchronising rounds) is counted as stale and otherwise ignored; anything else is
//! an error.

use std::cell::{Cell, RefCell};
use std::io::{BufRead as _, Write as _};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncWriteExt as _, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::frame;
use super::ws::{self, Socket};

/// Handshakes in flight while the room fills.
const OPEN_CONCURRENCY: usize = 256;
/// Rounds tried before measuring until one reaches every member: a server may add a member to
/// its room a moment after the `101`, so the first publish can miss the last joiners.
const SYNC_ATTEMPTS: usize = 5;
/// How long a synchronising round waits for its last delivery.
const SYNC_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a measured round may take before the load fails.
const ROUND_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest message a member accepts (a round's message is under 100 bytes).
const MAX_MESSAGE: usize = 1024;
/// A round's message up to its number: the JSON a chat room carries for a server message.
const MESSAGE_PREFIX: &str = r#"{"type":"message","room":"bench","from":"server","text":"round "#;
/// A round's message after its number.
const MESSAGE_SUFFIX: &str = r#""}"#;

/// What one room measured.
#[derive(Debug, Clone)]
pub(crate) struct FanoutFigures {
    /// Members in the room, the publisher included.
    pub(crate) members: usize,
    /// Publish → last delivery, per measured round.
    pub(crate) rounds: Vec<Duration>,
    /// Messages of an earlier round that arrived late (only ever expected while synchronising).
    pub(crate) stale: u64,
}

impl FanoutFigures {
    /// The rounds of several rooms of one size, as one.
    pub(crate) fn merge(blocks: &[FanoutFigures]) -> FanoutFigures {
        FanoutFigures {
            members: blocks.first().map_or(0, |block| block.members),
            rounds: blocks
                .iter()
                .flat_map(|block| block.rounds.clone())
                .collect(),
            stale: blocks.iter().map(|block| block.stale).sum(),
        }
    }

    /// Deliveries per second of the median round: the members over the median time from
    /// publish to last delivery. The median, not the mean, because on a shared machine a few
    /// rounds stretched by other work would otherwise decide the figure.
    pub(crate) fn deliveries_per_sec(&self) -> f64 {
        let mut rounds = self.rounds.clone();
        rounds.sort_unstable();
        let median = rounds.get(rounds.len() / 2).copied().unwrap_or_default();
        self.members as f64 / median.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// The text a round publishes: numbered, so a late message is recognised as one.
pub(crate) fn round_message(round: u64) -> String {
    format!("{MESSAGE_PREFIX}{round:08}{MESSAGE_SUFFIX}")
}

/// The round number a message carries, if it is a round's message at all.
fn round_of(message: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(message).ok()?;
    let number = text
        .strip_prefix(MESSAGE_PREFIX)?
        .strip_suffix(MESSAGE_SUFFIX)?;
    number.parse().ok()
}

/// The state every member's task shares: which round is on, and how far it got.
#[derive(Default)]
struct Round {
    current: Cell<u64>,
    /// The current round's message, compared byte for byte (cheaper than parsing each one).
    expected: RefCell<Vec<u8>>,
    received: Cell<usize>,
    /// When the last member read the current round's message.
    completed: Cell<Option<Instant>>,
    stale: Cell<u64>,
    failure: RefCell<Option<String>>,
    done: Notify,
}

impl Round {
    /// Starts round `number`.
    fn begin(&self, number: u64) {
        self.current.set(number);
        *self.expected.borrow_mut() = round_message(number).into_bytes();
        self.received.set(0);
        self.completed.set(None);
    }

    /// One member read `message`.
    fn deliver(&self, message: &[u8], members: usize) {
        if *self.expected.borrow() == message {
            let received = self.received.get() + 1;
            self.received.set(received);
            if received == members {
                self.completed.set(Some(Instant::now()));
                self.done.notify_one();
            }
            return;
        }
        match round_of(message) {
            Some(number) if number < self.current.get() => self.stale.set(self.stale.get() + 1),
            _ => self.fail(format!(
                "a member received {:?}, which no round published",
                String::from_utf8_lossy(message)
            )),
        }
    }

    /// Records the first failure and wakes the publisher to report it.
    fn fail(&self, failure: String) {
        self.failure.borrow_mut().get_or_insert(failure);
        self.done.notify_one();
    }
}

/// A full room on one server, ready to time publishes.
pub(crate) struct Room {
    members: usize,
    /// Every member's write half stays open until the room is dropped: dropping one would
    /// half-close the connection, which a server takes as the member leaving. The first one
    /// publishes.
    writers: Vec<OwnedWriteHalf>,
    tasks: Vec<JoinHandle<()>>,
    round: Rc<Round>,
    number: u64,
    times: Vec<Duration>,
}

impl Room {
    /// Fills a room of `members` at `ws://addr{path}` and publishes until one round reaches
    /// every member.
    pub(crate) async fn open(addr: SocketAddr, path: &str, members: usize) -> anyhow::Result<Self> {
        Self::open_split(&[addr], path, members).await
    }

    /// Fills a room of `members` at `ws://<addr>{path}`, split evenly over `addrs` (hosts
    /// sharing their topics), and publishes until one round reaches every member. The
    /// publisher is a member on the first address.
    pub(crate) async fn open_split(
        addrs: &[SocketAddr],
        path: &str,
        members: usize,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(members > 0, "a room needs members");
        anyhow::ensure!(!addrs.is_empty(), "a room needs a server");
        let mut sockets = Vec::with_capacity(members);
        for (index, addr) in addrs.iter().enumerate() {
            // The first address takes what does not divide evenly.
            let share = members / addrs.len() + usize::from(index == 0) * (members % addrs.len());
            let opened = ws::open_quiet(*addr, path, share, OPEN_CONCURRENCY)
                .await
                .with_context(|| format!("filling the room on {addr}"))?;
            sockets.extend(opened);
        }
        let round = Rc::new(Round::default());
        let mut writers = Vec::with_capacity(members);
        let mut tasks = Vec::with_capacity(members);
        for Socket { reader, writer } in sockets {
            writers.push(writer);
            tasks.push(tokio::task::spawn_local(member(
                reader,
                round.clone(),
                members,
            )));
        }
        let mut room = Self {
            members,
            writers,
            tasks,
            round,
            number: 0,
            times: Vec::new(),
        };
        for _ in 0..SYNC_ATTEMPTS {
            if room.publish(SYNC_TIMEOUT).await?.is_some() {
                return Ok(room);
            }
        }
        bail!(
            "no publish reached all {members} members in {SYNC_ATTEMPTS} tries (the last reached \
             {})",
            room.round.received.get()
        )
    }

    /// Times one publish; `measured` ones count toward the figures.
    pub(crate) async fn round(&mut self, measured: bool) -> anyhow::Result<()> {
        let time = self.timed_round().await?;
        if measured {
            self.times.push(time);
        }
        Ok(())
    }

    /// Times one publish, publish → last delivery.
    async fn timed_round(&mut self) -> anyhow::Result<Duration> {
        let Some(time) = self.publish(ROUND_TIMEOUT).await? else {
            bail!(
                "round {}: {} of {} members received it within {ROUND_TIMEOUT:?}",
                self.number,
                self.round.received.get(),
                self.members
            );
        };
        Ok(time)
    }

    /// What the measured rounds gave.
    pub(crate) fn figures(&self) -> FanoutFigures {
        FanoutFigures {
            members: self.members,
            rounds: self.times.clone(),
            stale: self.round.stale.get(),
        }
    }

    /// Publishes the next round and waits for its last delivery; `None` if it did not come
    /// within `limit`.
    async fn publish(&mut self, limit: Duration) -> anyhow::Result<Option<Duration>> {
        self.number += 1;
        let publisher = self.writers.first_mut().context("the room is empty")?;
        publish(publisher, &self.round, self.number, limit).await
    }
}

impl Drop for Room {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The role that holds one room in a client process of its own.
pub(crate) const ROOM_ROLE: &str = "fanout-room";

/// A room held by a client process of its own (role [`ROOM_ROLE`], pinned to the client core
/// like this one), for when this process may not open enough files to hold a room on every
/// server at once: each process has its own open-files limit. It answers one line per round
/// asked for, so the rounds of rooms on different servers can still alternate.
pub(crate) struct RemoteRoom {
    child: Child,
    input: ChildStdin,
    output: std::io::BufReader<ChildStdout>,
    members: usize,
    times: Vec<Duration>,
    stale: u64,
}

impl RemoteRoom {
    /// Starts the process and waits until its room of `members` at `ws://addr{path}` is full
    /// and synchronised.
    pub(crate) fn open(addr: SocketAddr, path: &str, members: usize) -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe().context("finding this binary")?)
            .args([crate::roles::ROLE_ARG, ROOM_ROLE])
            .args([addr.to_string(), path.to_owned(), members.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting a room's client process")?;
        let (Some(input), Some(output)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            bail!("the room's client process has no pipes");
        };
        let mut room = Self {
            child,
            input,
            output: std::io::BufReader::new(output),
            members,
            times: Vec::new(),
            stale: 0,
        };
        let ready = room.answer()?;
        anyhow::ensure!(ready == "ready", "the room's client process said {ready:?}");
        Ok(room)
    }

    /// Times one publish in the other process; `measured` ones count toward the figures.
    /// Blocks this thread meanwhile: nothing else runs here while a round is timed.
    pub(crate) fn round(&mut self, measured: bool) -> anyhow::Result<()> {
        writeln!(self.input, "round").context("asking for a round")?;
        self.input.flush().context("asking for a round")?;
        let answer = self.answer()?;
        let parsed = answer.strip_prefix("ok ").and_then(|rest| {
            let (nanos, stale) = rest.split_once(' ')?;
            Some((nanos.parse::<u64>().ok()?, stale.parse::<u64>().ok()?))
        });
        let Some((nanos, stale)) = parsed else {
            bail!("{answer}");
        };
        self.stale = stale;
        if measured {
            self.times.push(Duration::from_nanos(nanos));
        }
        Ok(())
    }

    /// What the measured rounds gave.
    pub(crate) fn figures(&self) -> FanoutFigures {
        FanoutFigures {
            members: self.members,
            rounds: self.times.clone(),
            stale: self.stale,
        }
    }

    /// The process's next line of answer.
    fn answer(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        let read = self
            .output
            .read_line(&mut line)
            .context("reading the room's client process")?;
        anyhow::ensure!(read > 0, "the room's client process ended");
        Ok(line.trim_end().to_owned())
    }
}

impl Drop for RemoteRoom {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The [`ROOM_ROLE`] process: `<addr> <path> <members>`. Fills the room, says `ready`, then
/// times a round for every `round` line it reads (`ok <nanoseconds> <stale deliveries>`, or
/// the failure), until its input ends.
pub(crate) fn serve_room(args: &[String]) -> anyhow::Result<()> {
    let [addr, path, members] = args else {
        bail!("{ROOM_ROLE} needs <addr> <path> <members>");
    };
    let addr: SocketAddr = addr.parse().context("the room's address")?;
    let members: usize = members.parse().context("the room's members")?;
    crate::affinity::pin_this_process(crate::affinity::CLIENT_CPU)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let mut stdout = std::io::stdout();
        let mut room = match Room::open(addr, path, members).await {
            Ok(room) => room,
            Err(err) => {
                writeln!(stdout, "failed: {err:#}")?;
                return Ok(());
            }
        };
        writeln!(stdout, "ready")?;
        stdout.flush()?;
        let mut line = String::new();
        // Blocking reads: the member tasks have nothing to do between rounds.
        while std::io::stdin().read_line(&mut line)? > 0 {
            match room.timed_round().await {
                Ok(time) => writeln!(stdout, "ok {} {}", time.as_nanos(), room.round.stale.get())?,
                Err(err) => writeln!(stdout, "failed: {err:#}")?,
            }
            stdout.flush()?;
            line.clear();
        }
        Ok(())
    })
}

/// Fills a room of `members` at `ws://addr{path}` and times `warmup` unmeasured and then
/// `rounds` measured publishes.
pub(crate) async fn fanout(
    addr: SocketAddr,
    path: &str,
    members: usize,
    warmup: usize,
    rounds: usize,
) -> anyhow::Result<FanoutFigures> {
    let mut room = Room::open(addr, path, members).await?;
    for i in 0..warmup + rounds {
        room.round(i >= warmup).await?;
    }
    Ok(room.figures())
}

/// Publishes round `number` and waits for its last delivery; `None` if it did not come within
/// `limit`.
async fn publish(
    publisher: &mut OwnedWriteHalf,
    round: &Round,
    number: u64,
    limit: Duration,
) -> anyhow::Result<Option<Duration>> {
    round.begin(number);
    let message = frame::text(&round_message(number));
    let sent = Instant::now();
    publisher.write_all(&message).await.context("publishing")?;
    let deadline = tokio::time::Instant::from_std(sent + limit);
    loop {
        if let Some(failure) = round.failure.borrow_mut().take() {
            bail!(failure);
        }
        if let Some(completed) = round.completed.get() {
            return Ok(Some(completed - sent));
        }
        // A permit left by a late, earlier round only makes this loop look again.
        if tokio::time::timeout_at(deadline, round.done.notified())
            .await
            .is_err()
        {
            return Ok(None);
        }
    }
}

/// One member: reads every message and reports it, until its connection fails (then the
/// failure is the round's) or the task is aborted at the end.
async fn member(mut reader: BufReader<OwnedReadHalf>, round: Rc<Round>, members: usize) {
    let mut message = Vec::with_capacity(MAX_MESSAGE);
    loop {
        if let Err(err) = frame::read_message(&mut reader, &mut message, MAX_MESSAGE).await {
            round.fail(format!("a member's connection: {err:#}"));
            return;
        }
        round.deliver(&message, members);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_messages_carry_their_number() {
        let message = round_message(42);
        assert_eq!(
            message,
            r#"{"type":"message","room":"bench","from":"server","text":"round 00000042"}"#
        );
        assert_eq!(round_of(message.as_bytes()), Some(42));
        assert_eq!(round_of(b"round 42"), None);
    }

    #[test]
    fn a_round_completes_at_its_last_delivery_and_ignores_late_ones() {
        let round = Round::default();
        round.begin(2);
        round.deliver(round_message(1).as_bytes(), 2);
        assert_eq!(round.stale.get(), 1);
        round.deliver(round_message(2).as_bytes(), 2);
        assert!(round.completed.get().is_none());
        round.deliver(round_message(2).as_bytes(), 2);
        assert!(round.completed.get().is_some());
        round.deliver(b"nonsense", 2);
        assert!(round.failure.borrow().is_some());
    }

    #[test]
    fn deliveries_per_second() {
        let figures = FanoutFigures {
            members: 1_000,
            rounds: [1, 2, 900].map(Duration::from_millis).to_vec(),
            stale: 0,
        };
        assert!((figures.deliveries_per_sec() - 500_000.0).abs() < 1.0);
        let merged = FanoutFigures::merge(&[figures.clone(), figures]);
        assert_eq!((merged.members, merged.rounds.len()), (1_000, 6));
    }
}
