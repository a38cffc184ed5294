//! Section 5: the first message after hibernation against a warm session's, on the managed
//! `echo`. Sessions are opened and left idle until the host reports no live instance (all
//! hibernated); then, one session at a time, the first message's round trip is timed (the host
//! makes a fresh instance to deliver it) and right after it a few more on the same, now warm,
//! session. Client-observed medians; target: the first message after hibernation within
//! 100 µs of a warm one. Repeated for a few cycles of hibernating and waking.

use std::time::Duration;

use crate::client::ws::{self, EchoMessage};
use crate::hibernated::wait_hibernated;
use crate::options::{Options, Section};
use crate::plugins;
use crate::report::{self, Table};
use crate::roles::{HIBERNATE_AFTER_MS, HostSetup};

/// Round trips timed on each session right after the one that woke it.
const WARM_ROUND_TRIPS: usize = 3;
/// Handshakes in flight while the sessions open.
const OPEN_CONCURRENCY: usize = 64;
/// Most a woken session's median round trip may exceed a warm one's.
const TARGET: Duration = Duration::from_micros(100);

/// Times the wakes and prints the table.
pub(crate) async fn run(options: &Options) -> anyhow::Result<()> {
    report::heading(Section::Wake.title());
    let folder = plugins::folder_with(&["echo"])?;
    let sessions = options.wake_sessions();
    let mut host = HostSetup::new(folder.path()).managed(sessions).start()?;
    let cycles = options.wake_cycles();
    let mut sockets = ws::open_idle(host.addr(), "/echo", sessions, OPEN_CONCURRENCY).await?;
    let message = EchoMessage::new(ws::IDLE_MESSAGE_SIZE);
    let mut echo = Vec::with_capacity(ws::IDLE_MESSAGE_SIZE);
    let mut woken = Vec::with_capacity(sessions * cycles);
    let mut warm = Vec::with_capacity(sessions * cycles * WARM_ROUND_TRIPS);
    for _ in 0..cycles {
        wait_hibernated(&mut host).await?;
        for socket in &mut sockets {
            woken.push(socket.timed_round_trip(&message, &mut echo).await?);
            for _ in 0..WARM_ROUND_TRIPS {
                warm.push(socket.timed_round_trip(&message, &mut echo).await?);
            }
        }
    }
    host.check_alive()?;
    drop(host);
    drop(sockets);

    let woken_median = report::median(&woken);
    let warm_median = report::median(&warm);
    let difference = woken_median.saturating_sub(warm_median);
    let mut table = Table::new(
        format!(
            "Round trip of a 20 B message on the managed echo, {sessions} sessions × {cycles} \
             cycles, one at a time"
        ),
        &["session", "median", "p99", "samples"],
    );
    for (name, samples) in [
        ("warm (instance alive)", &warm),
        ("first message after hibernation", &woken),
    ] {
        table.row(vec![
            name.to_owned(),
            report::micros(report::median(samples)),
            report::micros(report::percentile(samples, 0.99)),
            samples.len().to_string(),
        ]);
    }
    table.note(format!(
        "before each cycle the host reported no live instance (hibernate after {HIBERNATE_AFTER_MS} ms)"
    ));
    table.print();
    let mut target = Table::new(
        "First message after hibernation − warm (medians)",
        &["difference", "target", ""],
    );
    target.row(vec![
        report::micros(difference),
        format!("≤ {}", report::micros(TARGET)),
        report::verdict(difference <= TARGET),
    ]);
    target.print();
    Ok(())
}
