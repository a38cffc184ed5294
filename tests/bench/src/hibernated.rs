//! Section 3: memory per hibernated managed session, at 10,000 and at 100,000 sessions held by
//! one host process. Each session to the managed `echo` echoes one message and then stays
//! silent; the host is told to hibernate after a short idle time, and the figure is read once
//! its gauges show no live instance: the growth of its RSS divided by the sessions. The native
//! tokio-tungstenite echo server holds the same number of idle sockets in the same run.
//! Targets: ≤ 12 KiB per session at 100,000 sessions, and 100,000 sessions held.
//!
//! A hundred thousand sessions need as many open files in the client and in the host (the
//! benchmark raises both limits, up to the kernel's `fs.nr_open`, where it may), and the
//! client spreads them over several loopback source addresses (see `client::ws`). A count the
//! open-files limit cannot hold is reported as not run, with the reason.

use std::time::{Duration, Instant};

use anyhow::bail;

use crate::affinity;
use crate::client::ws;
use crate::memory::Reading;
use crate::options::{Options, Section};
use crate::plugins;
use crate::report::{self, Table};
use crate::roles::{self, Gauges, HIBERNATE_AFTER_MS, HostSetup, ServerProcess};

/// Handshakes in flight while sessions open: well under the listen backlog (`somaxconn`).
const OPEN_CONCURRENCY: usize = 256;
/// Sessions opened, left to hibernate and closed before the "before" reading, the same way the
/// measured ones open: the host's fixed costs (runtime structures, and the instance pool's
/// slots that sessions opening at this rate keep busy until they hibernate) are then not
/// charged to the sessions.
const WARM_SESSIONS: usize = 2_000;
/// Quiet time before reading RSS, so the server has finished what the last session started.
const SETTLE: Duration = Duration::from_secs(1);
/// Longest every instance may take to be dropped once the last session opened.
const HIBERNATION_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the host's gauges are read while waiting for hibernation.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Open files a process needs beyond one per session (runtime, pipes, stdio, plugins).
const FD_MARGIN: u64 = 1_024;
/// Per-session target at [`TARGET_SESSIONS`], in bytes.
const TARGET_BYTES: f64 = 12.0 * 1024.0;
/// Sessions one host process must hold.
const TARGET_SESSIONS: usize = 100_000;
/// How a count the open-files limit could not hold is reported.
const NOT_RUN: &str = "not run";

/// A server's memory before and after the sessions opened.
struct Figure {
    before: Reading,
    after: Reading,
    opened_in: Duration,
    /// From the last session open until no instance was alive (the host only).
    hibernated_in: Option<Duration>,
    /// The host's gauges when `after` was read.
    gauges: Option<Gauges>,
}

impl Figure {
    /// The growth of one measure, per session.
    fn per_session(&self, sessions: usize, measure: fn(&Reading) -> u64) -> f64 {
        measure(&self.after).saturating_sub(measure(&self.before)) as f64 / sessions as f64
    }
}

/// One session count's outcome for both servers.
struct Count {
    sessions: usize,
    host: Result<Figure, String>,
    native: Result<Figure, String>,
}

/// Measures every session count and prints the tables.
pub(crate) async fn run(options: &Options) -> anyhow::Result<()> {
    report::heading(Section::Hibernated.title());
    let folder = plugins::folder_with(&["echo"])?;
    let mut counts = Vec::new();
    for sessions in options.hibernated_sessions() {
        let needed = sessions as u64 + FD_MARGIN;
        let (soft, hard) = affinity::fd_limits();
        if soft < needed {
            let reason = format!(
                "{NOT_RUN}: {sessions} sessions need {needed} open files per process; the limit is \
                 {soft} (hard {hard}). Raise the hard limit before starting (`ulimit -Hn`; \
                 needs root with CAP_SYS_RESOURCE, up to fs.nr_open)"
            );
            counts.push(Count {
                sessions,
                host: Err(reason.clone()),
                native: Err(reason),
            });
            continue;
        }
        let host = match HostSetup::new(folder.path()).managed(sessions).start() {
            Ok(host) => measure(host, sessions, true).await,
            Err(err) => Err(err),
        };
        let native = match roles::start_native_echo() {
            Ok(native) => measure(native, sessions, false).await,
            Err(err) => Err(err),
        };
        counts.push(Count {
            sessions,
            host: host.map_err(|err| format!("failed: {err:#}")),
            native: native.map_err(|err| format!("failed: {err:#}")),
        });
    }
    print(&counts);
    Ok(())
}

/// Opens the sessions against `server` and reads its RSS before and after (for the host, after
/// every instance has been dropped); the server is stopped at the end (dropping it kills it,
/// which also ends the sessions at once).
async fn measure(
    mut server: ServerProcess,
    sessions: usize,
    hibernates: bool,
) -> anyhow::Result<Figure> {
    let addr = server.addr();
    let warm = ws::open_idle(addr, "/echo", WARM_SESSIONS.min(sessions), OPEN_CONCURRENCY).await?;
    if hibernates {
        wait_hibernated(&mut server).await?;
    }
    drop(warm);
    tokio::time::sleep(SETTLE).await;
    let before = Reading::take(&server)?;
    let started = Instant::now();
    let open = ws::open_idle(addr, "/echo", sessions, OPEN_CONCURRENCY).await;
    let opened_in = started.elapsed();
    server.check_alive()?;
    let open = open?;
    let hibernated_in = if hibernates {
        Some(wait_hibernated(&mut server).await?)
    } else {
        None
    };
    tokio::time::sleep(SETTLE).await;
    let after = Reading::take(&server)?;
    let gauges = if hibernates {
        Some(Gauges::of(&mut server)?)
    } else {
        None
    };
    server.check_alive()?;
    // Kill the server before dropping the sockets: it then has nothing to clean up, and the
    // client's ports are freed at once (the server's side closes first).
    drop(server);
    drop(open);
    Ok(Figure {
        before,
        after,
        opened_in,
        hibernated_in,
        gauges,
    })
}

/// Waits until the host reports no live instance: every session has hibernated. Returns how
/// long that took.
pub(crate) async fn wait_hibernated(host: &mut ServerProcess) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let gauges = Gauges::of(host)?;
        if gauges.all_hibernated() {
            return Ok(started.elapsed());
        }
        if started.elapsed() > HIBERNATION_TIMEOUT {
            bail!(
                "sessions did not hibernate within {HIBERNATION_TIMEOUT:?} of \
                 --hibernate-after-ms {HIBERNATE_AFTER_MS} (host gauges: {})",
                gauges.label()
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

fn print(counts: &[Count]) {
    let mut table = Table::new(
        "Idle managed WebSocket sessions (one 20 B echo each, then hibernated), server RSS",
        &[
            "sessions",
            "server",
            "RSS before",
            "RSS after",
            "opened in",
            "hibernated in",
            "per session",
            "target",
            "",
            "PSS per session",
        ],
    );
    let mut held = 0;
    let mut reasons = Vec::new();
    for count in counts {
        let sessions = report::rate(count.sessions as f64);
        match &count.host {
            Ok(figure) => {
                held = held.max(count.sessions);
                let per_session = figure.per_session(count.sessions, |r| r.rss);
                let (target, verdict) = if count.sessions >= TARGET_SESSIONS {
                    (
                        format!("≤ {}", report::kib(TARGET_BYTES)),
                        report::verdict(per_session <= TARGET_BYTES),
                    )
                } else {
                    (
                        format!("(≤ {} at 100,000)", report::kib(TARGET_BYTES)),
                        String::new(),
                    )
                };
                let mut cells = cells(sessions.clone(), "managed echo, host", figure);
                cells.extend([
                    report::kib(per_session),
                    target,
                    verdict,
                    report::kib(figure.per_session(count.sessions, |r| r.pss)),
                ]);
                table.row(cells);
                if let Some(gauges) = &figure.gauges {
                    table.note(format!(
                        "{sessions} sessions: host gauges when read: {}",
                        gauges.label()
                    ));
                }
            }
            Err(reason) => {
                table.row(vec![
                    sessions.clone(),
                    "managed echo, host".into(),
                    "–".into(),
                ]);
                if count.native.as_ref().err() == Some(reason) {
                    reasons.push(format!("{sessions} sessions: {reason}"));
                } else {
                    reasons.push(format!("{sessions} sessions, host: {reason}"));
                }
            }
        }
        match &count.native {
            Ok(figure) => {
                let mut cells = cells(sessions.clone(), "native", figure);
                cells.extend([
                    report::kib(figure.per_session(count.sessions, |r| r.rss)),
                    String::new(),
                    String::new(),
                    report::kib(figure.per_session(count.sessions, |r| r.pss)),
                ]);
                table.row(cells);
            }
            Err(reason) => {
                table.row(vec![sessions.clone(), "native".into(), "–".into()]);
                if count.host.as_ref().err() != Some(reason) {
                    reasons.push(format!("{sessions} sessions, native: {reason}"));
                }
            }
        }
    }
    table.note(format!(
        "the host hibernates after {HIBERNATE_AFTER_MS} ms idle; \"hibernated in\" runs from \
         the last session open until the host reported no live instance"
    ));
    table.note(format!(
        "sessions spread over source addresses {}; {WARM_SESSIONS} sessions opened, \
         hibernated and closed before the \"before\" reading",
        ws::source_addresses_label()
    ));
    for reason in reasons {
        table.note(reason);
    }
    table.print();

    // A target count that could not even be tried here is no verdict on the host.
    let untried = counts.iter().any(|count| {
        count.sessions >= TARGET_SESSIONS
            && matches!(&count.host, Err(reason) if reason.starts_with(NOT_RUN))
    });
    let asked = counts.iter().any(|count| count.sessions >= TARGET_SESSIONS);
    let verdict = if !asked {
        "(not asked: see --sessions)".to_owned()
    } else if held < TARGET_SESSIONS && untried {
        "not run".to_owned()
    } else {
        report::verdict(held >= TARGET_SESSIONS)
    };
    let mut target = Table::new("Sessions held by one host process", &["held", "target", ""]);
    target.row(vec![
        report::rate(held as f64),
        report::rate(TARGET_SESSIONS as f64),
        verdict,
    ]);
    target.print();
}

/// The first cells of a row: count, server, RSS before and after, and the times.
fn cells(sessions: String, server: &str, figure: &Figure) -> Vec<String> {
    let mib = |bytes: u64| format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0));
    vec![
        sessions,
        server.to_owned(),
        mib(figure.before.rss),
        mib(figure.after.rss),
        report::millis(figure.opened_in),
        figure
            .hibernated_in
            .map_or_else(String::new, report::millis),
    ]
}
