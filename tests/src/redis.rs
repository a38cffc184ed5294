//! [`RedisServer`]: a real `redis-server` (Debian's package, installed by
//! `tests/services/setup.sh`) on a free loopback port, without persistence, in a temp folder,
//! that a test can kill and restart on the same port to play a broker outage.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::child::{ChildProcess, free_loopback_addr, wait_until_listening};

/// Where Debian's package puts the server.
pub const REDIS_SERVER: &str = "/usr/bin/redis-server";
/// Longest redis-server may take to accept connections; it starts in milliseconds.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running redis-server, stopped when dropped.
pub struct RedisServer {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    process: Option<ChildProcess>,
}

impl RedisServer {
    /// Starts a redis-server on a free loopback port.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("a folder for redis-server");
        let addr = free_loopback_addr();
        let process = Some(spawn(addr, dir.path()));
        Self { addr, dir, process }
    }

    /// A server that is not running yet, with its port chosen: for a host that must start
    /// while Redis is down. [`Self::restart`] starts it.
    pub fn not_started() -> Self {
        let dir = tempfile::tempdir().expect("a folder for redis-server");
        Self {
            addr: free_loopback_addr(),
            dir,
            process: None,
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its URL, as `--pubsub` takes it.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Kills the server (SIGKILL: an outage, not a shutdown); every client connection drops.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Starts the server again on the same port (after [`Self::kill`] or
    /// [`Self::not_started`]); it starts empty, as no state is persisted.
    pub fn restart(&mut self) {
        self.kill();
        self.process = Some(spawn(self.addr, self.dir.path()));
    }

    /// Runs one command with `redis-cli` against this server and returns its output, e.g.
    /// `PUBSUB CHANNELS` to see what the hosts subscribed to.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-h", &self.addr.ip().to_string()])
            .args(["-p", &self.addr.port().to_string()])
            .args(args)
            .output()
            .expect("running redis-cli");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

/// Starts redis-server on `addr` in `dir` with nothing saved to disk, and waits until it
/// accepts connections.
fn spawn(addr: SocketAddr, dir: &Path) -> ChildProcess {
    let mut command = Command::new(REDIS_SERVER);
    command
        .current_dir(dir)
        .args(["--bind", &addr.ip().to_string()])
        .args(["--port", &addr.port().to_string()])
        .args(["--save", ""])
        .args(["--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .args(["--daemonize", "no"])
        .args(["--protected-mode", "yes"])
        .args(["--loglevel", "notice"]);
    let mut process = ChildProcess::spawn("redis-server", command);
    process.wait_for_line("Ready to accept connections", START_TIMEOUT);
    wait_until_listening("redis-server", addr, START_TIMEOUT);
    process
}
