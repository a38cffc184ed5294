//! Section 10: Python plugins (built with componentize-py) beside their Rust twins, in the
//! same run: instance + `handle` of `hello-py` against `hello`; managed echo msg/s of `echo-py`
//! against `echo` and the native server; memory per hibernated `chat-py` session against
//! `chat` (target ≤ 12 KiB, as for Rust); and how long `guest-sdk/python/build` takes for a
//! plugin it has not built before (cold) and for one it has (the cache).
//!
//! The Python plugins are built by the test harness's build script once
//! `tests/python/setup.sh` has installed componentize-py; without them the section fails,
//! saying so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::client::{Summary, Window, ws};
use crate::hibernated::wait_hibernated;
use crate::instantiate::in_process_of;
use crate::memory::Reading;
use crate::options::{Options, Section};
use crate::plugins;
use crate::report::{self, Table};
use crate::roles::{self, HostSetup, ServerProcess};

/// The echo loads: connections, message size, label.
const ECHO_LOADS: [(usize, usize, &str); 2] = [
    (100, 20, "100 conns × 20 B"),
    (10, 1024, "10 conns × 1 KiB"),
];
/// Pause between loads, so the previous load's sessions have closed.
const SETTLE: Duration = Duration::from_millis(300);
/// Hibernated chat sessions held, each in a room of its own (one room would fan every join
/// out to every member: a quadratic load that is not what is measured here).
const CHAT_SESSIONS: usize = 5_000;
/// The same in a quick run.
const CHAT_SESSIONS_QUICK: usize = 500;
/// Handshakes in flight while the chat sessions open.
const OPEN_CONCURRENCY: usize = 64;
/// Per-session target, in bytes (the Rust chat's, and the hibernated section's).
const TARGET_BYTES: f64 = 12.0 * 1024.0;
/// Quiet time before reading RSS.
const MEMORY_SETTLE: Duration = Duration::from_secs(1);
/// Builds of a fresh copy of `hello-py` timed, cold and cached each.
const BUILD_RUNS: usize = 3;

/// Runs the four measurements and prints their tables.
pub(crate) async fn run(options: &Options) -> anyhow::Result<()> {
    report::heading(Section::Python.title());
    let cache = tempfile::tempdir().context("a folder for compiled plugins")?;
    instances(options).await?;
    echo(options, cache.path()).await?;
    hibernated_chat(options, cache.path()).await?;
    build_times()?;
    Ok(())
}

/// Instance + `handle`, in process, `hello-py` and `hello`.
async fn instances(options: &Options) -> anyhow::Result<()> {
    let iterations = options.instantiate_iterations();
    let mut table = Table::new(
        format!("New instance + handle, in process, {iterations} iterations"),
        &["plugin", "median", "p99", "drop median", "load (compile)"],
    );
    for name in ["hello-py", "hello"] {
        let figures = in_process_of(name, iterations).await?;
        table.row(vec![
            name.into(),
            report::micros(report::median(&figures.serve)),
            report::micros(report::percentile(&figures.serve, 0.99)),
            report::micros(report::median(&figures.drop)),
            report::millis(figures.load),
        ]);
    }
    table.note(
        "load: LoadedPlugin::load without the artifact cache (cranelift compiles the component)",
    );
    table.print();
    Ok(())
}

/// Managed echo msg/s: `echo-py`, `echo` and native, slice by slice.
async fn echo(options: &Options, cache: &Path) -> anyhow::Result<()> {
    let folder = plugins::folder_with(&["echo", "echo-py"])?;
    let mut host = HostSetup::new(folder.path()).cache(Some(cache)).start()?;
    let mut native = roles::start_native_echo()?;
    let slices = options.measure.as_secs().max(3);
    let mut table = Table::new(
        format!("Managed WebSocket echo, medians of {slices} one-second slices"),
        &[
            "load",
            "echo-py msg/s",
            "echo msg/s",
            "native msg/s",
            "py/rust",
            "py/native",
            "py p99",
            "rust p99",
        ],
    );
    for (connections, size, label) in ECHO_LOADS {
        let (mut python, mut rust, mut direct) = (Vec::new(), Vec::new(), Vec::new());
        for slice in 0..slices {
            let window = Window::slice(slice, options.warmup());
            for turn in 0..3 {
                match (slice + turn) % 3 {
                    0 => python.push(checked(
                        ws::echo_load(host.addr(), "/echo-py", connections, size, window).await,
                        &mut host,
                    )?),
                    1 => rust.push(checked(
                        ws::echo_load(host.addr(), "/echo", connections, size, window).await,
                        &mut host,
                    )?),
                    _ => direct.push(checked(
                        ws::echo_load(native.addr(), "/", connections, size, window).await,
                        &mut native,
                    )?),
                }
                tokio::time::sleep(SETTLE).await;
            }
        }
        let median =
            |slices: &[Summary]| Summary::median_of(slices).context("no slice was measured");
        let (python, rust, direct) = (median(&python)?, median(&rust)?, median(&direct)?);
        table.row(vec![
            label.into(),
            report::rate(python.per_sec),
            report::rate(rust.per_sec),
            report::rate(direct.per_sec),
            report::ratio(python.per_sec / rust.per_sec),
            report::ratio(python.per_sec / direct.per_sec),
            report::micros(python.p99),
            report::micros(rust.p99),
        ]);
    }
    table.print();
    Ok(())
}

/// A load's result, failing with the server's fate if it died meanwhile.
fn checked(result: anyhow::Result<Summary>, server: &mut ServerProcess) -> anyhow::Result<Summary> {
    match result {
        Ok(summary) => Ok(summary),
        Err(err) => {
            server.check_alive()?;
            Err(err)
        }
    }
}

/// Memory per hibernated chat session, `chat-py` and `chat`, each session in a room of its own.
/// The figure is marginal: the RSS growth from `sessions` hibernated sessions to twice as many,
/// divided by `sessions`, so both readings see the instance pool equally warm (a Python
/// instance dirties megabytes of pool memory while awake, which a reading against a cold
/// start would charge to the sessions, or, once the pool gives it back, credit them).
async fn hibernated_chat(options: &Options, cache: &Path) -> anyhow::Result<()> {
    let sessions = if options.quick {
        CHAT_SESSIONS_QUICK
    } else {
        CHAT_SESSIONS
    };
    let mut table = Table::new(
        format!(
            "Memory per hibernated chat session, from {sessions} to {} sessions, one room each",
            2 * sessions
        ),
        &[
            "plugin",
            "RSS / session",
            "PSS / session",
            "opened in",
            "hibernated in",
            "target",
            "",
        ],
    );
    for name in ["chat-py", "chat"] {
        let folder = plugins::folder_with(&[name])?;
        let mut host = HostSetup::new(folder.path())
            .cache(Some(cache))
            .managed(2 * sessions)
            .start()?;
        let addr = host.addr();
        let path = |i: usize| format!("/{name}/r{i}?name=member");
        let first = ws::open_quiet_each(addr, &path, sessions, OPEN_CONCURRENCY).await?;
        wait_hibernated(&mut host).await?;
        tokio::time::sleep(MEMORY_SETTLE).await;
        let before = Reading::take(&host)?;
        let started = Instant::now();
        let second =
            ws::open_quiet_each(addr, &|i| path(i + sessions), sessions, OPEN_CONCURRENCY).await;
        let opened_in = started.elapsed();
        host.check_alive()?;
        let second = second?;
        let hibernated_in = wait_hibernated(&mut host).await?;
        tokio::time::sleep(MEMORY_SETTLE).await;
        let after = Reading::take(&host)?;
        host.check_alive()?;
        drop(host);
        drop((first, second));
        let per = |measure: fn(&Reading) -> u64| {
            measure(&after).saturating_sub(measure(&before)) as f64 / sessions as f64
        };
        let rss = per(|r| r.rss);
        table.row(vec![
            name.into(),
            report::kib(rss),
            report::kib(per(|r| r.pss)),
            report::millis(opened_in),
            report::millis(hibernated_in),
            format!("≤ {}", report::kib(TARGET_BYTES)),
            report::verdict(rss <= TARGET_BYTES),
        ]);
    }
    table.note(
        "each session: handshake (handle), on_open (publish the join, subscribe), then idle until hibernated",
    );
    table.print();
    Ok(())
}

/// `guest-sdk/python/build` on a fresh copy of `hello-py` (a new comment makes its inputs, and
/// so its cache key, new): cold, then again with the cache.
fn build_times() -> anyhow::Result<()> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = workspace.join("guest-sdk/python/build");
    let source = workspace.join("plugins/hello-py/plugin.py");
    let scratch = tempfile::tempdir().context("a scratch folder")?;
    let (mut cold, mut cached) = (Vec::new(), Vec::new());
    for run in 0..BUILD_RUNS {
        let dir = scratch.path().join(format!("hello-py-{run}"));
        std::fs::create_dir(&dir)?;
        let mut text = std::fs::read_to_string(&source).context("reading hello-py")?;
        text.push_str(&format!("\n# benchmark copy {run}, {:?}\n", Instant::now()));
        std::fs::write(dir.join("plugin.py"), text)?;
        let out = scratch.path().join(format!("hello-py-{run}.wasm"));
        cold.push(timed_build(&script, &dir, &out)?);
        cached.push(timed_build(&script, &dir, &out)?);
    }
    let mut table = Table::new(
        format!("guest-sdk/python/build of hello-py, {BUILD_RUNS} runs"),
        &["build", "median", "min", "max"],
    );
    for (label, runs) in [
        ("cold (new inputs)", &cold),
        ("cached (unchanged)", &cached),
    ] {
        table.row(vec![
            label.into(),
            report::millis(report::median(runs)),
            report::millis(runs.iter().copied().min().unwrap_or_default()),
            report::millis(runs.iter().copied().max().unwrap_or_default()),
        ]);
    }
    table.note("the toolchain (componentize-py in target/python) was installed before; installing it is a one-off");
    table.print();
    Ok(())
}

/// Runs the build script once, failing with its output if it fails.
fn timed_build(script: &PathBuf, dir: &Path, out: &Path) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let done = Command::new(script)
        .arg(dir)
        .arg(out)
        .output()
        .context("running guest-sdk/python/build")?;
    let took = started.elapsed();
    if !done.status.success() {
        bail!(
            "guest-sdk/python/build failed: {}",
            String::from_utf8_lossy(&done.stderr)
        );
    }
    Ok(took)
}
