//! What the figures were taken on: CPU, cores, kernel, the kernel limits that cap sessions
//! (mappings, open files, listen backlog, ephemeral ports), the commit, and how the run was set
//! up. Printed first, so a pasted table carries its context.

use std::process::Command;

use crate::affinity;
use crate::options::Options;

/// Prints what the run is on, one `name  value` line each.
pub(crate) fn print(options: &Options) {
    let rows = [
        ("CPU", cpu_model()),
        ("cores", affinity::online_cpus().to_string()),
        ("kernel", read_trimmed("/proc/sys/kernel/osrelease")),
        (
            "vm.max_map_count",
            read_trimmed("/proc/sys/vm/max_map_count"),
        ),
        ("open files limit", open_files()),
        ("fs.nr_open", read_trimmed("/proc/sys/fs/nr_open")),
        (
            "net.core.somaxconn",
            read_trimmed("/proc/sys/net/core/somaxconn"),
        ),
        (
            "ephemeral ports",
            read_trimmed("/proc/sys/net/ipv4/ip_local_port_range").replace('\t', "–"),
        ),
        ("commit", git_commit()),
        ("run", run_line(options)),
    ];
    let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    println!("Switchyard benchmark");
    for (name, value) in rows {
        println!("  {name:<width$}  {value}");
    }
}

fn run_line(options: &Options) -> String {
    let placement = if affinity::online_cpus() > affinity::SERVER_CPU {
        format!(
            "client on CPU {}, servers on CPU {}",
            affinity::CLIENT_CPU,
            affinity::SERVER_CPU
        )
    } else {
        "one CPU: client and servers share it, so ratios are rough".to_owned()
    };
    format!(
        "{}{} s measured per load after {} ms warm-up; {placement}",
        if options.quick { "quick, " } else { "" },
        options.measure.as_secs(),
        options.warmup().as_millis(),
    )
}

/// The soft limit, and the hard one when it differs.
fn open_files() -> String {
    let (soft, hard) = affinity::fd_limits();
    if soft == hard {
        soft.to_string()
    } else {
        format!("{soft} (hard {hard})")
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .and_then(|rest| rest.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map_or_else(|_| "unknown".into(), |text| text.trim().to_owned())
}

/// The workspace's `HEAD`, marked `+changes` when the work tree differs from it.
fn git_commit() -> String {
    let workspace = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(workspace)
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(commit) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|status| !status.is_empty());
            if dirty {
                format!("{commit} +changes")
            } else {
                commit
            }
        }
        None => "unknown (no git)".into(),
    }
}
