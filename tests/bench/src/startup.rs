//! Section 5: start-up time to the first served request. Starts the host role on a fresh
//! plugins folder and polls `GET /hello` until `200`; the time runs from spawning the process.
//! The median of a few runs is reported, beside when the host printed its address (plugins
//! loaded, listener up): cold (no compiled-plugin cache) and warm (the cache filled by a first
//! start).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::client::http;
use crate::options::{Options, Section};
use crate::plugins;
use crate::report::{self, Table};
use crate::roles::{self, Cores};

/// Pause between polls.
const POLL_INTERVAL: Duration = Duration::from_millis(1);
/// Longest the first request may take to succeed once the address is known.
const SERVE_TIMEOUT: Duration = Duration::from_secs(30);

/// One start-up: when the address was printed and when `/hello` first answered 200.
struct Startup {
    listening: Duration,
    served: Duration,
}

/// Start-up with a warm compiled-plugin cache must reach the first request within this.
const WARM_TARGET: Duration = Duration::from_millis(100);

/// Times the start-ups and prints the table.
pub(crate) async fn run(options: &Options) -> anyhow::Result<()> {
    report::heading(Section::Startup.title());
    let cold = time_starts(options.startup_runs(), None).await?;
    let cache = tempfile::tempdir()?;
    // Fills the cache; not counted.
    time_one_start(Some(cache.path())).await?;
    let warm = time_starts(options.startup_runs(), Some(cache.path())).await?;
    let mut table = Table::new(
        format!(
            "Spawn host (echo + hello) → first 200 from /hello ({} runs each)",
            cold.len()
        ),
        &["", "address printed", "first 200", "target"],
    );
    for (label, runs, target) in [
        ("cold (no cache)", &cold, None),
        ("warm cache", &warm, Some(WARM_TARGET)),
    ] {
        let listening: Vec<Duration> = runs.iter().map(|run| run.listening).collect();
        let served: Vec<Duration> = runs.iter().map(|run| run.served).collect();
        let served_median = report::median(&served);
        table.row(vec![
            format!("median, {label}"),
            report::millis(report::median(&listening)),
            report::millis(served_median),
            match target {
                Some(target) => format!(
                    "≤ {}  {}",
                    report::millis(target),
                    if served_median <= target {
                        "ok"
                    } else {
                        "MISS"
                    }
                ),
                None => String::new(),
            },
        ]);
    }
    table.print();
    Ok(())
}

async fn time_starts(
    runs: usize,
    cache_dir: Option<&std::path::Path>,
) -> anyhow::Result<Vec<Startup>> {
    let mut timed = Vec::with_capacity(runs);
    for _ in 0..runs {
        timed.push(time_one_start(cache_dir).await?);
    }
    Ok(timed)
}

async fn time_one_start(cache_dir: Option<&std::path::Path>) -> anyhow::Result<Startup> {
    let folder = plugins::folder()?;
    let started = Instant::now();
    let mut host = roles::start_host_with(folder.path(), cache_dir, Cores::One)?;
    let listening = started.elapsed();
    wait_until_served(host.addr()).await?;
    let served = started.elapsed();
    host.check_alive()?;
    Ok(Startup { listening, served })
}

async fn wait_until_served(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + SERVE_TIMEOUT;
    let mut last = String::from("nothing yet");
    while Instant::now() < deadline {
        match http::get_status(addr, "/hello").await {
            Ok(200) => return Ok(()),
            Ok(status) => last = format!("status {status}"),
            Err(err) => last = format!("{err:#}"),
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    anyhow::bail!("GET /hello did not answer 200 within {SERVE_TIMEOUT:?} (last: {last})")
}
