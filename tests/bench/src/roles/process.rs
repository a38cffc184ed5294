//! A running server process: started, asked for its address (its first line of output),
//! measured through `/proc`, asked questions on its stdin (the host role answers `stats`), and
//! killed when dropped, also when the benchmark fails halfway.

use std::ffi::OsString;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::ROLE_ARG;

/// Longest a server may take to print its address. The host compiles its plugins first, which
/// takes well under a second; Node starts in a fraction of that.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a server may take to answer a question on its stdin.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of output kept unread at most; a server that prints more loses the oldest unread
/// ones (only answers to questions are read, and those come one at a time).
const KEPT_LINES: usize = 64;

/// A server process that is killed when this is dropped.
pub(crate) struct ServerProcess {
    name: String,
    child: KillOnDrop,
    addr: SocketAddr,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl ServerProcess {
    /// Runs this binary in role `role` with `args`.
    pub(crate) fn start_role(name: &str, role: &str, args: &[OsString]) -> anyhow::Result<Self> {
        let mut command = Command::new(std::env::current_exe().context("finding this binary")?);
        command.arg(ROLE_ARG).arg(role).args(args);
        Self::start(name, command)
    }

    /// Spawns `command` and waits for the `host:port` it prints first.
    pub(crate) fn start(name: &str, mut command: Command) -> anyhow::Result<Self> {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = KillOnDrop(
            command
                .spawn()
                .with_context(|| format!("starting the {name} server"))?,
        );
        let stdout = child.0.stdout.take().context("the child's stdout")?;
        let stdin = child.0.stdin.take();
        let (first_line, ready) = mpsc::channel();
        let (later_lines, lines) = mpsc::sync_channel(KEPT_LINES);
        // A thread, so the wait can time out; it then reads the rest of the output line by line
        // (answers to questions), so the server never blocks on a full pipe: lines nobody waits
        // for are dropped once `KEPT_LINES` are queued.
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let read = reader.read_line(&mut line).map(|_| line);
            let _ = first_line.send(read);
            for line in reader.lines() {
                let Ok(line) = line else { break };
                match later_lines.try_send(line) {
                    Ok(()) | Err(mpsc::TrySendError::Full(_)) => {}
                    Err(mpsc::TrySendError::Disconnected(_)) => break,
                }
            }
        });
        let line = match ready.recv_timeout(READY_TIMEOUT) {
            Ok(read) => read.with_context(|| format!("reading the {name} server's output"))?,
            Err(_) => bail!("the {name} server printed no address within {READY_TIMEOUT:?}"),
        };
        let addr = line.trim().parse().map_err(|_| {
            let status = child.0.try_wait().ok().flatten();
            anyhow::anyhow!(
                "the {name} server printed {:?} instead of its address (exit status: {status:?})",
                line.trim()
            )
        })?;
        Ok(Self {
            name: name.to_owned(),
            child,
            addr,
            stdin,
            lines,
        })
    }

    /// Sends `question` as a line on the server's stdin and returns the first line it prints
    /// that starts with the same word (earlier output is skipped).
    pub(crate) fn ask(&mut self, question: &str) -> anyhow::Result<String> {
        let stdin = self
            .stdin
            .as_mut()
            .with_context(|| format!("the {} server's stdin is closed", self.name))?;
        writeln!(stdin, "{question}")
            .and_then(|()| stdin.flush())
            .with_context(|| format!("asking the {} server {question:?}", self.name))?;
        let word = question.split_whitespace().next().unwrap_or_default();
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.split_whitespace().next() == Some(word) => return Ok(line),
                Ok(_) => {}
                Err(_) => bail!(
                    "the {} server did not answer {question:?} within {ANSWER_TIMEOUT:?}",
                    self.name
                ),
            }
        }
    }

    /// Where it accepts connections.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its resident memory now (`VmRSS`), in bytes. A page mapped several times (the plugin's
    /// copy-on-write data image, shared by every instance) counts once per mapping.
    pub(crate) fn rss_bytes(&self) -> anyhow::Result<u64> {
        self.kib_field("status", "VmRSS:")
    }

    /// Its proportional set size (`Pss`), in bytes: each shared page divided among the
    /// mappings that share it, which is what the memory really costs.
    pub(crate) fn pss_bytes(&self) -> anyhow::Result<u64> {
        self.kib_field("smaps_rollup", "Pss:")
    }

    /// The shared-memory part of its RSS (`RssShmem`), in bytes: pages of a memfd or tmpfs it
    /// maps, counted once per mapping like the rest of RSS.
    pub(crate) fn rss_shared_bytes(&self) -> anyhow::Result<u64> {
        self.kib_field("status", "RssShmem:")
    }

    /// Reads the `field` line (in kB) of `/proc/<pid>/<file>`, in bytes.
    fn kib_field(&self, file: &str, field: &str) -> anyhow::Result<u64> {
        let path = format!("/proc/{}/{file}", self.child.0.id());
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        text.lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|value| value.trim().strip_suffix("kB"))
            .and_then(|kib| kib.trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .with_context(|| format!("no {field} line in {path}"))
    }

    /// Fails if the process has exited (it crashed or was killed by the kernel).
    pub(crate) fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.0.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!("the {} server exited: {status}", self.name),
            Err(err) => bail!("cannot check the {} server: {err}", self.name),
        }
    }
}

/// Owns the child process; kills and reaps it on drop.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Killing an exited child fails harmlessly; wait reaps it either way.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
