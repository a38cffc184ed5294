//! The command line (`--quick`, `--seconds N`, `--only …`, `--sessions …`) and the plan it
//! selects: how long each load runs and how many sessions, members, iterations and runs each
//! section uses.

use std::time::Duration;

use anyhow::{Context as _, bail};

/// What `--help` prints.
pub(crate) const USAGE: &str = "\
usage: switchyard-bench [--quick] [--seconds N] [--only SECTION[,SECTION…]] [--sessions N[,N…]]

  --quick          a short smoke run: 1 s per load, fewer sessions, iterations and runs
  --seconds N      measured seconds per load (default 5; 1 with --quick)
  --only LIST      run only these sections: matrix, memory, hibernated, fanout, wake,
                   instantiate, reload, startup, crosshost, metrics, python, tls, calls
  --sessions LIST  hibernated session counts to measure (default 10000,100000;
                   1000,5000 with --quick)";

/// Publishes per second of the scale-out section's latency load (the rate).
pub(crate) const CROSSHOST_RATE: u64 = 1_000;
/// Measured seconds per load row unless `--seconds` says otherwise.
const DEFAULT_SECONDS: u64 = 5;
/// Longest `--seconds` accepted, so a typo cannot start an hour-long run.
const MAX_SECONDS: u64 = 120;
/// Hibernated session counts measured unless `--sessions` says otherwise: the two.
const HIBERNATED_SESSIONS: [usize; 2] = [10_000, 100_000];
/// The same for `--quick`.
const QUICK_HIBERNATED_SESSIONS: [usize; 2] = [1_000, 5_000];
/// Most sessions `--sessions` accepts for one count: a million is what the kernel's
/// `fs.nr_open` allows one process here, and far past what one load client can open in time.
const MAX_SESSIONS: usize = 1_000_000;

/// One part of the benchmark, printed as its own table(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    /// WebSocket echo: plugin vs native vs Node.
    Matrix,
    /// Memory per idle upgraded (raw) session.
    Memory,
    /// Memory per hibernated managed session, at 10,000 and 100,000 sessions.
    Hibernated,
    /// One publish to every member of a room of 1,000 and of 10,000.
    Fanout,
    /// The first message after hibernation against a warm session's.
    Wake,
    /// Instantiate + `handle`, and plain HTTP requests/s.
    Instantiate,
    /// Hot-reload latency.
    Reload,
    /// Start-up time to the first served request.
    Startup,
    /// Two hosts sharing topics through Redis: cross-host latency, split fan-out.
    Crosshost,
    /// The echo matrix with and without the admin listener (scraped every second).
    Metrics,
    /// Python plugins: instance + `handle`, managed echo, hibernated memory, build time.
    Python,
    /// WebSocket echo over TLS: the managed plugin against native tokio-rustls.
    Tls,
    /// One `on-message` call in process, against how many instances the calls take turns on.
    Calls,
}

impl Section {
    const ALL: [Section; 13] = [
        Section::Matrix,
        Section::Memory,
        Section::Hibernated,
        Section::Fanout,
        Section::Wake,
        Section::Instantiate,
        Section::Reload,
        Section::Startup,
        Section::Crosshost,
        Section::Metrics,
        Section::Python,
        Section::Tls,
        Section::Calls,
    ];

    fn name(self) -> &'static str {
        match self {
            Section::Matrix => "matrix",
            Section::Memory => "memory",
            Section::Hibernated => "hibernated",
            Section::Fanout => "fanout",
            Section::Wake => "wake",
            Section::Instantiate => "instantiate",
            Section::Reload => "reload",
            Section::Startup => "startup",
            Section::Crosshost => "crosshost",
            Section::Metrics => "metrics",
            Section::Python => "python",
            Section::Tls => "tls",
            Section::Calls => "calls",
        }
    }

    /// The heading its table is printed under.
    pub(crate) fn title(self) -> &'static str {
        match self {
            Section::Matrix => "1. WebSocket echo: managed and raw plugin, native, Node",
            Section::Memory => "2. Memory per idle upgraded (raw) session",
            Section::Hibernated => "3. Memory per hibernated managed session",
            Section::Fanout => "4. Fan-out: one publish to every member of a room",
            Section::Wake => "5. First message after hibernation",
            Section::Instantiate => "6. Instantiate + handle, plain HTTP",
            Section::Reload => "7. Hot reload",
            Section::Startup => "8. Start-up to first served request",
            Section::Crosshost => "9. Scale-out: two hosts sharing topics through Redis",
            Section::Metrics => "10. Metrics: the managed echo with and without the admin listener",
            Section::Python => "11. Python plugins (componentize-py) beside their Rust twins",
            Section::Tls => "12. WebSocket echo over TLS: managed plugin and native tokio-rustls",
            Section::Calls => "13. One on-message call against the number of instances",
        }
    }
}

/// The parsed command line.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// A smoke run: short loads, small counts.
    pub(crate) quick: bool,
    /// Measured time per load row.
    pub(crate) measure: Duration,
    only: Option<Vec<Section>>,
    sessions: Option<Vec<usize>>,
}

impl Options {
    /// Parses the arguments after the program name; `None` means `--help` was asked for.
    pub(crate) fn parse(args: &[String]) -> anyhow::Result<Option<Self>> {
        let mut quick = false;
        let mut seconds = None;
        let mut only = None;
        let mut sessions = None;
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => quick = true,
                "--seconds" => {
                    let value = args.next().context("--seconds needs a number")?;
                    let value: u64 = value
                        .parse()
                        .with_context(|| format!("--seconds {value:?} is not a whole number"))?;
                    if !(1..=MAX_SECONDS).contains(&value) {
                        bail!("--seconds must be between 1 and {MAX_SECONDS}");
                    }
                    seconds = Some(value);
                }
                "--only" => {
                    let list = args.next().context("--only needs a list of sections")?;
                    only = Some(parse_sections(list)?);
                }
                "--sessions" => {
                    let list = args.next().context("--sessions needs a list of counts")?;
                    sessions = Some(parse_counts(list)?);
                }
                "-h" | "--help" => return Ok(None),
                other => bail!("unknown argument {other:?}"),
            }
        }
        let seconds = seconds.unwrap_or(if quick { 1 } else { DEFAULT_SECONDS });
        Ok(Some(Self {
            quick,
            measure: Duration::from_secs(seconds),
            only,
            sessions,
        }))
    }

    /// The sections to run, in order.
    pub(crate) fn sections(&self) -> Vec<Section> {
        Section::ALL
            .into_iter()
            .filter(|section| self.only.as_ref().is_none_or(|only| only.contains(section)))
            .collect()
    }

    /// Load before the measured window, so connections, caches and the JIT'd code are warm.
    pub(crate) fn warmup(&self) -> Duration {
        if self.quick {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(1)
        }
    }

    /// Idle sessions opened for the memory figure.
    pub(crate) fn idle_sessions(&self) -> usize {
        if self.quick { 1_000 } else { 10_000 }
    }

    /// Hibernated session counts to measure, smallest first.
    pub(crate) fn hibernated_sessions(&self) -> Vec<usize> {
        let mut counts = self.sessions.clone().unwrap_or_else(|| {
            if self.quick {
                QUICK_HIBERNATED_SESSIONS.to_vec()
            } else {
                HIBERNATED_SESSIONS.to_vec()
            }
        });
        counts.sort_unstable();
        counts.dedup();
        counts
    }

    /// Open files this run needs in the client and in each server: one per session of the
    /// largest section, plus room for everything else a process opens.
    pub(crate) fn files_needed(&self) -> u64 {
        /// Files beyond one per session: runtime, pipes, stdio, the plugins folder.
        const MARGIN: u64 = 1_024;
        let sections = self.sections();
        let hibernated = if sections.contains(&Section::Hibernated) {
            self.hibernated_sessions().into_iter().max().unwrap_or(0)
        } else {
            0
        };
        // A room on each of the three fan-out servers at once, so their rounds can alternate.
        let fanout = if sections.contains(&Section::Fanout) {
            3 * self.fanout_rooms().into_iter().max().unwrap_or(0)
        } else {
            0
        };
        let memory = if sections.contains(&Section::Memory) {
            self.idle_sessions()
        } else {
            0
        };
        // One room at a time: on one host, then split over two.
        let crosshost = if sections.contains(&Section::Crosshost) {
            self.crosshost_members()
        } else {
            0
        };
        let most = hibernated.max(fanout).max(memory).max(crosshost);
        u64::try_from(most)
            .unwrap_or(u64::MAX)
            .saturating_add(MARGIN)
    }

    /// Members of the rooms the fan-out section measures, one room each.
    pub(crate) fn fanout_rooms(&self) -> Vec<usize> {
        if self.quick {
            vec![100, 1_000]
        } else {
            vec![1_000, 10_000]
        }
    }

    /// Measured publishes per room (each waits for its last delivery before the next).
    pub(crate) fn fanout_rounds(&self, members: usize) -> usize {
        match (self.quick, members > 1_000) {
            (true, _) => 20,
            (false, false) => 200,
            (false, true) => 100,
        }
    }

    /// Messages published on one host and timed to the other in the scale-out section, at
    /// [`CROSSHOST_RATE`] per second.
    pub(crate) fn crosshost_messages(&self) -> usize {
        if self.quick { 1_000 } else { 10_000 }
    }

    /// Members of the scale-out section's room, split over two hosts (and on one host for
    /// the baseline).
    pub(crate) fn crosshost_members(&self) -> usize {
        if self.quick { 1_000 } else { 10_000 }
    }

    /// Measured publishes per room in the scale-out section's fan-out.
    pub(crate) fn crosshost_rounds(&self) -> usize {
        if self.quick { 20 } else { 100 }
    }

    /// Sessions whose first message after hibernation is timed, each once per cycle.
    pub(crate) fn wake_sessions(&self) -> usize {
        if self.quick { 100 } else { 300 }
    }

    /// Times every session of the wake section is left to hibernate and woken again.
    pub(crate) fn wake_cycles(&self) -> usize {
        if self.quick { 1 } else { 3 }
    }

    /// Measured instantiate + `handle` iterations.
    pub(crate) fn instantiate_iterations(&self) -> usize {
        if self.quick { 500 } else { 5_000 }
    }

    /// `on-message` calls timed per round of the calls section.
    pub(crate) fn call_iterations(&self) -> usize {
        if self.quick { 20_000 } else { 200_000 }
    }

    /// Hot reloads timed.
    pub(crate) fn reload_runs(&self) -> usize {
        if self.quick { 2 } else { 5 }
    }

    /// Host start-ups timed.
    pub(crate) fn startup_runs(&self) -> usize {
        if self.quick { 1 } else { 3 }
    }
}

fn parse_sections(list: &str) -> anyhow::Result<Vec<Section>> {
    list.split(',')
        .map(|name| {
            let name = name.trim();
            Section::ALL
                .into_iter()
                .find(|section| section.name() == name)
                .with_context(|| format!("unknown section {name:?}"))
        })
        .collect()
}

fn parse_counts(list: &str) -> anyhow::Result<Vec<usize>> {
    list.split(',')
        .map(|count| {
            let count = count.trim().replace('_', "");
            let value: usize = count
                .parse()
                .with_context(|| format!("session count {count:?} is not a whole number"))?;
            if !(1..=MAX_SESSIONS).contains(&value) {
                bail!("a session count must be between 1 and {MAX_SESSIONS}");
            }
            Ok(value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Option<Options>> {
        let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        Options::parse(&args)
    }

    #[test]
    fn defaults_and_quick() {
        let full = parse(&[]).unwrap().unwrap();
        assert_eq!(full.measure, Duration::from_secs(5));
        assert_eq!(full.sections().len(), 13);
        assert_eq!(full.hibernated_sessions(), vec![10_000, 100_000]);
        assert!(full.files_needed() > 100_000);
        let quick = parse(&["--quick"]).unwrap().unwrap();
        assert_eq!(quick.measure, Duration::from_secs(1));
        let longer = parse(&["--quick", "--seconds", "3"]).unwrap().unwrap();
        assert_eq!(longer.measure, Duration::from_secs(3));
        let crosshost = parse(&["--only", "crosshost"]).unwrap().unwrap();
        assert_eq!(crosshost.sections(), vec![Section::Crosshost]);
        assert!(crosshost.files_needed() > 10_000);
    }

    #[test]
    fn only_selects_sections_in_order() {
        let options = parse(&["--only", "startup,matrix"]).unwrap().unwrap();
        assert_eq!(options.sections(), vec![Section::Matrix, Section::Startup]);
        assert!(parse(&["--only", "nope"]).is_err());
        assert!(parse(&["--seconds", "0"]).is_err());
        assert!(parse(&["--frobnicate"]).is_err());
        assert!(parse(&["--help"]).unwrap().is_none());
    }

    #[test]
    fn sessions_list_and_the_files_it_needs() {
        let options = parse(&["--only", "hibernated", "--sessions", "20_000,5000,5000"])
            .unwrap()
            .unwrap();
        assert_eq!(options.hibernated_sessions(), vec![5_000, 20_000]);
        assert!((20_000..30_000).contains(&options.files_needed()));
        let matrix_only = parse(&["--only", "matrix"]).unwrap().unwrap();
        assert!(matrix_only.files_needed() < 10_000);
        assert!(parse(&["--sessions", "0"]).is_err());
        assert!(parse(&["--sessions", "ten"]).is_err());
        assert!(parse(&["--sessions"]).is_err());
    }
}
