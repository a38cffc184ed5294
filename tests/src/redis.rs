//! [`RedisServer`]: a real `redis-server` process (Debian package `redis-server`, installed by
//! `tests/services/setup.sh`) on a free loopback port, for tests of topics shared by several
//! hosts and for the benchmark's scale-out section. It keeps no data on disk, can be killed
//! and started again on the same port (the broker going away mid-session), and is stopped
//! when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server binary (Debian package `redis-server`), looked up on `PATH`.
pub const REDIS_SERVER: &str = "redis-server";
/// How long a started server has to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a starting server is tried.
const START_POLL: Duration = Duration::from_millis(20);

/// A `redis-server` on a loopback port, killed when dropped.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Whether `redis-server` can be run here.
    pub fn available() -> bool {
        Command::new(REDIS_SERVER)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// Starts a server on a free loopback port; `None` (said loudly on stderr) if
    /// `redis-server` is not installed, so a test can skip.
    pub fn start() -> Option<Self> {
        Self::start_on(free_port())
    }

    /// A port nothing listens on (nothing has started there yet): for a host that must start
    /// while Redis is not there; [`RedisServer::start_on`] starts it there later.
    pub fn unused_port() -> u16 {
        free_port()
    }

    /// Starts a server on `port`; `None` as in [`RedisServer::start`].
    pub fn start_on(port: u16) -> Option<Self> {
        let mut server = Self::not_started_on(port)?;
        server.restart();
        Some(server)
    }

    /// A server on a free port that is not running yet (for hosts that must start while Redis
    /// is down); [`RedisServer::restart`] starts it. `None` as in [`RedisServer::start`].
    pub fn not_started() -> Option<Self> {
        Self::not_started_on(free_port())
    }

    fn not_started_on(port: u16) -> Option<Self> {
        if !Self::available() {
            // run-all.sh sets this once tests/services/setup.sh installed it: then a missing
            // server is a failure, not a skip.
            assert!(
                std::env::var_os("SWITCHYARD_SCALEOUT_REQUIRED").is_none(),
                "tests/services/setup.sh reported redis-server ready, but `{REDIS_SERVER}` is missing"
            );
            eprintln!(
                "\n!!! SKIPPED: `{REDIS_SERVER}` is not installed (Debian package `redis-server`; \
                 `bash tests/services/setup.sh` installs it)\n"
            );
            return None;
        }
        Some(Self { port, child: None })
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its address, 127.0.0.1 and [`RedisServer::port`].
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `redis://127.0.0.1:<port>`, for `--pubsub`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The running server's process id (the benchmark pins it to the server core).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server at once (like a crash: clients see their connections reset).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again) on its port, after [`RedisServer::kill`] or
    /// [`RedisServer::not_started`], and waits until it accepts connections.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new(REDIS_SERVER)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while self.command(&["PING"]).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not start within {START_TIMEOUT:?}",
                self.port
            );
            std::thread::sleep(START_POLL);
        }
    }

    /// Runs one command (e.g. `PUBSUB CHANNELS *`, `PUBLISH channel bytes`) on a connection
    /// of its own.
    pub fn command(&self, args: &[&str]) -> ::redis::RedisResult<::redis::Value> {
        let bytes: Vec<&[u8]> = args.iter().map(|arg| arg.as_bytes()).collect();
        self.command_bytes(&bytes)
    }

    /// [`RedisServer::command`] with binary arguments.
    pub fn command_bytes(&self, args: &[&[u8]]) -> ::redis::RedisResult<::redis::Value> {
        let client = ::redis::Client::open(self.url())?;
        let mut connection = client.get_connection_with_timeout(Duration::from_secs(2))?;
        let (name, rest) = args.split_first().expect("a command");
        let mut command = ::redis::cmd(&String::from_utf8_lossy(name));
        for arg in rest {
            command.arg(*arg);
        }
        command.query(&mut connection)
    }

    /// Connections subscribed to `channel` (`PUBSUB NUMSUB`).
    pub fn subscribers(&self, channel: &str) -> i64 {
        match self.command(&["PUBSUB", "NUMSUB", channel]) {
            Ok(value) => {
                let (_, count): (String, i64) =
                    ::redis::from_redis_value(value).expect("a channel and its count");
                count
            }
            Err(err) => panic!("PUBSUB NUMSUB failed: {err}"),
        }
    }

    /// The channels with at least one subscriber (`PUBSUB CHANNELS`), sorted.
    pub fn channels(&self) -> Vec<String> {
        let mut channels: Vec<String> = match self.command(&["PUBSUB", "CHANNELS"]) {
            Ok(value) => ::redis::from_redis_value(value).expect("a list of channel names"),
            Err(err) => panic!("PUBSUB CHANNELS failed: {err}"),
        };
        channels.sort();
        channels
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port free right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().expect("a bound address").port()
}

/// Whether something accepts connections on `port`.
pub fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), START_POLL).is_ok()
}
