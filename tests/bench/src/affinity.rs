//! Where processes run: the load client on one core, every server on the other, so neither
//! steals the other's CPU and the figures compare servers on equal footing. Also raises the
//! open-file limit for the hundred thousand idle sessions.

use anyhow::Context as _;
use nix::sched::{CpuSet, sched_setaffinity};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::unistd::Pid;

/// The core the load client (this process) runs on.
pub(crate) const CLIENT_CPU: usize = 0;
/// The core every measured server runs on.
pub(crate) const SERVER_CPU: usize = 1;

/// Pins the calling thread, and so every thread it starts afterwards, to `cpu`. Call it first
/// thing in a process, before any runtime starts its threads. Where `cpu` cannot be used (a
/// one-core machine or container), falls back to CPU 0, so client and servers share it.
pub(crate) fn pin_this_process(cpu: usize) -> anyhow::Result<usize> {
    // The core count is not taken from `available_parallelism`: it honours the affinity mask a
    // pinned parent passes down, and would always say 1 in a server.
    match pin(cpu) {
        Ok(()) => Ok(cpu),
        Err(err) if cpu != 0 => {
            eprintln!("warning: cannot pin to CPU {cpu} ({err:#}); using CPU 0");
            pin(0).map(|()| 0)
        }
        Err(err) => Err(err),
    }
}

fn pin(cpu: usize) -> anyhow::Result<()> {
    run_on(cpu..cpu + 1).with_context(|| format!("pinning to CPU {cpu}"))
}

/// Moves every thread of the running process `pid` to `cpu`: for a server this benchmark did
/// not start through its own roles (redis-server), which inherited the client's core.
pub(crate) fn pin_other_process(pid: u32, cpu: usize) -> anyhow::Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu)
        .with_context(|| format!("CPU {cpu} is out of range"))?;
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .with_context(|| format!("listing the threads of process {pid}"))?;
    for task in tasks {
        let tid: i32 = task?
            .file_name()
            .to_string_lossy()
            .parse()
            .context("a thread id")?;
        sched_setaffinity(Pid::from_raw(tid), &set)
            .with_context(|| format!("pinning thread {tid} of process {pid} to CPU {cpu}"))?;
    }
    Ok(())
}

/// Lets the calling thread, and every thread it starts afterwards, run on every online core
/// again: a server inherits the client's pinning from the process that spawned it.
pub(crate) fn unpin_this_process() -> anyhow::Result<()> {
    run_on(0..online_cpus()).context("unpinning")
}

/// Restricts the calling thread to `cpus`; threads inherit its mask when they are created.
fn run_on(cpus: std::ops::Range<usize>) -> anyhow::Result<()> {
    let mut set = CpuSet::new();
    for cpu in cpus {
        set.set(cpu)
            .with_context(|| format!("CPU {cpu} is out of range"))?;
    }
    // Pid 0 is the calling thread.
    Ok(sched_setaffinity(Pid::from_raw(0), &set)?)
}

/// CPUs online, whatever this process is pinned to.
pub(crate) fn online_cpus() -> usize {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|info| {
            info.lines()
                .filter(|line| line.starts_with("processor"))
                .count()
        })
        .unwrap_or(0)
        .max(1)
}

/// Raises the limit on open files so this process and the servers it starts (which inherit it)
/// can hold `wanted` each: the soft limit to the hard one, and the hard one too if it is lower
/// than `wanted` (up to the kernel's `fs.nr_open`), which needs root with `CAP_SYS_RESOURCE`.
/// Where the hard limit cannot be raised the soft one still is; the sections that need more
/// then say so. Returns the soft limit in force.
pub(crate) fn raise_fd_limit(wanted: u64) -> anyhow::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("reading RLIMIT_NOFILE")?;
    let ceiling = read_u64("/proc/sys/fs/nr_open").unwrap_or(hard);
    let target = wanted.min(ceiling);
    if hard < target && setrlimit(Resource::RLIMIT_NOFILE, target, target).is_ok() {
        return Ok(target);
    }
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).context("raising RLIMIT_NOFILE")?;
    }
    Ok(fd_limit())
}

/// A number in a `/proc` file.
fn read_u64(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The soft limit on open files, to tell the user why a large section cannot run.
pub(crate) fn fd_limit() -> u64 {
    fd_limits().0
}

/// The soft and hard limits on open files.
pub(crate) fn fd_limits() -> (u64, u64) {
    getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((0, 0))
}
