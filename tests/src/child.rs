//! [`ChildProcess`]: an external program the tests run (redis-server, nginx, a `switchyard`
//! process), with every line it prints kept for assertions, and stopped when dropped — also
//! when a test panics — so no test leaves a process behind.

use std::io::{BufRead as _, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long a process may take to exit after SIGTERM before it is killed. Generous enough for a
/// host draining its (test-sized) sessions.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often waits look again.
const POLL: Duration = Duration::from_millis(10);
/// Lines kept per process at most; the oldest are dropped beyond it, so a chatty process
/// cannot grow the test's memory without bound.
const KEPT_LINES: usize = 100_000;

/// A running program, stopped (SIGTERM, then SIGKILL after [`STOP_TIMEOUT`]) when dropped.
pub struct ChildProcess {
    name: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl ChildProcess {
    /// Spawns `command` named `name` (for messages), collecting its stdout and stderr lines.
    pub fn spawn(name: &str, mut command: Command) -> Self {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|err| panic!("starting {name} ({command:?}): {err}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        if let Some(stdout) = child.stdout.take() {
            collect(stdout, lines.clone());
        }
        if let Some(stderr) = child.stderr.take() {
            collect(stderr, lines.clone());
        }
        Self {
            name: name.to_owned(),
            child,
            lines,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every line printed so far that contains `needle`.
    pub fn lines_containing(&self, needle: &str) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .iter()
            .filter(|line| line.contains(needle))
            .cloned()
            .collect()
    }

    /// Every line printed so far.
    pub fn output(&self) -> String {
        self.lines
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .join("\n")
    }

    /// Waits until the process has printed a line containing `needle` and returns it; panics
    /// (showing the output) after `within`, or at once if the process exits first.
    pub fn wait_for_line(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(line) = self.lines_containing(needle).into_iter().next() {
                return line;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader threads take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "{} exited ({status}) without printing {needle:?}:\n{}",
                    self.name,
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} printed no {needle:?} within {within:?}:\n{}",
                self.name,
                self.output()
            );
            std::thread::sleep(POLL);
        }
    }

    /// Like [`Self::wait_for_line`] without blocking the async runtime's thread.
    pub async fn wait_for_line_async(&self, needle: &str, within: Duration) -> String {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(line) = self.lines_containing(needle).into_iter().next() {
                return line;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} printed no {needle:?} within {within:?}:\n{}",
                self.name,
                self.output()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Kills the process at once (SIGKILL), as a crash would, and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the process: SIGTERM, then SIGKILL if it has not exited within [`STOP_TIMEOUT`].
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(POLL);
        }
        eprintln!(
            "{} did not exit within {STOP_TIMEOUT:?} of SIGTERM; killing it",
            self.name
        );
        self.kill();
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads `stream` line by line into `lines` on a thread of its own, until the process closes it.
fn collect(stream: impl Read + Send + 'static, lines: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let mut lines = lines.lock().unwrap_or_else(|poison| poison.into_inner());
            if lines.len() >= KEPT_LINES {
                lines.remove(0);
            }
            lines.push(line);
        }
    });
}

/// A loopback address with a port that was free a moment ago (the kernel chose it); for
/// programs that must be told their port rather than report one.
pub fn free_loopback_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    listener.local_addr().expect("the bound address")
}

/// Waits until something accepts TCP connections at `addr`; panics after `within`.
pub fn wait_until_listening(name: &str, addr: SocketAddr, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} is not listening on {addr} after {within:?}"
        );
        std::thread::sleep(POLL);
    }
}
