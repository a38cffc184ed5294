//! Section 9: scale-out. Two hosts share their topics through a real `redis-server`
//! (`--pubsub redis://…`), all three on the server core, the load client on the other:
//!
//! - **Cross-host latency**: a member on host A publishes numbered messages at 1,000 per second
//!   (the `fanout` plugin publishes each to its room); a member on host B times each from just
//!   before it was written until it is read, and counts the lost ones. Targets: p99 ≤ 2 ms,
//!   none lost (Redis stays up throughout).
//! - **Fan-out split over two hosts**: the fan-out section's room, its members split evenly
//!   over A and B (the publisher on A), against the same room on one host with the default
//!   in-process topics, measured in the same run with their blocks of rounds alternating.
//!   Target at 10,000 members: ≥ 0.8 of the single host's deliveries/s.
//!
//! Redis comes from Debian's `redis-server` (`bash tests/services/setup.sh` installs it); the
//! section says "skipped" when it is missing.

use std::time::Duration;

use anyhow::Context as _;
use switchyard_tests::redis::{REDIS_SERVER, RedisServer};

use crate::affinity;
use crate::client::crosshost::{self, LatencyFigures};
use crate::client::fanout::{FanoutFigures, Room};
use crate::options::{CROSSHOST_RATE, Options, Section};
use crate::plugins;
use crate::report::{self, Table};
use crate::roles::{HostSetup, ServerProcess};

/// The hosts' plugin (rooms, no join notices), as in the fan-out section.
const PLUGIN: &str = "fanout";
/// Unmeasured publishes before each block's measured ones.
const WARMUP_ROUNDS: usize = 5;
/// Blocks of rounds the two set-ups take turns with (a room is open on one at a time).
const BLOCKS: usize = 2;
/// Quiet time after a room is emptied, so the hosts have closed its members.
const SETTLE: Duration = Duration::from_secs(2);
/// Cross-host p99 at most, at [`CROSSHOST_RATE`] messages per second.
const P99_TARGET: Duration = Duration::from_millis(2);
/// Split fan-out deliveries/s as a share of one host's, at least, at [`TARGET_MEMBERS`].
const RATE_TARGET: f64 = 0.8;
/// The room size the fan-out target is set at.
const TARGET_MEMBERS: usize = 10_000;

/// Measures cross-host latency and split fan-out and prints both tables.
pub(crate) async fn run(options: &Options) -> anyhow::Result<()> {
    report::heading(Section::Crosshost.title());
    let Some(redis) = RedisServer::start() else {
        println!(
            "skipped: {REDIS_SERVER} is not installed (`bash tests/services/setup.sh` installs it)"
        );
        return Ok(());
    };
    if let Some(pid) = redis.pid() {
        affinity::pin_other_process(pid, affinity::SERVER_CPU)?;
    }
    let members = options.crosshost_members();
    let folder = plugins::folder_with(&[PLUGIN])?;
    let start = |pubsub: Option<&str>| {
        let setup = HostSetup::new(folder.path()).managed(members);
        match pubsub {
            Some(url) => setup.pubsub(url),
            None => setup,
        }
        .start()
    };
    let mut a = start(Some(&redis.url())).context("host A")?;
    let mut b = start(Some(&redis.url())).context("host B")?;
    let latency = crosshost::latency(
        a.addr(),
        b.addr(),
        &format!("/{PLUGIN}/latency"),
        options.crosshost_messages(),
        CROSSHOST_RATE,
    )
    .await
    .context("cross-host latency")?;
    a.check_alive()?;
    b.check_alive()?;
    print_latency(&latency);

    let mut single = start(None).context("the single host")?;
    let rounds = options.crosshost_rounds().div_ceil(BLOCKS).max(1);
    let mut one_host = Vec::new();
    let mut split = Vec::new();
    for block in 0..BLOCKS {
        for turn in 0..2 {
            if (block + turn) % 2 == 0 {
                let path = format!("/{PLUGIN}/single-{block}");
                one_host.push(
                    measure(&[single.addr()], &path, members, rounds, &mut [&mut single])
                        .await
                        .context("the room on one host")?,
                );
            } else {
                let path = format!("/{PLUGIN}/split-{block}");
                split.push(
                    measure(
                        &[a.addr(), b.addr()],
                        &path,
                        members,
                        rounds,
                        &mut [&mut a, &mut b],
                    )
                    .await
                    .context("the room split over two hosts")?,
                );
            }
        }
    }
    print_fanout(
        members,
        &FanoutFigures::merge(&one_host),
        &FanoutFigures::merge(&split),
    );
    drop(redis);
    Ok(())
}

/// One room over `addrs`, its warm-up and `rounds` measured publishes, then a settling pause.
async fn measure(
    addrs: &[std::net::SocketAddr],
    path: &str,
    members: usize,
    rounds: usize,
    servers: &mut [&mut ServerProcess],
) -> anyhow::Result<FanoutFigures> {
    let result = async {
        let mut room = Room::open_split(addrs, path, members).await?;
        for i in 0..WARMUP_ROUNDS + rounds {
            room.round(i >= WARMUP_ROUNDS).await?;
        }
        anyhow::Ok(room.figures())
    }
    .await;
    for server in servers.iter_mut() {
        server.check_alive()?;
    }
    tokio::time::sleep(SETTLE).await;
    result
}

fn print_latency(figures: &LatencyFigures) {
    let mut table = Table::new(
        format!(
            "Publish on host A → receive on host B through Redis, {} messages/s",
            report::rate(CROSSHOST_RATE as f64)
        ),
        &[
            "sent",
            "received",
            "lost",
            "twice",
            "out of order",
            "p50",
            "p99",
            "target",
            "",
        ],
    );
    let p99 = report::percentile(&figures.latencies, 0.99);
    table.row(vec![
        figures.sent.to_string(),
        figures.latencies.len().to_string(),
        figures.lost.to_string(),
        figures.duplicates.to_string(),
        figures.reordered.to_string(),
        report::micros(report::percentile(&figures.latencies, 0.5)),
        report::micros(p99),
        format!("p99 ≤ {}", report::micros(P99_TARGET)),
        report::verdict(p99 <= P99_TARGET && !figures.latencies.is_empty()),
    ]);
    table.row(vec![
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        "lost = 0".to_owned(),
        report::verdict(figures.lost == 0),
    ]);
    table.row(vec![
        "same host".to_owned(),
        figures.same_host.len().to_string(),
        String::new(),
        String::new(),
        String::new(),
        report::micros(report::percentile(&figures.same_host, 0.5)),
        report::micros(report::percentile(&figures.same_host, 0.99)),
    ]);
    table.row(vec![
        "B − A".to_owned(),
        figures.added.len().to_string(),
        String::new(),
        String::new(),
        String::new(),
        report::micros(report::percentile(&figures.added, 0.5)),
        report::micros(report::percentile(&figures.added, 0.99)),
    ]);
    table.note(
        "latency: from just before the client writes a message to host A until it reads it \
         from host B (both hosts and Redis on the server core, the client on the other); \
         \"same host\": the publisher's own copy, read back from A, in the same run; \
         \"B − A\": per message, how much later B read it than A (a stall of the machine \
         delays both alike, so this is what the way through Redis adds)",
    );
    table.print();
}

fn print_fanout(members: usize, one_host: &FanoutFigures, split: &FanoutFigures) {
    let mut table = Table::new(
        "One publish to every member of a room: on one host, and split over two through Redis",
        &[
            "members",
            "set-up",
            "rounds",
            "deliveries/s",
            "p50",
            "p99",
            "split/one",
            "target",
            "",
        ],
    );
    let ratio = split.deliveries_per_sec() / one_host.deliveries_per_sec();
    let at_target = members >= TARGET_MEMBERS;
    let row = |name: &str, figures: &FanoutFigures| {
        vec![
            report::rate(members as f64),
            name.to_owned(),
            figures.rounds.len().to_string(),
            report::rate(figures.deliveries_per_sec()),
            report::micros(report::percentile(&figures.rounds, 0.5)),
            report::micros(report::percentile(&figures.rounds, 0.99)),
        ]
    };
    table.row(row("one host (local topics)", one_host));
    let mut cells = row("two hosts + Redis", split);
    cells.extend(report::ratio_at_least(ratio, RATE_TARGET, at_target));
    table.row(cells);
    table.note(format!(
        "split: half the members on each host, the publisher on A; the set-ups took turns in \
         {BLOCKS} blocks of rounds; the target applies at {} members",
        report::rate(TARGET_MEMBERS as f64)
    ));
    table.print();
}
