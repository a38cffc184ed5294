//! The `switchyard` command line: help text, clear failures for a missing plugins folder, a
//! plugins path that is not a folder or an address already in use, and shutdown on signals.

use std::io::{BufRead as _, BufReader, Lines};
use std::net::TcpListener;
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `switchyard <args> --no-cache` (tests keep nothing in the user's cache folder).
fn switchyard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .arg("--no-cache")
        .output()
        .expect("running switchyard")
}

/// `serve --help` names every flag and its default.
#[test]
fn help_explains_every_flag() {
    let output = switchyard(&["serve", "--help"]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for expected in [
        "--plugins",
        "--listen",
        "[default: plugins]",
        "[default: 127.0.0.1:8080]",
    ] {
        assert!(help.contains(expected), "help lacks {expected:?}:\n{help}");
    }
}

/// A plugins folder that does not exist is an error naming the folder.
#[test]
fn missing_plugins_folder_fails_clearly() {
    let output = switchyard(&[
        "serve",
        "--plugins",
        "/nonexistent/switchyard-plugins",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("plugins folder /nonexistent/switchyard-plugins does not exist"),
        "{stderr}"
    );
}

/// A plugins path that is a file is an error saying so, not that it does not exist.
#[test]
fn plugins_path_that_is_a_file_fails_clearly() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let path = file.path().to_str().unwrap();
    let output = switchyard(&["serve", "--plugins", path, "--listen", "127.0.0.1:0"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("plugins folder {path} is not a folder")),
        "{stderr}"
    );
}

/// An address that is already taken is an error naming the address.
#[test]
fn taken_address_fails_clearly() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = std::env::temp_dir();
    let output = switchyard(&[
        "serve",
        "--plugins",
        dir.to_str().unwrap(),
        "--listen",
        &addr,
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
}

/// SIGTERM stops the host gracefully: it stops accepting, drains, and exits with status 0.
#[test]
fn sigterm_shuts_down_cleanly_with_status_zero() {
    let mut host = RunningHost::start(&["--drain-timeout-ms", "200"]);
    host.sigterm();
    let (status, _) = host.wait_for_exit("SIGTERM");
    assert!(status.success(), "exit status {status}");
    let rest = host.remaining_lines();
    assert!(
        rest.iter().any(|line| line.contains("SIGTERM received")),
        "{rest:?}"
    );
    assert!(
        rest.iter().any(|line| line.contains("shut down")),
        "{rest:?}"
    );
}

/// Every limit has a flag in `--help`, with its default and the range it must lie in.
#[test]
fn help_lists_every_limit_with_default_and_range() {
    let output = switchyard(&["serve", "--help"]);
    let help = String::from_utf8_lossy(&output.stdout);
    for expected in [
        "--memory-mib <MIB>",
        "[default: 64] [range: 1..=4096]",
        "--idle-timeout-ms <MS>",
        "--max-session-secs <SECS>",
        "[default: none]",
    ] {
        assert!(help.contains(expected), "help lacks {expected:?}:\n{help}");
    }
}

/// A limit outside its range stops the host before it starts, naming the flag.
#[test]
fn out_of_range_limits_are_refused_naming_the_flag() {
    for (flag, value) in [
        ("--memory-mib", "0"),
        ("--max-uri-bytes", "0"),
        ("--idle-timeout-ms", "0"),
        ("--handle-timeout-ms", "18446744073709551615"),
    ] {
        let output = switchyard(&["serve", "--listen", "127.0.0.1:0", flag, value]);
        assert!(!output.status.success(), "{flag} {value} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!("invalid value '{value}' for '{flag}")),
            "{flag} {value}: {stderr}"
        );
    }
}

/// A `--pubsub` backend or prefix the host cannot use is refused before it starts, from the
/// flag or from its environment variable, saying what is expected.
#[test]
fn invalid_pubsub_settings_are_refused_clearly() {
    for (args, env, expected) in [
        (
            &["--pubsub", "nats://127.0.0.1"][..],
            None,
            "expected `local` or `redis://HOST:PORT[/DB]`",
        ),
        (
            &["--pubsub", "redis://127.0.0.1:6379/x"][..],
            None,
            "invalid Redis URL",
        ),
        (
            &["--pubsub-prefix", "a:b"][..],
            None,
            "invalid pub/sub prefix \"a:b\"",
        ),
        (
            &[][..],
            Some(("SWITCHYARD_PUBSUB", "rediss://127.0.0.1")),
            "rediss://",
        ),
        (
            &[][..],
            Some(("SWITCHYARD_PUBSUB_PREFIX", "")),
            "invalid pub/sub prefix",
        ),
    ] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--no-cache"])
            .args(args);
        if let Some((name, value)) = env {
            command.env(name, value);
        }
        let output = command.output().expect("running switchyard");
        assert!(!output.status.success(), "{args:?} {env:?} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?} {env:?}: {stderr}");
    }
}

/// A `RUST_LOG` that does not parse is reported, not silently ignored.
#[test]
fn an_invalid_log_filter_is_reported() {
    let output = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--plugins", "/nonexistent/switchyard-plugins"])
        .env("RUST_LOG", "switchyard=loud")
        .output()
        .expect("running switchyard");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("ignoring RUST_LOG=\"switchyard=loud\""),
        "{stdout}"
    );
}

/// A second SIGTERM while the host drains ends the drain at once: here a connection that is
/// still sending its request head would hold the drain for a minute.
#[test]
fn second_sigterm_ends_the_drain_at_once() {
    use std::io::Write as _;

    let mut host = RunningHost::start(&[
        "--drain-timeout-ms",
        "60000",
        "--header-read-timeout-ms",
        "60000",
    ]);
    let mut slow = std::net::TcpStream::connect(&host.addr).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nhost: t\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    host.sigterm();
    host.wait_for_line("draining for up to");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        host.child.try_wait().unwrap().is_none(),
        "the drain ended by itself"
    );

    host.sigterm();
    let (status, took) = host.wait_for_exit("a second SIGTERM");
    assert!(status.success(), "exit status {status}");
    assert!(
        took < Duration::from_secs(2),
        "exited {took:?} after the second SIGTERM"
    );
    let rest = host.remaining_lines();
    assert!(
        rest.iter()
            .any(|line| line.contains("ending the drain now")),
        "{rest:?}"
    );
}

/// The real binary serving an empty plugins folder on a free port, its log read line by line.
struct RunningHost {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    /// Where it listens, from its "listening" log line.
    addr: String,
    _plugins: tempfile::TempDir,
}

impl RunningHost {
    /// Starts `switchyard serve` with `extra` arguments and waits until it listens.
    fn start(extra: &[&str]) -> Self {
        let plugins = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["serve", "--listen", "127.0.0.1:0", "--no-cache"])
            .args(extra)
            .arg("--plugins")
            .arg(plugins.path())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting switchyard");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut host = Self {
            child,
            lines,
            addr: String::new(),
            _plugins: plugins,
        };
        let listening = host.wait_for_line("listening");
        host.addr = listening
            .split("addr=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("an address in the log line")
            .to_owned();
        assert!(host.addr.starts_with("127.0.0.1:"), "{listening}");
        host
    }

    /// Reads the log until a line containing `needle`, and returns it.
    fn wait_for_line(&mut self, needle: &str) -> String {
        self.lines
            .by_ref()
            .map_while(Result::ok)
            .find(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("the host never logged {needle:?}"))
    }

    fn sigterm(&self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    }

    /// Waits up to ten seconds for the process to exit (after `what`); returns its status and
    /// how long it took.
    fn wait_for_exit(&mut self, what: &str) -> (ExitStatus, Duration) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, started.elapsed());
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the host did not exit after {what}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every log line not read yet (the process must have exited).
    fn remaining_lines(&mut self) -> Vec<String> {
        self.lines.by_ref().map_while(Result::ok).collect()
    }
}

impl Drop for RunningHost {
    fn drop(&mut self) {
        // A failed assertion must not leave the process running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
