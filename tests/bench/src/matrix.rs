//! Section 1: WebSocket echo through the managed `echo` plugin (the host runs the framing and
//! calls the guest per message) with an instance per connection (the default) and with shared
//! instances (`echo` again, as `echo-shared` with `instances = "shared"` in its sidecar), the raw
//! `echo-raw` plugin (the guest frames its own bytes), the native tokio-tungstenite server (the
//! physical limit) and Node's `ws`, over a matrix of connection counts and message sizes.
//! Targets for the managed echo on every row: ≥ 0.90 of native msg/s, p99 ≤ 1.2 × native, and
//! more msg/s than Node; both instance models are held to them.
//!
//! Each row's measured time is cut into one-second slices and the servers take turns slice by
//! slice (in a rotating order), each slice on fresh connections; a row's figures are the
//! medians of its slices. On a shared machine that keeps a burst of someone else's work from
//! landing on one server's whole measurement.

use std::time::Duration;

use anyhow::Context as _;

use crate::client::{SLICE, Summary, Window, ws};
use crate::options::{Options, Section};
use crate::plugins;
use crate::report::{self, Table};
use crate::roles::{self, ServerProcess, node};

/// One row: connections, message size, label.
pub(crate) const LOADS: [(usize, usize, &str); 4] = [
    (100, 20, "100 conns × 20 B"),
    (10, 1024, "10 conns × 1 KiB"),
    (10, 16 * 1024, "10 conns × 16 KiB"),
    (200, 16 * 1024, "200 conns × 16 KiB"),
];
/// The managed plugin's msg/s as a share of native's, at least.
const RATE_TARGET: f64 = 0.90;
/// The managed plugin's p99 as a multiple of native's, at most.
const P99_TARGET: f64 = 1.2;
/// Pause between loads, so the previous load's sessions have closed on the server.
pub(crate) const SETTLE: Duration = Duration::from_millis(300);
/// The plugins the host serves: the managed echo at `/echo`, the raw one at `/echo-raw`.
const PLUGINS: &[&str] = &["echo", "echo-raw"];
/// The managed echo once more, with shared instances, at `/echo-shared`.
const SHARED_ECHO: &str = "echo-shared";
/// Its sidecar.
const SHARED_SIDECAR: &str = "instances = \"shared\"\n";

/// The servers a row compares, in the order they take turns.
#[derive(Debug, Clone, Copy)]
enum Contender {
    Managed,
    Shared,
    Raw,
    Native,
    Node,
}

const CONTENDERS: [Contender; 5] = [
    Contender::Managed,
    Contender::Shared,
    Contender::Raw,
    Contender::Native,
    Contender::Node,
];

/// One row's figures; Node's holds the reason instead when it was skipped or failed.
struct Row {
    label: &'static str,
    managed: Summary,
    shared: Summary,
    raw: Summary,
    native: Summary,
    node: Result<Summary, String>,
}

/// Runs the matrix and prints its tables.
pub(crate) async fn run(options: &Options) -> anyhow::Result<()> {
    report::heading(Section::Matrix.title());
    let folder = plugins::folder_with(PLUGINS)?;
    plugins::install(folder.path(), "echo", SHARED_ECHO)?;
    let sidecar = folder.path().join(format!("{SHARED_ECHO}.toml"));
    std::fs::write(&sidecar, SHARED_SIDECAR)
        .with_context(|| format!("writing {}", sidecar.display()))?;
    let mut host = roles::start_host(folder.path())?;
    let mut native = roles::start_native_echo()?;
    let node = node::start(node::Script::Echo);
    let slices = options.measure.as_secs().max(1);
    let mut rows = Vec::new();
    for (connections, size, label) in LOADS {
        let mut managed = Vec::new();
        let mut shared = Vec::new();
        let mut raw = Vec::new();
        let mut native_slices = Vec::new();
        let mut node_slices = Vec::new();
        let mut node_failure = None;
        for slice in 0..slices {
            let window = Window::slice(slice, options.warmup());
            for turn in 0..CONTENDERS.len() {
                let index = (slice as usize + turn) % CONTENDERS.len();
                match CONTENDERS.get(index).copied().unwrap_or(Contender::Managed) {
                    Contender::Managed => {
                        let load = ws::echo_load(host.addr(), "/echo", connections, size, window);
                        managed.push(checked(load.await, &mut host, label)?);
                    }
                    Contender::Shared => {
                        let path = format!("/{SHARED_ECHO}");
                        let load = ws::echo_load(host.addr(), &path, connections, size, window);
                        shared.push(checked(load.await, &mut host, label)?);
                    }
                    Contender::Raw => {
                        let load =
                            ws::echo_load(host.addr(), "/echo-raw", connections, size, window);
                        raw.push(checked(load.await, &mut host, label)?);
                    }
                    Contender::Native => {
                        let load = ws::echo_load(native.addr(), "/", connections, size, window);
                        native_slices.push(checked(load.await, &mut native, label)?);
                    }
                    Contender::Node => match (&node, &node_failure) {
                        (Ok(server), None) => {
                            let load = ws::echo_load(server.addr(), "/", connections, size, window);
                            match load.await {
                                Ok(summary) => node_slices.push(summary),
                                Err(err) => node_failure = Some(format!("failed: {err:#}")),
                            }
                        }
                        _ => continue,
                    },
                }
                tokio::time::sleep(SETTLE).await;
            }
        }
        let median =
            |slices: &[Summary]| Summary::median_of(slices).context("no slice was measured");
        let node = match (&node, node_failure) {
            (Err(reason), _) => Err(format!("skipped: {reason}")),
            (Ok(_), Some(failure)) => Err(failure),
            (Ok(_), None) => median(&node_slices).map_err(|err| format!("failed: {err:#}")),
        };
        rows.push(Row {
            label,
            managed: median(&managed)?,
            shared: median(&shared)?,
            raw: median(&raw)?,
            native: median(&native_slices)?,
            node,
        });
    }
    print(&rows, slices);
    Ok(())
}

/// A load's result, failing with the server's fate if it died meanwhile.
pub(crate) fn checked(
    result: anyhow::Result<Summary>,
    server: &mut ServerProcess,
    label: &str,
) -> anyhow::Result<Summary> {
    server.check_alive()?;
    result.map_err(|err| err.context(format!("load {label}")))
}

fn print(rows: &[Row], slices: u64) {
    let node_cell = |node: &Result<Summary, String>, pick: fn(&Summary) -> String| match node {
        Ok(summary) => pick(summary),
        Err(_) => "–".to_owned(),
    };
    let mut throughput = Table::new(
        format!(
            "Throughput, msg/s (one message in flight per connection; median of {slices} \
             slices of {} s, the servers taking turns)",
            SLICE.as_secs()
        ),
        &[
            "load",
            "managed echo",
            "shared inst.",
            "raw echo",
            "native",
            "Node ws",
            "managed/native",
            "",
            "shared/native",
            "",
            "target",
            "raw/native",
            "managed/Node",
            "",
            "shared/Node",
            "",
            "target",
        ],
    );
    let mut latency = Table::new(
        "Round trip, p50 / p99 (medians of the slices' figures)",
        &[
            "load",
            "managed p50",
            "managed p99",
            "shared p50",
            "shared p99",
            "raw p50",
            "raw p99",
            "native p50",
            "native p99",
            "Node p50",
            "Node p99",
            "p99 managed/native",
            "",
            "p99 shared/native",
            "",
            "target",
        ],
    );
    for row in rows {
        let of_native = |summary: &Summary| summary.per_sec / row.native.per_sec;
        let rate_cells = |summary: &Summary| {
            let ratio = of_native(summary);
            [report::ratio(ratio), report::verdict(ratio >= RATE_TARGET)]
        };
        let node_cells = |summary: &Summary| match &row.node {
            Ok(node) => {
                let ratio = summary.per_sec / node.per_sec;
                [report::ratio(ratio), report::verdict(ratio > 1.0)]
            }
            Err(_) => ["–".to_owned(), String::new()],
        };
        let mut cells = vec![
            row.label.to_owned(),
            report::rate(row.managed.per_sec),
            report::rate(row.shared.per_sec),
            report::rate(row.raw.per_sec),
            report::rate(row.native.per_sec),
            node_cell(&row.node, |s| report::rate(s.per_sec)),
        ];
        cells.extend(rate_cells(&row.managed));
        cells.extend(rate_cells(&row.shared));
        cells.push(format!("≥ {RATE_TARGET:.2}"));
        cells.push(report::ratio(of_native(&row.raw)));
        cells.extend(node_cells(&row.managed));
        cells.extend(node_cells(&row.shared));
        cells.push("> 1".to_owned());
        throughput.row(cells);

        let p99_cells = |summary: &Summary| {
            let ratio = summary.p99.as_secs_f64() / row.native.p99.as_secs_f64();
            [report::ratio(ratio), report::verdict(ratio <= P99_TARGET)]
        };
        let mut cells = vec![row.label.to_owned()];
        for summary in [&row.managed, &row.shared, &row.raw, &row.native] {
            cells.push(report::micros(summary.p50));
            cells.push(report::micros(summary.p99));
        }
        cells.push(node_cell(&row.node, |s| report::micros(s.p50)));
        cells.push(node_cell(&row.node, |s| report::micros(s.p99)));
        cells.extend(p99_cells(&row.managed));
        cells.extend(p99_cells(&row.shared));
        cells.push(format!("≤ {P99_TARGET:.1}"));
        latency.row(cells);
    }
    throughput.note(
        "managed echo: /echo, the host frames and calls the guest per message, on an instance per \
         connection (the default)",
    );
    throughput.note(
        "shared inst.: the same plugin with instances = \"shared\": each message borrows one of a \
         few instances all connections share",
    );
    throughput
        .note("raw echo: /echo-raw, the guest frames its own bytes (one instance per session)");
    // Say once why Node is missing (every row fails the same way when it is skipped).
    let mut reasons: Vec<&str> = rows
        .iter()
        .filter_map(|row| row.node.as_ref().err())
        .map(String::as_str)
        .collect();
    reasons.dedup();
    for reason in reasons {
        throughput.note(format!("Node ws {reason}"));
    }
    throughput.print();
    latency.print();
}
