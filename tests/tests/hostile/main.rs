//! Hostile-plugin and hostile-client suites: real attacks on the real host, each run several
//! times, with two bystander sessions measuring round trips during the attack (one to the
//! managed-WebSocket `echo`, one to the in-guest `echo-raw`) and the host's slots and memory
//! checked afterwards. Figures are printed (run with `--nocapture` to see them).
//!
//! A binary of its own, and its tests one at a time, because the memory figures are this
//! process's RSS: tests running side by side would blur them.

mod clients;
mod managed;
mod plugins;

use std::future::Future;
use std::time::Duration;

use switchyard_tests::TestHost;
use switchyard_tests::probe::{EchoProbe, MANAGED_ECHO, ProbeReport, RAW_ECHO, rss_bytes};

/// The slowest round trip a bystander session may see during an attack. Round trips
/// are normally well under a millisecond; this bound leaves room for a loaded 2-core CI
/// machine while still catching a host that stalls (a guest holding a worker would add whole
/// seconds).
const BYSTANDER_WORST_RTT: Duration = Duration::from_millis(500);
/// How long slots may take to come back after an attack ends.
const SETTLE: Duration = Duration::from_secs(5);

/// Serialises the tests of this binary (see the module docs).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What an attack did to the host.
#[derive(Debug)]
struct AttackReport {
    /// The managed and the raw echo session, in that order.
    bystanders: [ProbeReport; 2],
    rss_before: u64,
    rss_after: u64,
}

/// Runs `attack` `rounds` times against `host` (which must serve `echo` and `echo-raw`) while a
/// managed and a raw echo session measure round trips; then checks that every slot came back,
/// and prints and returns the figures.
async fn under_attack<F, Fut>(host: &TestHost, name: &str, rounds: usize, attack: F) -> AttackReport
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    let rss_before = rss_bytes();
    let managed = EchoProbe::start(host, MANAGED_ECHO).await;
    let raw = EchoProbe::start(host, RAW_ECHO).await;
    for round in 0..rounds {
        attack(round).await;
    }
    let bystanders = [managed.finish().await, raw.finish().await];
    host.wait_until_idle(SETTLE).await;
    let rss_after = rss_bytes();
    let report = AttackReport {
        bystanders,
        rss_before,
        rss_after,
    };
    let watched: Vec<String> = report
        .bystanders
        .iter()
        .map(|probe| {
            format!(
                "{} {} round trips, median {:?}, worst {:?}",
                probe.path, probe.round_trips, probe.median, probe.worst
            )
        })
        .collect();
    println!(
        "attack {name}: {rounds} rounds; bystanders {}; RSS before {:.1} MiB, after {:.1} MiB",
        watched.join("; "),
        mib(report.rss_before),
        mib(report.rss_after),
    );
    for probe in &report.bystanders {
        assert!(
            probe.worst < BYSTANDER_WORST_RTT,
            "the bystander session to {} stalled during {name}: {probe:?}",
            probe.path
        );
    }
    report
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
