//! The `sandbox` case: tries, for real, to reach what the host must keep from a plugin (its
//! files, its environment and arguments, the network) and reports each attempt.
//!
//! The report has one line per probe, `<probe>: <outcome>`. A refused attempt reads
//! `denied (<error>)`; anything that got through reads `ALLOWED (<what it got>)`, so a test can
//! look for that one word. The environment and argument probes print `0` or `absent` when the
//! host handed over nothing.

use std::fmt;
use std::io::ErrorKind;
use std::net::{TcpStream, ToSocketAddrs};
use std::{env, fs};

/// How many names a probe lists when something got through; enough to recognise them.
const SHOWN: usize = 5;

/// What one probe found.
enum Outcome {
    /// The attempt was refused, with the error the guest saw.
    Denied(String),
    /// The attempt got through, with what it got.
    Allowed(String),
    /// The host handed over nothing, which is the expected answer (`0`, `absent`).
    Nothing(&'static str),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Denied(error) => write!(f, "denied ({error})"),
            Self::Allowed(got) => write!(f, "ALLOWED ({got})"),
            Self::Nothing(what) => f.write_str(what),
        }
    }
}

/// A probe: the label its report line starts with, and the attempt itself.
type Probe = (&'static str, fn() -> Outcome);

/// Every probe, in report order. Tests match on the labels, so they are part of the contract.
const PROBES: [Probe; 7] = [
    ("read /etc/passwd", read_passwd),
    ("list /", list_root),
    ("env vars", env_vars),
    ("env HOME", env_home),
    ("args", args),
    ("tcp connect 127.0.0.1:80", tcp_connect),
    ("dns localhost", dns_localhost),
];

/// Runs every probe and returns the report, one line per probe.
pub(crate) fn report() -> String {
    PROBES
        .into_iter()
        .map(|(label, probe)| format!("{label}: {}\n", probe()))
        .collect()
}

/// Reads a host file by absolute path, as a plugin after secrets would.
fn read_passwd() -> Outcome {
    match fs::read_to_string("/etc/passwd") {
        Ok(text) => Outcome::Allowed(format!(
            "{} bytes, first line {:?}",
            text.len(),
            text.lines().next().unwrap_or("")
        )),
        Err(error) => Outcome::Denied(error.to_string()),
    }
}

/// Lists the root directory, to see whether any of the host's file system is visible.
fn list_root() -> Outcome {
    match fs::read_dir("/") {
        Ok(entries) => {
            let names: Vec<String> = entries
                .map(|entry| match entry {
                    Ok(entry) => entry.file_name().to_string_lossy().into_owned(),
                    Err(error) => format!("<{error}>"),
                })
                .collect();
            Outcome::Allowed(format!("{} entries: {}", names.len(), shown(&names)))
        }
        Err(error) => Outcome::Denied(error.to_string()),
    }
}

/// Counts the environment variables; the `_os` form, so a non-Unicode value cannot panic the
/// probe before it reports.
fn env_vars() -> Outcome {
    let names: Vec<String> = env::vars_os()
        .map(|(name, _)| name.to_string_lossy().into_owned())
        .collect();
    if names.is_empty() {
        Outcome::Nothing("0")
    } else {
        Outcome::Allowed(format!("{}: {}", names.len(), shown(&names)))
    }
}

/// Looks up `HOME`, the variable most likely to be inherited from the host.
fn env_home() -> Outcome {
    match env::var_os("HOME") {
        Some(home) => Outcome::Allowed(format!("{:?}", home.to_string_lossy())),
        None => Outcome::Nothing("absent"),
    }
}

/// Counts the program arguments, which would show the host's command line if it passed its own.
fn args() -> Outcome {
    let args: Vec<String> = env::args_os()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    if args.is_empty() {
        Outcome::Nothing("0")
    } else {
        Outcome::Allowed(format!("{}: {}", args.len(), shown(&args)))
    }
}

/// Opens a TCP connection to the host's own port 80.
///
/// An error that could only come from the network (refused, unreachable, timed out) means the
/// socket was let out and merely found nobody listening, so it counts as allowed: only a refusal
/// by the sandbox itself counts as denied.
fn tcp_connect() -> Outcome {
    match TcpStream::connect("127.0.0.1:80") {
        Ok(stream) => Outcome::Allowed(match stream.peer_addr() {
            Ok(peer) => format!("connected to {peer}"),
            Err(_) => "connected".to_owned(),
        }),
        Err(error) if reached_network(error.kind()) => {
            Outcome::Allowed(format!("the attempt went out: {error}"))
        }
        Err(error) => Outcome::Denied(error.to_string()),
    }
}

/// Whether a connect error can only have come from a socket that really went out.
fn reached_network(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::ConnectionRefused
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::TimedOut
            | ErrorKind::HostUnreachable
            | ErrorKind::NetworkUnreachable
    )
}

/// Resolves a host name, which needs the host's resolver.
fn dns_localhost() -> Outcome {
    match "localhost:80".to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<String> = addrs.map(|addr| addr.to_string()).collect();
            Outcome::Allowed(format!("{} addresses: {}", addrs.len(), shown(&addrs)))
        }
        Err(error) => Outcome::Denied(error.to_string()),
    }
}

/// The first few of `items`, quoted and comma-separated, with `...` if there are more.
///
/// Quoted so that whatever a leaked name contains (a newline, say) stays on its probe's line.
fn shown(items: &[String]) -> String {
    let mut text = items
        .iter()
        .take(SHOWN)
        .map(|item| format!("{item:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        text.push_str(", ...");
    }
    text
}
