//! [`HostProcess`]: the real `switchyard` binary run as a separate process (`switchyard serve`)
//! with a plugins folder of its own and a `--pubsub` backend, for tests where several hosts
//! share topics through a broker. Its log (stdout) is kept for assertions.
//!
//! The binary is the one cargo builds for the host crate. A test of this package cannot name it
//! with `CARGO_BIN_EXE_*` (that is only set for the host crate's own tests), so
//! [`switchyard_binary`] asks cargo to build it into the same target folder once per test
//! process (a no-op when `cargo test --workspace` already did) and runs it from there.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::child::ChildProcess;
use crate::host::copy_built_plugins;

/// Longest a host may take to listen: it compiles its plugins first (no cache in tests).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Log filter of test hosts: the default operator view, plus the line naming the path of each
/// accepted WebSocket (tests check which host a member landed on).
const LOG_FILTER: &str = "info,notify=warn,switchyard_host::http::dispatch=debug";

/// A running `switchyard serve` process, stopped (SIGTERM, then killed) when dropped.
pub struct HostProcess {
    addr: SocketAddr,
    process: ChildProcess,
    _plugins: tempfile::TempDir,
}

impl HostProcess {
    /// Starts `switchyard serve` on a free loopback port serving the named built plugins, with
    /// `--pubsub <pubsub>` and `extra` arguments, and waits until it listens.
    pub fn start(plugins: &[&str], pubsub: &str, extra: &[&str]) -> Self {
        let folder = tempfile::tempdir().expect("a plugins folder");
        copy_built_plugins(folder.path(), plugins);
        let mut command = Command::new(switchyard_binary());
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--no-cache"])
            .arg("--plugins")
            .arg(folder.path())
            .args(["--pubsub", pubsub])
            .args(extra)
            .env("RUST_LOG", LOG_FILTER);
        let mut process = ChildProcess::spawn("switchyard", command);
        let listening = process.wait_for_line("listening", START_TIMEOUT);
        let addr = listening
            .split("addr=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no address in the host's line {listening:?}"));
        Self {
            addr,
            process,
            _plugins: folder,
        }
    }

    /// Where the host accepts connections.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Every log line so far that contains `needle`.
    pub fn lines_containing(&self, needle: &str) -> Vec<String> {
        self.process.lines_containing(needle)
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        self.process.output()
    }

    /// Waits until the host has logged a line containing `needle`; panics after `within`.
    pub async fn wait_for_log(&self, needle: &str, within: Duration) -> String {
        self.process.wait_for_line_async(needle, within).await
    }

    /// Waits until the host has logged `needle` at least `count` times; panics after `within`.
    pub async fn wait_for_log_count(&self, needle: &str, count: usize, within: Duration) {
        crate::eventually(
            &format!("the host logged {needle:?} {count} times"),
            within,
            || self.lines_containing(needle).len() >= count,
        )
        .await;
    }

    /// Stops the host (SIGTERM, then killed after a timeout).
    pub fn stop(&mut self) {
        self.process.stop();
    }
}

/// The `switchyard` binary in this test's target folder, built by cargo once per test process.
pub fn switchyard_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(build_switchyard).clone()
}

/// `cargo build --bin switchyard` into the target folder and profile this test runs from
/// (`<target>/<profile>/deps/<test>` is where cargo puts test executables).
fn build_switchyard() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable sits in <target>/<profile>/deps");
    let target_dir = profile_dir.parent().expect("the target folder");
    let profile = profile_dir
        .file_name()
        .and_then(|name| name.to_str())
        .expect("the profile folder's name");
    let profile = if profile == "debug" { "dev" } else { profile };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace root");
    let status = Command::new(cargo)
        .current_dir(workspace)
        .args([
            "build",
            "--quiet",
            "-p",
            "switchyard-host",
            "--bin",
            "switchyard",
        ])
        .args(["--profile", profile])
        .env("CARGO_TARGET_DIR", target_dir)
        .status()
        .expect("running cargo build for the switchyard binary");
    assert!(status.success(), "building the switchyard binary failed");
    let binary = profile_dir.join("switchyard");
    assert!(binary.is_file(), "{} was not built", binary.display());
    binary
}
