//! The command line (`--quick`, `--seconds N`, `--only …`) and the plan it selects: how long
//! each load runs and how many sessions, iterations and runs each section uses.

use std::time::Duration;

use anyhow::{Context as _, bail};

/// What `--help` prints.
pub(crate) const USAGE: &str = "\
usage: switchyard-bench [--quick] [--seconds N] [--only SECTION[,SECTION…]]

  --quick        a short smoke run: 1 s per load, fewer sessions, iterations and runs
  --seconds N    measured seconds per load (default 5; 1 with --quick)
  --only LIST    run only these sections: matrix, memory, instantiate, reload, startup";

/// Measured seconds per load row unless `--seconds` says otherwise.
const DEFAULT_SECONDS: u64 = 5;
/// Longest `--seconds` accepted, so a typo cannot start an hour-long run.
const MAX_SECONDS: u64 = 120;

/// One part of the benchmark, printed as its own table(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    /// WebSocket echo: plugin vs native vs Node.
    Matrix,
    /// Memory per idle upgraded session.
    Memory,
    /// Instantiate + `handle`, and plain HTTP requests/s.
    Instantiate,
    /// Hot-reload latency.
    Reload,
    /// Start-up time to the first served request.
    Startup,
}

impl Section {
    const ALL: [Section; 5] = [
        Section::Matrix,
        Section::Memory,
        Section::Instantiate,
        Section::Reload,
        Section::Startup,
    ];

    fn name(self) -> &'static str {
        match self {
            Section::Matrix => "matrix",
            Section::Memory => "memory",
            Section::Instantiate => "instantiate",
            Section::Reload => "reload",
            Section::Startup => "startup",
        }
    }

    /// The heading its table is printed under.
    pub(crate) fn title(self) -> &'static str {
        match self {
            Section::Matrix => "1. WebSocket echo",
            Section::Memory => "2. Memory per idle upgraded session",
            Section::Instantiate => "3. Instantiate + handle, plain HTTP",
            Section::Reload => "4. Hot reload",
            Section::Startup => "5. Start-up to first served request",
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
}

impl Options {
    /// Parses the arguments after the program name; `None` means `--help` was asked for.
    pub(crate) fn parse(args: &[String]) -> anyhow::Result<Option<Self>> {
        let mut quick = false;
        let mut seconds = None;
        let mut only = None;
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
                "-h" | "--help" => return Ok(None),
                other => bail!("unknown argument {other:?}"),
            }
        }
        let seconds = seconds.unwrap_or(if quick { 1 } else { DEFAULT_SECONDS });
        Ok(Some(Self {
            quick,
            measure: Duration::from_secs(seconds),
            only,
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

    /// Measured instantiate + `handle` iterations.
    pub(crate) fn instantiate_iterations(&self) -> usize {
        if self.quick { 500 } else { 5_000 }
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
        assert_eq!(full.sections().len(), 5);
        let quick = parse(&["--quick"]).unwrap().unwrap();
        assert_eq!(quick.measure, Duration::from_secs(1));
        let longer = parse(&["--quick", "--seconds", "3"]).unwrap().unwrap();
        assert_eq!(longer.measure, Duration::from_secs(3));
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
}
