//! Section 13: what one `on-message` call costs, in process, against how many instances the
//! calls take turns on. Each instance has its own store, as each awake managed connection with
//! an instance of its own does; each is called in turn with the same 20 B message. With one
//! instance every call finds the instance's memory, stack and tables in the CPU's caches, as
//! with shared instances under load; with hundreds, each call touches an instance the others
//! pushed out. No target: it shows what the echo matrix's two instance models pay per message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_host::bindings::MessageRef;
use switchyard_host::gauge::Gauge;
use switchyard_host::plugin::LoadedPlugin;
use switchyard_host::{Limits, Runtime};

use crate::options::{Options, Section};
use crate::plugins;
use crate::report::{self, Table};

/// How many instances the calls go round, one row each.
const INSTANCE_COUNTS: [usize; 5] = [1, 10, 100, 200, 1_000];
/// The message every call delivers.
const MESSAGE: &[u8] = &[b'x'; 20];
/// Timed rounds per row; the row shows their median.
const ROUNDS: usize = 3;

/// Runs the section and prints its table.
pub(crate) async fn run(options: &Options) -> anyhow::Result<()> {
    report::heading(Section::Calls.title());
    let most = INSTANCE_COUNTS.iter().copied().max().unwrap_or(1);
    // Room in the instance pool for every instance of the largest row.
    let limits = Limits {
        max_awake_websockets: u32::try_from(most)?.saturating_mul(2),
        ..Limits::default()
    };
    let runtime = Runtime::new(&limits)?;
    let plugin = LoadedPlugin::load(&runtime, &plugins::built("echo")?)?;
    let calls = options.call_iterations();
    let mut table = Table::new(
        format!(
            "`on-message` of `echo` with {} B, in process: µs per call, median of {ROUNDS} rounds \
             of {calls} calls",
            MESSAGE.len()
        ),
        &["instances taking turns", "µs per call", "÷ one instance"],
    );
    let mut one = None;
    for count in INSTANCE_COUNTS {
        let per_call = per_call(&plugin, count, calls).await?;
        let baseline = *one.get_or_insert(per_call);
        table.row(vec![
            report::rate(count as f64),
            format!("{:.3}", per_call.as_secs_f64() * 1e6),
            report::ratio(per_call.as_secs_f64() / baseline.as_secs_f64()),
        ]);
    }
    table.note(
        "each instance in its own store, called in turn with call_async (as the host calls \
         events); the message is lowered into the guest, whose send then reaches no connection \
         (unknown-connection)",
    );
    table.print();
    Ok(())
}

/// The median time per call of `calls` calls going round `count` fresh instances, after a
/// warm-up round that touches each of them.
async fn per_call(plugin: &LoadedPlugin, count: usize, calls: usize) -> anyhow::Result<Duration> {
    let live = Arc::new(Gauge::default());
    let mut instances = Vec::with_capacity(count);
    for _ in 0..count {
        instances.push(plugin.instantiate(&live).await?);
    }
    let mut rounds = Vec::with_capacity(ROUNDS);
    for round in 0..=ROUNDS {
        let started = Instant::now();
        for call in 0..calls {
            let Some(instance) = instances.get_mut(call % count) else {
                continue;
            };
            instance
                .on_message(call as u64, MessageRef::Binary(MESSAGE))
                .await?;
        }
        // The first round is the warm-up.
        if round > 0 {
            rounds.push(started.elapsed() / u32::try_from(calls)?);
        }
    }
    Ok(report::median(&rounds))
}
