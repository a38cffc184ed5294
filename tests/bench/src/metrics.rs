//! Section 10: what the admin listener costs. Two hosts serve the managed echo, one without an
//! admin listener, one with `--admin-listen` and a scraper asking its `/metrics` every second;
//! the echo matrix's rows run against both, slice by slice in alternating order (as the
//! matrix's servers take turns). Target: the one with metrics loses < 2 % of msg/s.
//!
//! The per-plugin counters are counted either way (plain atomic adds on the message path); what
//! this measures is the listener and a scrape a second on top of them.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use anyhow::Context as _;

use crate::client::{SLICE, Summary, Window, http, ws};
use crate::matrix::{LOADS, SETTLE, checked};
use crate::options::{Options, Section};
use crate::plugins;
use crate::report::{self, Table};
use crate::roles::HostSetup;

/// The host with metrics keeps at least this share of the other's msg/s.
const RATE_TARGET: f64 = 0.98;
/// How often the scraper asks for `/metrics`, as a Prometheus server would (at most).
const SCRAPE_EVERY: Duration = Duration::from_secs(1);

/// One row: the median slice of each host.
struct Row {
    label: &'static str,
    plain: Summary,
    observed: Summary,
}

/// Runs the rows and prints the table.
pub(crate) async fn run(options: &Options) -> anyhow::Result<()> {
    report::heading(Section::Metrics.title());
    let folder = plugins::folder_with(&["echo"])?;
    let mut plain = HostSetup::new(folder.path()).start()?;
    let admin = free_loopback_addr()?;
    let mut observed = HostSetup::new(folder.path()).admin(admin).start()?;
    let scrapes = Rc::new(Scrapes::default());
    let scraper = tokio::task::spawn_local(scrape_forever(admin, scrapes.clone()));
    let slices = options.measure.as_secs().max(1);
    let mut rows = Vec::new();
    for (connections, size, label) in LOADS {
        let mut plain_slices = Vec::new();
        let mut observed_slices = Vec::new();
        for slice in 0..slices {
            let window = Window::slice(slice, options.warmup());
            for turn in 0..2 {
                if (slice + turn) % 2 == 0 {
                    let load = ws::echo_load(plain.addr(), "/echo", connections, size, window);
                    plain_slices.push(checked(load.await, &mut plain, label)?);
                } else {
                    let load = ws::echo_load(observed.addr(), "/echo", connections, size, window);
                    observed_slices.push(checked(load.await, &mut observed, label)?);
                }
                tokio::time::sleep(SETTLE).await;
            }
        }
        let median =
            |slices: &[Summary]| Summary::median_of(slices).context("no slice was measured");
        rows.push(Row {
            label,
            plain: median(&plain_slices)?,
            observed: median(&observed_slices)?,
        });
    }
    scraper.abort();
    if let Some(failure) = scrapes.failure.borrow_mut().take() {
        anyhow::bail!("scraping /metrics failed: {failure}");
    }
    print(&rows, slices, scrapes.done.get());
    Ok(())
}

/// What the scraper did.
#[derive(Default)]
struct Scrapes {
    /// Scrapes answered `200`.
    done: Cell<u64>,
    /// The first scrape that failed, which fails the section.
    failure: RefCell<Option<String>>,
}

/// Asks `/metrics` every [`SCRAPE_EVERY`] until aborted or a scrape fails.
async fn scrape_forever(admin: SocketAddr, scrapes: Rc<Scrapes>) {
    let mut ticks = tokio::time::interval(SCRAPE_EVERY);
    loop {
        ticks.tick().await;
        let failure = match http::get_status(admin, "/metrics").await {
            Ok(200) => {
                scrapes.done.set(scrapes.done.get() + 1);
                continue;
            }
            Ok(status) => format!("/metrics answered {status}"),
            Err(err) => format!("{err:#}"),
        };
        *scrapes.failure.borrow_mut() = Some(failure);
        return;
    }
}

/// An address on the loopback nothing listens on now (the port the kernel just gave out).
fn free_loopback_addr() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    listener.local_addr().context("finding a free port")
}

fn print(rows: &[Row], slices: u64, scrapes: u64) {
    let mut table = Table::new(
        format!(
            "Managed echo msg/s with and without --admin-listen (median of {slices} slices of \
             {} s each, the hosts taking turns; /metrics scraped every {} s)",
            SLICE.as_secs(),
            SCRAPE_EVERY.as_secs()
        ),
        &[
            "load",
            "without",
            "with metrics",
            "with/without",
            "target",
            "",
            "p99 without",
            "p99 with",
        ],
    );
    for row in rows {
        let ratio = row.observed.per_sec / row.plain.per_sec;
        table.row(vec![
            row.label.to_owned(),
            report::rate(row.plain.per_sec),
            report::rate(row.observed.per_sec),
            report::ratio(ratio),
            format!("≥ {RATE_TARGET:.2}"),
            report::verdict(ratio >= RATE_TARGET),
            report::micros(row.plain.p99),
            report::micros(row.observed.p99),
        ]);
    }
    table.note(format!(
        "{scrapes} scrapes of /metrics answered during the section"
    ));
    table.print();
}
