//! Hostile-plugin and hostile-client suites: real attacks on the real host, each run several
//! times, with an `echo` session measuring round trips during the attack and the host's slots
//! and memory checked afterwards. Figures are printed (run with `--nocapture` to see them).
//!
//! A binary of its own, and its tests one at a time, because the memory figures are this
//! process's RSS: tests running side by side would blur them.

mod clients;
mod plugins;

use std::future::Future;
use std::time::Duration;

use switchyard_tests::TestHost;
use switchyard_tests::probe::{EchoProbe, ProbeReport, rss_bytes};

/// The slowest round trip the bystander `echo` session may see during an attack. Round trips
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
    bystander: ProbeReport,
    rss_before: u64,
    rss_after: u64,
}

/// Runs `attack` `rounds` times against `host` (which must serve `echo`) while a bystander
/// echo session measures round trips; then checks that every slot came back, and prints and
/// returns the figures.
async fn under_attack<F, Fut>(host: &TestHost, name: &str, rounds: usize, attack: F) -> AttackReport
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    let rss_before = rss_bytes();
    let probe = EchoProbe::start(host).await;
    for round in 0..rounds {
        attack(round).await;
    }
    let bystander = probe.finish().await;
    host.wait_until_idle(SETTLE).await;
    let rss_after = rss_bytes();
    let report = AttackReport {
        bystander,
        rss_before,
        rss_after,
    };
    println!(
        "attack {name}: {rounds} rounds; bystander echo {} round trips, median {:?}, worst {:?}; \
         RSS before {:.1} MiB, after {:.1} MiB",
        report.bystander.round_trips,
        report.bystander.median,
        report.bystander.worst,
        mib(report.rss_before),
        mib(report.rss_after),
    );
    assert!(
        report.bystander.worst < BYSTANDER_WORST_RTT,
        "the bystander session stalled during {name}: {:?}",
        report.bystander
    );
    report
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
