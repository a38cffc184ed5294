//! Section 1: WebSocket echo through the managed `echo` plugin (the host runs the framing and
//! calls the guest per message), the raw `echo-raw` plugin (the guest frames its own bytes), the
//! native tokio-tungstenite server (the physical limit) and Node's `ws`, over a matrix of
//! connection counts and message sizes. Targets for the managed echo on every row: ≥ 0.90 of
//! native msg/s, p99 ≤ 1.2 × native, and more msg/s than Node.

use std::time::Duration;

use crate::client::{Summary, Window, ws};
use crate::options::{Options, Section};
use crate::plugins;
use crate::report::{self, Table};
use crate::roles::{self, ServerProcess, node};

/// One row: connections, message size, label.
const LOADS: [(usize, usize, &str); 4] = [
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
const SETTLE: Duration = Duration::from_millis(300);
/// The plugins the host serves: the managed echo at `/echo`, the raw one at `/echo-raw`.
const PLUGINS: &[&str] = &["echo", "echo-raw"];

/// One row's figures; Node's holds the reason instead when it was skipped or failed.
struct Row {
    label: &'static str,
    managed: Summary,
    raw: Summary,
    native: Summary,
    node: Result<Summary, String>,
}

/// Runs the matrix and prints its tables.
pub(crate) async fn run(options: &Options) -> anyhow::Result<()> {
    report::heading(Section::Matrix.title());
    let folder = plugins::folder_with(PLUGINS)?;
    let mut host = roles::start_host(folder.path())?;
    let mut native = roles::start_native_echo()?;
    let node = node::start(node::Script::Echo);
    let window = Window {
        warmup: options.warmup(),
        measure: options.measure,
    };
    let mut rows = Vec::new();
    for (connections, size, label) in LOADS {
        let managed = ws::echo_load(host.addr(), "/echo", connections, size, window).await;
        let managed = checked(managed, &mut host, label)?;
        tokio::time::sleep(SETTLE).await;
        let raw = ws::echo_load(host.addr(), "/echo-raw", connections, size, window).await;
        let raw = checked(raw, &mut host, label)?;
        tokio::time::sleep(SETTLE).await;
        let native_summary = ws::echo_load(native.addr(), "/", connections, size, window).await;
        let native_summary = checked(native_summary, &mut native, label)?;
        tokio::time::sleep(SETTLE).await;
        let node = match &node {
            Ok(server) => {
                let result = ws::echo_load(server.addr(), "/", connections, size, window).await;
                tokio::time::sleep(SETTLE).await;
                result.map_err(|err| format!("failed: {err:#}"))
            }
            Err(reason) => Err(format!("skipped: {reason}")),
        };
        rows.push(Row {
            label,
            managed,
            raw,
            native: native_summary,
            node,
        });
    }
    print(&rows, window);
    Ok(())
}

/// A load's result, failing with the server's fate if it died meanwhile.
fn checked(
    result: anyhow::Result<Summary>,
    server: &mut ServerProcess,
    label: &str,
) -> anyhow::Result<Summary> {
    server.check_alive()?;
    result.map_err(|err| err.context(format!("load {label}")))
}

fn print(rows: &[Row], window: Window) {
    let node_cell = |node: &Result<Summary, String>, pick: fn(&Summary) -> String| match node {
        Ok(summary) => pick(summary),
        Err(_) => "–".to_owned(),
    };
    let mut throughput = Table::new(
        format!(
            "Throughput, msg/s (one message in flight per connection, {} s window)",
            window.measure.as_secs()
        ),
        &[
            "load",
            "managed echo",
            "raw echo",
            "native",
            "Node ws",
            "managed/native",
            "target",
            "",
            "raw/native",
            "managed/Node",
            "target",
            "",
        ],
    );
    let mut latency = Table::new(
        "Round trip, p50 / p99",
        &[
            "load",
            "managed p50",
            "managed p99",
            "raw p50",
            "raw p99",
            "native p50",
            "native p99",
            "Node p50",
            "Node p99",
            "p99 managed/native",
            "target",
            "",
        ],
    );
    for row in rows {
        let rate_ratio = row.managed.per_sec / row.native.per_sec;
        let (node_ratio, node_verdict) = match &row.node {
            Ok(node) => {
                let ratio = row.managed.per_sec / node.per_sec;
                (report::ratio(ratio), report::verdict(ratio > 1.0))
            }
            Err(_) => ("–".to_owned(), String::new()),
        };
        throughput.row(vec![
            row.label.to_owned(),
            report::rate(row.managed.per_sec),
            report::rate(row.raw.per_sec),
            report::rate(row.native.per_sec),
            node_cell(&row.node, |s| report::rate(s.per_sec)),
            report::ratio(rate_ratio),
            format!("≥ {RATE_TARGET:.2}"),
            report::verdict(rate_ratio >= RATE_TARGET),
            report::ratio(row.raw.per_sec / row.native.per_sec),
            node_ratio,
            "> 1".to_owned(),
            node_verdict,
        ]);
        let p99_ratio = row.managed.p99.as_secs_f64() / row.native.p99.as_secs_f64();
        latency.row(vec![
            row.label.to_owned(),
            report::micros(row.managed.p50),
            report::micros(row.managed.p99),
            report::micros(row.raw.p50),
            report::micros(row.raw.p99),
            report::micros(row.native.p50),
            report::micros(row.native.p99),
            node_cell(&row.node, |s| report::micros(s.p50)),
            node_cell(&row.node, |s| report::micros(s.p99)),
            report::ratio(p99_ratio),
            format!("≤ {P99_TARGET:.1}"),
            report::verdict(p99_ratio <= P99_TARGET),
        ]);
    }
    throughput.note("managed echo: /echo, the host frames and calls the guest per message");
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
