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

use crate::client::fanout::{self, FanoutFigures};
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

/// One room size's figures; Node's holds the reason instead when it was skipped or failed.
struct Row {
    members: usize,
    host: FanoutFigures,
    native: FanoutFigures,
    node: Result<FanoutFigures, String>,
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
    let node = node::start(node::Script::Broadcast);
    let mut rows = Vec::new();
    for members in rooms {
        let rounds = options.fanout_rounds(members);
        let path = format!("/{PLUGIN}/room-{members}");
        let host_figures = measure(&mut host, &path, members, rounds).await?;
        let native_figures = measure(&mut native, &path, members, rounds).await?;
        let node = match &node {
            Ok(server) => {
                let result =
                    fanout::fanout(server.addr(), &path, members, WARMUP_ROUNDS, rounds).await;
                tokio::time::sleep(SETTLE).await;
                result.map_err(|err| format!("failed: {err:#}"))
            }
            Err(reason) => Err(format!("skipped: {reason}")),
        };
        rows.push(Row {
            members,
            host: host_figures,
            native: native_figures,
            node,
        });
    }
    print(&rows);
    Ok(())
}

/// One room on `server`, failing with the server's fate if it died meanwhile.
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
        host.extend([
            report::ratio(ratio),
            if at_target {
                format!("≥ {RATE_TARGET:.1}")
            } else {
                format!("(≥ {RATE_TARGET:.1})")
            },
            if at_target {
                report::verdict(ratio >= RATE_TARGET)
            } else {
                String::new()
            },
            node_ratio,
            node_target,
            node_verdict,
        ]);
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
    }
    table.note(format!(
        "targets apply at {} members; deliveries/s = members × rounds / the rounds' total time",
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
