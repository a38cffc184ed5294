//! Section 3: the per-request cost of the instance model. In this process (not a pinned
//! server): `LoadedPlugin::load` of `hello`, then many fresh instances each answering one
//! `handle` (target ≤ 50 µs median). Then plain HTTP `GET /hello` requests/s through the host
//! against a native hyper server giving the same answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use switchyard_host::bindings::{Outgoing, Request};
use switchyard_host::gauge::Gauge;
use switchyard_host::plugin::LoadedPlugin;
use switchyard_host::{Limits, Runtime};

use crate::client::{Summary, Window, http};
use crate::options::{Options, Section};
use crate::plugins;
use crate::report::{self, Table};
use crate::roles;

/// Iterations run before timing, so code paths, caches and the pool's slots are warm.
const WARMUP_ITERATIONS: usize = 200;
/// Median instantiate + `handle` target.
const TARGET: Duration = Duration::from_micros(50);
/// Keep-alive connections of the HTTP load.
const HTTP_CONNECTIONS: usize = 50;

/// What the in-process loop measured.
pub(crate) struct InstanceFigures {
    /// `LoadedPlugin::load`: compile, link, type-check.
    pub(crate) load: Duration,
    /// Instantiate + `handle`, per iteration.
    pub(crate) serve: Vec<Duration>,
    /// Dropping the instance (store, memory back to the pool), per iteration.
    pub(crate) drop: Vec<Duration>,
}

/// Runs both measurements and prints their tables.
pub(crate) async fn run(options: &Options) -> anyhow::Result<()> {
    report::heading(Section::Instantiate.title());
    let figures = in_process(options.instantiate_iterations()).await?;
    print_instances(&figures);
    let window = Window {
        warmup: options.warmup(),
        measure: options.measure,
    };
    let (host, native) = http_load(window).await?;
    print_http(host, native, window);
    Ok(())
}

async fn in_process(iterations: usize) -> anyhow::Result<InstanceFigures> {
    in_process_of("hello", iterations).await
}

/// Loads built plugin `name` and times `iterations` fresh instances each answering one
/// `handle` with `200` (after a warm-up).
pub(crate) async fn in_process_of(
    name: &str,
    iterations: usize,
) -> anyhow::Result<InstanceFigures> {
    let runtime = Runtime::new(&Limits::default())?;
    let path = plugins::built(name)?;
    let started = Instant::now();
    let plugin = LoadedPlugin::load(&runtime, &path)?;
    let load = started.elapsed();
    let live = Arc::new(Gauge::default());
    let request = Request {
        method: "GET".into(),
        path_with_query: "/hello".into(),
        headers: vec![("user-agent".into(), b"switchyard-bench".to_vec())],
        body: Vec::new(),
    };
    let mut serve = Vec::with_capacity(iterations);
    let mut drop = Vec::with_capacity(iterations);
    for i in 0..WARMUP_ITERATIONS + iterations {
        let started = Instant::now();
        let mut instance = plugin.instantiate(&live).await?;
        let outgoing = instance.handle(&request).await?;
        let served = started.elapsed();
        let dropping = Instant::now();
        std::mem::drop(instance);
        let dropped = dropping.elapsed();
        match outgoing {
            Outgoing::Response(response) if response.status == 200 => {}
            Outgoing::Response(response) => bail!("{name} answered {}", response.status),
            Outgoing::ProtocolUpgrade(_) | Outgoing::Websocket(_) => {
                bail!("{name} answered with an upgrade")
            }
        }
        if i >= WARMUP_ITERATIONS {
            serve.push(served);
            drop.push(dropped);
        }
    }
    Ok(InstanceFigures { load, serve, drop })
}

fn print_instances(figures: &InstanceFigures) {
    let median = report::median(&figures.serve);
    let mut table = Table::new(
        format!(
            "New instance + handle of `hello`, in process, {} iterations",
            figures.serve.len()
        ),
        &["measure", "median", "p99", "target", ""],
    );
    table.row(vec![
        "instantiate + handle".into(),
        report::micros(median),
        report::micros(report::percentile(&figures.serve, 0.99)),
        format!("median ≤ {}", report::micros(TARGET)),
        report::verdict(median <= TARGET),
    ]);
    table.row(vec![
        "drop of the instance".into(),
        report::micros(report::median(&figures.drop)),
        report::micros(report::percentile(&figures.drop, 0.99)),
    ]);
    table.note(format!(
        "LoadedPlugin::load (compile, link, type-check) took {}",
        report::millis(figures.load)
    ));
    table.print();
}

async fn http_load(window: Window) -> anyhow::Result<(Summary, Summary)> {
    let folder = plugins::folder()?;
    let mut host = roles::start_host(folder.path())?;
    let through_host = http::get_load(host.addr(), "/hello", HTTP_CONNECTIONS, window).await;
    host.check_alive()?;
    drop(host);
    let mut native = roles::start_native_hello()?;
    let direct = http::get_load(native.addr(), "/hello", HTTP_CONNECTIONS, window).await;
    native.check_alive()?;
    Ok((through_host?, direct?))
}

fn print_http(host: Summary, native: Summary, window: Window) {
    let mut table = Table::new(
        format!(
            "Plain HTTP GET /hello, {HTTP_CONNECTIONS} keep-alive connections, {} s window",
            window.measure.as_secs()
        ),
        &["server", "requests/s", "p50", "p99"],
    );
    for (name, summary) in [("hello plugin", host), ("native hyper", native)] {
        table.row(vec![
            name.into(),
            report::rate(summary.per_sec),
            report::micros(summary.p50),
            report::micros(summary.p99),
        ]);
    }
    table.row(vec![
        "plugin/native".into(),
        report::ratio(host.per_sec / native.per_sec),
        String::new(),
        report::ratio(host.p99.as_secs_f64() / native.p99.as_secs_f64()),
    ]);
    table.print();
}
