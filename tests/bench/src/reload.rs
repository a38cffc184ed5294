//! Section 4: hot-reload latency. In a running host's plugins folder, `hello.wasm` is staged
//! under a hidden name and renamed over `echo.wasm`; the time runs from the rename until a new
//! connection's `GET /echo` gets `200` (hello's answer; echo answers a plain GET with `400`).
//! Target: median ≤ 200 ms.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use switchyard_host::config::DEFAULT_RELOAD_DEBOUNCE;

use crate::client::http;
use crate::options::{Options, Section};
use crate::plugins;
use crate::report::{self, Table};
use crate::roles;

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
    let folder = plugins::folder()?;
    let dir = folder.path();
    let mut host = roles::start_host(dir)?;
    let addr = host.addr();
    wait_for_status(addr, ECHO_STATUS).await?;
    let mut samples = Vec::new();
    for _ in 0..options.reload_runs() {
        samples.push(time_one_reload(dir, addr).await?);
        // Put echo back for the next run.
        plugins::install(dir, "echo", "echo")?;
        wait_for_status(addr, ECHO_STATUS).await?;
        tokio::time::sleep(QUIET).await;
    }
    host.check_alive()?;

    let median = report::median(&samples);
    let mut table = Table::new(
        format!(
            "Rename hello.wasm over echo.wasm → first new connection answered by it ({} runs)",
            samples.len()
        ),
        &["", "time", "target", ""],
    );
    for (run, sample) in samples.iter().enumerate() {
        table.row(vec![format!("run {}", run + 1), report::millis(*sample)]);
    }
    table.row(vec![
        "median".into(),
        report::millis(median),
        format!("≤ {}", report::millis(TARGET)),
        report::verdict(median <= TARGET),
    ]);
    table.note(format!(
        "includes the host's reload debounce of {} ms (quiet time after the last file event)",
        DEFAULT_RELOAD_DEBOUNCE.as_millis()
    ));
    table.print();
    Ok(())
}

async fn time_one_reload(dir: &Path, addr: SocketAddr) -> anyhow::Result<Duration> {
    let staged = plugins::stage(dir, "hello")?;
    // Let the copy's own file events pass (hidden names are ignored, but be sure).
    tokio::time::sleep(QUIET).await;
    let started = Instant::now();
    std::fs::rename(&staged, dir.join("echo.wasm")).context("renaming hello over echo")?;
    wait_for_status(addr, HELLO_STATUS).await?;
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
