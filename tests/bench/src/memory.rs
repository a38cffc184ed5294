//! Section 2: memory per idle upgraded session on the raw path (an instance per session: the
//! guest frames its own bytes). Opens many WebSocket sessions (one echo each, then silence) to
//! the `echo-raw` plugin and to the native server, and divides the growth of the server's RSS by
//! the number of sessions. Target ≤ 64 KiB per session, stretch 32 KiB. (Managed sessions, which
//! hibernate, are section 3.)

use std::time::{Duration, Instant};

use anyhow::ensure;

use crate::affinity;
use crate::client::ws;
use crate::options::{Options, Section};
use crate::plugins;
use crate::report::{self, Table};
use crate::roles::{self, ServerProcess};

/// Sessions opened in parallel; more only queue in the server's backlog.
const BATCH: usize = 200;
/// The raw echo plugin, and where it serves.
const PLUGIN: &str = "echo-raw";
const PATH: &str = "/echo-raw";
/// Sessions opened and closed before the "before" figure, so one-time costs (first
/// instantiation, lazily grown runtime structures) are not charged to the sessions.
const WARM_SESSIONS: usize = 20;
/// Quiet time before reading RSS, so the server has finished what the last batch started.
const SETTLE: Duration = Duration::from_secs(1);
/// File descriptors the client needs beyond one per session (runtime, pipes, stdio).
const FD_MARGIN: u64 = 256;
/// Per-session target, in bytes.
const TARGET: f64 = 64.0 * 1024.0;
/// Per-session stretch goal, in bytes.
const STRETCH: f64 = 32.0 * 1024.0;

/// One reading of a server's memory, in bytes.
pub(crate) struct Reading {
    /// Resident set size: the target's measure. A page mapped by several instances (the
    /// plugin's copy-on-write data image) counts once per mapping.
    pub(crate) rss: u64,
    /// Proportional set size: each shared page divided among the mappings that share it.
    pub(crate) pss: u64,
    /// The part of `rss` that is shared memory: for the host, the data-image pages instances
    /// read but did not write.
    pub(crate) shared: u64,
}

impl Reading {
    /// Reads `server`'s memory now.
    pub(crate) fn take(server: &ServerProcess) -> anyhow::Result<Self> {
        Ok(Self {
            rss: server.rss_bytes()?,
            pss: server.pss_bytes()?,
            shared: server.rss_shared_bytes()?,
        })
    }
}

/// A server's memory before and after the sessions opened.
struct Figure {
    before: Reading,
    after: Reading,
    opened_in: Duration,
}

impl Figure {
    /// The growth of one measure, per session.
    fn per_session(&self, sessions: usize, measure: fn(&Reading) -> u64) -> f64 {
        measure(&self.after).saturating_sub(measure(&self.before)) as f64 / sessions as f64
    }
}

/// Measures the host and the native server and prints the table.
pub(crate) async fn run(options: &Options) -> anyhow::Result<()> {
    report::heading(Section::Memory.title());
    let sessions = options.idle_sessions();
    ensure!(
        affinity::fd_limit() >= sessions as u64 + FD_MARGIN,
        "{sessions} sessions need an open-files limit of at least {} (`ulimit -n` is {})",
        sessions as u64 + FD_MARGIN,
        affinity::fd_limit()
    );
    let folder = plugins::folder_with(&[PLUGIN])?;
    let host = roles::start_host(folder.path())?;
    let host_figure = measure(host, PATH, sessions).await?;
    let native = roles::start_native_echo()?;
    let native_figure = measure(native, "/", sessions).await?;

    let mut table = Table::new(
        format!("{sessions} idle WebSocket sessions (one 20 B echo each), server RSS"),
        &[
            "server",
            "RSS before",
            "RSS after",
            "opened in",
            "per session",
            "target",
            "",
            "of which shared",
            "PSS per session",
        ],
    );
    let host_per_session = host_figure.per_session(sessions, |r| r.rss);
    let verdict = if host_per_session <= STRETCH {
        "ok (stretch met)".to_owned()
    } else {
        report::verdict(host_per_session <= TARGET)
    };
    table.row(row(
        "raw echo plugin",
        &host_figure,
        sessions,
        "≤ 64 KiB",
        verdict,
    ));
    table.row(row("native", &native_figure, sessions, "", String::new()));
    table.note("stretch target: ≤ 32 KiB per session");
    table.note(
        "shared: data-image pages each instance maps but only read (RSS counts them per instance)",
    );
    table.note("PSS counts those shared pages once, not once per instance");
    table.print();
    Ok(())
}

fn row(name: &str, figure: &Figure, sessions: usize, target: &str, verdict: String) -> Vec<String> {
    let mib = |bytes: u64| format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0));
    vec![
        name.to_owned(),
        mib(figure.before.rss),
        mib(figure.after.rss),
        report::millis(figure.opened_in),
        report::kib(figure.per_session(sessions, |r| r.rss)),
        target.to_owned(),
        verdict,
        report::kib(figure.per_session(sessions, |r| r.shared)),
        report::kib(figure.per_session(sessions, |r| r.pss)),
    ]
}

/// Opens the sessions against `server` and reads its RSS before and after; the server is
/// stopped at the end (dropping it kills it, which also ends the sessions at once).
async fn measure(mut server: ServerProcess, path: &str, sessions: usize) -> anyhow::Result<Figure> {
    let warm = ws::open_idle(server.addr(), path, WARM_SESSIONS, WARM_SESSIONS).await?;
    for socket in warm {
        ws::close(socket).await;
    }
    tokio::time::sleep(SETTLE).await;
    let before = Reading::take(&server)?;
    let started = Instant::now();
    let open = ws::open_idle(server.addr(), path, sessions, BATCH).await;
    let opened_in = started.elapsed();
    server.check_alive()?;
    let open = open?;
    tokio::time::sleep(SETTLE).await;
    let after = Reading::take(&server)?;
    server.check_alive()?;
    // Kill the server before dropping ten thousand sockets: it then has nothing to clean up.
    drop(server);
    drop(open);
    Ok(Figure {
        before,
        after,
        opened_in,
    })
}
