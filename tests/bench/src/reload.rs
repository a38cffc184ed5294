//! Section 4: hot-reload latency of `echo`. In a running host's plugins folder, `echo.wasm` is
//! first replaced by `hello.wasm` (untimed; `GET /echo` then answers hello's `200`); then a fresh
//! copy of `echo.wasm` is staged under a hidden name and renamed into place, and the time runs
//! from that rename until a new connection's `GET /echo` gets echo's `400` (its answer to a GET
//! without an upgrade): the whole reload of echo, compile included. Timed twice: with the host
//! on the server core like every other section, and on every core as the `switchyard` binary
//! runs (compiling is spread over the cores). Target: median ≤ 200 ms.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use switchyard_host::config::DEFAULT_RELOAD_DEBOUNCE;

use crate::client::http;
use crate::options::{Options, Section};
use crate::plugins;
use crate::report::{self, Table};
use crate::roles::{self, Cores};

/// What `echo` answers a GET without an upgrade.
const ECHO_STATUS: u16 = 400;
/// What `hello` answers.
const HELLO_STATUS: u16 = 200;
/// Median reload target.
const TARGET: Duration = Duration::from_millis(200);
/// Pause between polls of the route.
const POLL_INTERVAL: Duration = Duration::from_millis(2);
/// Longest a reload may take before the section fails.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Quiet time around each run, well past the host's debounce, so no reload is pending when the
/// clock starts.
const QUIET: Duration = Duration::from_millis(400);

/// Times the reloads and prints the table.
pub(crate) async fn run(options: &Options) -> anyhow::Result<()> {
    report::heading(Section::Reload.title());
    let runs = options.reload_runs();
    let mut table = Table::new(
        format!(
            "Rename a new echo.wasm into place → first new connection answered by it ({runs} runs each)"
        ),
        &["", "median", "runs", "target", ""],
    );
    for cores in [Cores::One, Cores::All] {
        let samples = time_reloads(runs, cores).await?;
        let median = report::median(&samples);
        let each: Vec<String> = samples
            .iter()
            .map(|sample| report::millis(*sample))
            .collect();
        table.row(vec![
            cores.label(),
            report::millis(median),
            each.join(", "),
            format!("≤ {}", report::millis(TARGET)),
            report::verdict(median <= TARGET),
        ]);
    }
    table.note(format!(
        "includes the host's reload debounce of {} ms (quiet time after the last file event)",
        DEFAULT_RELOAD_DEBOUNCE.as_millis()
    ));
    table.note("the new echo.wasm is compiled from scratch each time: the host runs without its compiled-plugin cache");
    table.print();
    Ok(())
}

/// Starts a host on `cores` and times `runs` reloads of echo in it.
async fn time_reloads(runs: usize, cores: Cores) -> anyhow::Result<Vec<Duration>> {
    let folder = plugins::folder()?;
    let dir = folder.path();
    let mut host = roles::start_host_with(dir, None, cores)?;
    let addr = host.addr();
    wait_for_status(addr, ECHO_STATUS).await?;
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        // Move echo out of the way, so that echo's return is what can be seen and timed.
        plugins::install(dir, "hello", "echo")?;
        wait_for_status(addr, HELLO_STATUS).await?;
        samples.push(time_one_reload(dir, addr).await?);
    }
    host.check_alive()?;
    Ok(samples)
}

/// Renames a staged copy of echo over the plugin serving `/echo` and times it until a new
/// connection is answered by echo.
async fn time_one_reload(dir: &Path, addr: SocketAddr) -> anyhow::Result<Duration> {
    let staged = plugins::stage(dir, "echo")?;
    // Let the copy's own file events (and the previous reload's) pass; hidden names are
    // ignored, but be sure no reload is pending when the clock starts.
    tokio::time::sleep(QUIET).await;
    let started = Instant::now();
    std::fs::rename(&staged, dir.join("echo.wasm")).context("renaming the new echo into place")?;
    wait_for_status(addr, ECHO_STATUS).await?;
    Ok(started.elapsed())
}

/// Polls `GET /echo`, each time on a new connection, until it answers `status`.
async fn wait_for_status(addr: SocketAddr, status: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + RELOAD_TIMEOUT;
    let mut last = String::from("nothing yet");
    while Instant::now() < deadline {
        match http::get_status(addr, "/echo").await {
            Ok(answer) if answer == status => return Ok(()),
            Ok(answer) => last = format!("status {answer}"),
            Err(err) => last = format!("{err:#}"),
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    anyhow::bail!("GET /echo did not answer {status} within {RELOAD_TIMEOUT:?} (last: {last})")
}
