//! Switchyard's benchmark: measures the host against the physical limit (native Rust servers
//! doing the same work) and a peer (Node's `ws`), and prints one table per section with the
//! targets beside the figures.
//!
//! Run it with `cargo run --release -p switchyard-bench` (add `-- --quick` for a smoke run).
//! The same binary re-executes itself for every server it measures (hidden `role` argument), so
//! each server has a process of its own, pinned to CPU 1, with a clean RSS to read, while the
//! load client runs here, pinned to CPU 0.
//!
//! # Layout
//! - `options`: the command line and the plan it selects (durations, counts).
//! - `affinity`: pinning processes to CPUs and raising the file descriptor limit.
//! - `roles`: the server processes (host, native echo, native broadcast, native hello, Node
//!   `ws` echo and broadcast) and their handles.
//! - `client`: the load generators (WebSocket echo, fan-out rooms, HTTP GET), idle sessions
//!   spread over several loopback source addresses, and latency summaries.
//! - `matrix`, `memory`, `hibernated`, `fanout`, `wake`, `instantiate`, `reload`, `startup`,
//!   `crosshost`, `metrics`, `python`, `tls`, `calls`: one section each.
//! - `report`: tables and number formatting; `machine`: what the figures were taken on.
//! - `plugins`: the plugins folder each host serves.

mod affinity;
mod calls;
mod client;
mod crosshost;
mod fanout;
mod hibernated;
mod instantiate;
mod machine;
mod matrix;
mod memory;
mod metrics;
mod options;
mod plugins;
mod python;
mod reload;
mod report;
mod roles;
mod startup;
mod tls;
mod wake;

use std::process::ExitCode;

use options::{Options, Section};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(role_args) = args.strip_prefix(&[roles::ROLE_ARG.to_owned()]) {
        return roles::run_role(role_args);
    }
    let options = match Options::parse(&args) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{}", options::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("error: {err:#}\n\n{}", options::USAGE);
            return ExitCode::FAILURE;
        }
    };
    match run(&options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every selected section; a failing section is reported and the others still run.
/// Returns whether all of them completed.
fn run(options: &Options) -> anyhow::Result<bool> {
    // The client is measured on its own core, away from the servers on the other.
    affinity::pin_this_process(affinity::CLIENT_CPU)?;
    // A hundred thousand idle sessions need as many sockets here and in the server.
    affinity::raise_fd_limit(options.files_needed())?;
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    machine::print(options);
    let mut all_ok = true;
    for section in options.sections() {
        let result = tokio.block_on(async {
            let local = tokio::task::LocalSet::new();
            local
                .run_until(async {
                    match section {
                        Section::Matrix => matrix::run(options).await,
                        Section::Memory => memory::run(options).await,
                        Section::Hibernated => hibernated::run(options).await,
                        Section::Fanout => fanout::run(options).await,
                        Section::Wake => wake::run(options).await,
                        Section::Instantiate => instantiate::run(options).await,
                        Section::Reload => reload::run(options).await,
                        Section::Startup => startup::run(options).await,
                        Section::Crosshost => crosshost::run(options).await,
                        Section::Metrics => metrics::run(options).await,
                        Section::Python => python::run(options).await,
                        Section::Tls => tls::run(options).await,
                        Section::Calls => calls::run(options).await,
                    }
                })
                .await
        });
        if let Err(err) = result {
            all_ok = false;
            println!("\n{} FAILED: {err:#}", section.title());
        }
    }
    Ok(all_ok)
}
