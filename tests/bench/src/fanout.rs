//! Section 4: fan-out. One room of 1,000 and one of 10,000 members; one member publishes a
//! message, and every member (the publisher included) must receive it. Timed from the publish
//! to the last delivery, round after round, on three servers in the same run: the host, whose
//! `fanout` plugin publishes each member's message to the room's topic (the host frames it once
//! and writes it to every subscriber, no guest code per recipient); the native tokio-tungstenite
//! broadcast server (frame once, write to every socket, the physical limit); and Node's `ws`
//! doing the same. Every server sends the same bytes: one unmasked text frame of the published
//! JSON. Targets at 10,000 members: the host's deliveries/s ≥ 0.8 of native's, and ahead of
//! Node's.
//!
//! Why a plugin of its own rather than `chat`: a chat room tells every member of every join, so
//! filling a room of 10,000 costs 50 million join notices that the client would have to drain
//! first; and a member's message, not `POST /chat/<room>`, triggers the publish, so all three
//! servers are driven the same way (an HTTP request per publish would add the host's request
//! path, which the native servers do not have, to every round).

use std::time::Duration;

use anyhow::Context as _;

use crate::affinity;
use crate::client::fanout::{self, FanoutFigures, RemoteRoom, Room};
use crate::options::{Options, Section};
use crate::plugins;
use crate::report::{self, Table};
use crate::roles::{self, HostSetup, ServerProcess, node};

/// The host's plugin, and its route.
const PLUGIN: &str = "fanout";
/// Unmeasured publishes before the measured ones.
const WARMUP_ROUNDS: usize = 5;
/// Quiet time after a room is emptied, so the server has closed its members before the next
/// server (on the same core) is measured.
const SETTLE: Duration = Duration::from_secs(2);
/// The host's deliveries/s as a share of native's, at least, at [`TARGET_MEMBERS`].
const RATE_TARGET: f64 = 0.8;
/// The room size the targets are set at.
const TARGET_MEMBERS: usize = 10_000;
/// Blocks of rounds the servers take turns with when their rooms cannot all be open at once.
const BLOCKS: usize = 4;
/// Open files the client needs beyond one per member (runtime, pipes, stdio).
const FD_MARGIN: u64 = 256;

/// One room size's figures; Node's holds the reason instead when it was skipped or failed.
struct Row {
    members: usize,
    host: FanoutFigures,
    native: FanoutFigures,
    node: Result<FanoutFigures, String>,
    /// How the three servers' rounds were arranged.
    schedule: Schedule,
}

/// How the servers' rounds were arranged.
#[derive(Clone, Copy)]
enum Schedule {
    /// Alternating, every room held by this process.
    Interleaved,
    /// Alternating, every room held by a client process of its own.
    InterleavedProcesses,
    /// In blocks, one server's room after another's.
    Blocks,
}

/// Measures every room size on the three servers and prints the table.
pub(crate) async fn run(options: &Options) -> anyhow::Result<()> {
    report::heading(Section::Fanout.title());
    let rooms = options.fanout_rooms();
    let largest = rooms.iter().copied().max().unwrap_or(0);
    let folder = plugins::folder_with(&[PLUGIN])?;
    // Members hibernate soon after they join (only the publisher's events need an instance),
    // so a room of 10,000 does not need 10,000 live instances.
    let mut host = HostSetup::new(folder.path()).managed(largest).start()?;
    let mut native = roles::start_native_broadcast()?;
    let mut node = node::start(node::Script::Broadcast);
    let mut rows = Vec::new();
    for members in rooms {
        let rounds = options.fanout_rounds(members);
        let path = format!("/{PLUGIN}/room-{members}");
        let servers = if node.is_ok() { 3 } else { 2 };
        let files = (servers * members) as u64 + FD_MARGIN;
        let row = if affinity::fd_limit() >= files {
            interleaved(&mut host, &mut native, &mut node, &path, members, rounds).await?
        } else if affinity::fd_limit() >= members as u64 + FD_MARGIN {
            interleaved_processes(&mut host, &mut native, &mut node, &path, members, rounds)?
        } else {
            one_after_another(&mut host, &mut native, &mut node, &path, members, rounds).await?
        };
        rows.push(row);
    }
    print(&rows);
    Ok(())
}

/// Keeps a room open on every server and alternates their rounds (in a rotating order), so a
/// burst of other work on this shared machine falls on all of them alike.
async fn interleaved(
    host: &mut ServerProcess,
    native: &mut ServerProcess,
    node: &mut Result<ServerProcess, String>,
    path: &str,
    members: usize,
    rounds: usize,
) -> anyhow::Result<Row> {
    let mut host_room = Room::open(host.addr(), path, members)
        .await
        .context("the host's room")?;
    let mut native_room = Room::open(native.addr(), path, members)
        .await
        .context("the native server's room")?;
    let mut node_room = match node {
        Ok(server) => Room::open(server.addr(), path, members)
            .await
            .map_err(|err| format!("failed: {err:#}")),
        Err(reason) => Err(format!("skipped: {reason}")),
    };
    for i in 0..WARMUP_ROUNDS + rounds {
        let measured = i >= WARMUP_ROUNDS;
        for turn in 0..3 {
            match (i + turn) % 3 {
                0 => checked(host_room.round(measured).await, host).context("the host's room")?,
                1 => checked(native_room.round(measured).await, native)
                    .context("the native server's room")?,
                _ => {
                    let failed = match &mut node_room {
                        Ok(room) => room.round(measured).await.err(),
                        Err(_) => None,
                    };
                    if let Some(err) = failed {
                        node_room = Err(format!("failed: {err:#}"));
                    }
                }
            }
        }
    }
    let row = Row {
        members,
        host: host_room.figures(),
        native: native_room.figures(),
        node: node_room.as_ref().map(Room::figures).map_err(Clone::clone),
        schedule: Schedule::Interleaved,
    };
    drop((host_room, native_room, node_room));
    tokio::time::sleep(SETTLE).await;
    Ok(row)
}

/// [`interleaved`], with each room held by a client process of its own (all pinned to the
/// client core), when this process may not open enough files for all three rooms but each
/// process may for one.
fn interleaved_processes(
    host: &mut ServerProcess,
    native: &mut ServerProcess,
    node: &mut Result<ServerProcess, String>,
    path: &str,
    members: usize,
    rounds: usize,
) -> anyhow::Result<Row> {
    let mut host_room = RemoteRoom::open(host.addr(), path, members).context("the host's room")?;
    let mut native_room =
        RemoteRoom::open(native.addr(), path, members).context("the native server's room")?;
    let mut node_room = match node {
        Ok(server) => {
            RemoteRoom::open(server.addr(), path, members).map_err(|err| format!("failed: {err:#}"))
        }
        Err(reason) => Err(format!("skipped: {reason}")),
    };
    for i in 0..WARMUP_ROUNDS + rounds {
        let measured = i >= WARMUP_ROUNDS;
        for turn in 0..3 {
            match (i + turn) % 3 {
                0 => checked(host_room.round(measured), host).context("the host's room")?,
                1 => checked(native_room.round(measured), native)
                    .context("the native server's room")?,
                _ => {
                    let failed = match &mut node_room {
                        Ok(room) => room.round(measured).err(),
                        Err(_) => None,
                    };
                    if let Some(err) = failed {
                        node_room = Err(format!("failed: {err:#}"));
                    }
                }
            }
        }
    }
    let row = Row {
        members,
        host: host_room.figures(),
        native: native_room.figures(),
        node: node_room
            .as_ref()
            .map(RemoteRoom::figures)
            .map_err(Clone::clone),
        schedule: Schedule::InterleavedProcesses,
    };
    drop((host_room, native_room, node_room));
    std::thread::sleep(SETTLE);
    Ok(row)
}

/// Measures one server's room after another's, when the open-files limit cannot hold a room
/// on every server at once: the rounds are split into blocks, and the servers take turns block
/// by block (a rotating order), each block in a room filled afresh.
async fn one_after_another(
    host: &mut ServerProcess,
    native: &mut ServerProcess,
    node: &mut Result<ServerProcess, String>,
    path: &str,
    members: usize,
    rounds: usize,
) -> anyhow::Result<Row> {
    let blocks = BLOCKS.min(rounds).max(1);
    let per_block = rounds.div_ceil(blocks);
    let mut host_figures = Vec::new();
    let mut native_figures = Vec::new();
    let mut node_figures = match node {
        Ok(_) => Ok(Vec::new()),
        Err(reason) => Err(format!("skipped: {reason}")),
    };
    for block in 0..blocks {
        for turn in 0..3 {
            match (block + turn) % 3 {
                0 => host_figures.push(
                    measure(host, path, members, per_block)
                        .await
                        .context("the host's room")?,
                ),
                1 => native_figures.push(
                    measure(native, path, members, per_block)
                        .await
                        .context("the native server's room")?,
                ),
                _ => {
                    if let (Ok(server), Ok(figures)) = (&mut *node, &mut node_figures) {
                        match measure(server, path, members, per_block).await {
                            Ok(block) => figures.push(block),
                            Err(err) => node_figures = Err(format!("failed: {err:#}")),
                        }
                    }
                }
            }
        }
    }
    Ok(Row {
        members,
        host: FanoutFigures::merge(&host_figures),
        native: FanoutFigures::merge(&native_figures),
        node: node_figures.map(|blocks| FanoutFigures::merge(&blocks)),
        schedule: Schedule::Blocks,
    })
}

/// A round's outcome, failing with the server's fate if it died meanwhile.
fn checked(result: anyhow::Result<()>, server: &mut ServerProcess) -> anyhow::Result<()> {
    server.check_alive()?;
    result
}

/// One room on `server`, all its rounds in one go.
async fn measure(
    server: &mut ServerProcess,
    path: &str,
    members: usize,
    rounds: usize,
) -> anyhow::Result<FanoutFigures> {
    let result = fanout::fanout(server.addr(), path, members, WARMUP_ROUNDS, rounds).await;
    server.check_alive()?;
    tokio::time::sleep(SETTLE).await;
    result.map_err(|err| err.context(format!("a room of {members}")))
}

fn print(rows: &[Row]) {
    let mut table = Table::new(
        "One publish to every member of a room (publish → last delivery, the publisher included)",
        &[
            "members",
            "server",
            "rounds",
            "deliveries/s",
            "p50",
            "p99",
            "host/native",
            "target",
            "",
            "host/Node",
            "target",
            "",
        ],
    );
    let mut reasons = Vec::new();
    for row in rows {
        let members = report::rate(row.members as f64);
        let host_rate = row.host.deliveries_per_sec();
        let ratio = host_rate / row.native.deliveries_per_sec();
        let at_target = row.members >= TARGET_MEMBERS;
        let (node_ratio, node_target, node_verdict) = match &row.node {
            Ok(node) => {
                let ratio = host_rate / node.deliveries_per_sec();
                (
                    report::ratio(ratio),
                    if at_target { "> 1" } else { "(> 1)" }.to_owned(),
                    if at_target {
                        report::verdict(ratio > 1.0)
                    } else {
                        String::new()
                    },
                )
            }
            Err(_) => ("–".to_owned(), String::new(), String::new()),
        };
        let mut host = figures(&members, "host (fanout plugin)", &row.host);
        host.extend(report::ratio_at_least(ratio, RATE_TARGET, at_target));
        host.extend([node_ratio, node_target, node_verdict]);
        table.row(host);
        table.row(figures(&members, "native", &row.native));
        match &row.node {
            Ok(node) => table.row(figures(&members, "Node ws", node)),
            Err(reason) => {
                table.row(vec![members.clone(), "Node ws".into(), "–".into()]);
                reasons.push(reason.clone());
            }
        }
        let stale = row.host.stale + row.native.stale;
        if stale > 0 {
            table.note(format!(
                "{members} members: {stale} late deliveries of a synchronising round ignored"
            ));
        }
        table.note(match row.schedule {
            Schedule::Interleaved => {
                format!("{members} members: the servers' rounds alternated, in a rotating order")
            }
            Schedule::InterleavedProcesses => format!(
                "{members} members: the servers' rounds alternated, in a rotating order; each \
                 room held by a client process of its own (the open-files limit cannot hold \
                 all three rooms in one)"
            ),
            Schedule::Blocks => format!(
                "{members} members: the servers took turns in {BLOCKS} blocks of rounds, each in \
                 a room filled afresh (the open-files limit cannot hold a room on each at once)"
            ),
        });
    }
    table.note(format!(
        "targets apply at {} members; deliveries/s = members / the median round (publish → \
         last delivery)",
        report::rate(TARGET_MEMBERS as f64)
    ));
    reasons.dedup();
    for reason in reasons {
        table.note(format!("Node ws {reason}"));
    }
    table.print();
}

/// A server's cells: members, name, rounds, deliveries/s, p50, p99.
fn figures(members: &str, server: &str, figures: &FanoutFigures) -> Vec<String> {
    vec![
        members.to_owned(),
        server.to_owned(),
        figures.rounds.len().to_string(),
        report::rate(figures.deliveries_per_sec()),
        report::micros(report::percentile(&figures.rounds, 0.5)),
        report::micros(report::percentile(&figures.rounds, 0.99)),
    ]
}
