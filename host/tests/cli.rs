//! The `switchyard` command line: help text, clear failures for a missing plugins folder, a
//! plugins path that is not a folder or an address already in use, shutdown on signals, the
//! config file (precedence and errors), JSON logs with the access log, and the admin listener.

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
    /// Every log line read so far.
    seen: Vec<String>,
    _plugins: tempfile::TempDir,
}

impl RunningHost {
    /// Starts `switchyard serve` with `extra` arguments and waits until it listens.
    fn start(extra: &[&str]) -> Self {
        Self::start_with_env(extra, &[])
    }

    /// [`RunningHost::start`] with environment variables `env` set.
    fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Self {
        let plugins = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["serve", "--listen", "127.0.0.1:0", "--no-cache"])
            .args(extra)
            .arg("--plugins")
            .arg(plugins.path())
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting switchyard");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut host = Self {
            child,
            lines,
            addr: String::new(),
            seen: Vec::new(),
            _plugins: plugins,
        };
        let listening = host.wait_for_line("listening");
        // `addr=127.0.0.1:1234` in text, `"addr":"127.0.0.1:1234"` in JSON.
        host.addr = listening
            .split("addr")
            .nth(1)
            .map(|rest| rest.trim_start_matches(['=', '"', ':']))
            .and_then(|rest| rest.split(['"', ' ']).next())
            .expect("an address in the log line")
            .to_owned();
        assert!(host.addr.starts_with("127.0.0.1:"), "{listening}");
        host
    }

    /// Reads the log until a line containing `needle`, and returns it.
    fn wait_for_line(&mut self, needle: &str) -> String {
        let seen = &mut self.seen;
        self.lines
            .by_ref()
            .map_while(Result::ok)
            .inspect(|line| seen.push(line.clone()))
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

    /// Stops the host with SIGTERM and returns every line it logged.
    fn stop_and_read_log(mut self) -> Vec<String> {
        self.sigterm();
        self.wait_for_exit("SIGTERM");
        let rest = self.remaining_lines();
        let mut lines = std::mem::take(&mut self.seen);
        lines.extend(rest);
        lines
    }
}

impl Drop for RunningHost {
    fn drop(&mut self) {
        // A failed assertion must not leave the process running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The repository's example config file, which the README shows.
const EXAMPLE_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/switchyard.example.toml");

/// Writes `text` to a fresh `switchyard.toml`; the folder goes when the handle is dropped.
fn config_file(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.toml");
    std::fs::write(&path, text).unwrap();
    let path = path.to_str().unwrap().to_owned();
    (dir, path)
}

/// A config file's keys are the flags: an unknown key, a value of the wrong type and one out of
/// range are each refused naming the key and the file.
#[test]
fn config_file_errors_name_the_key_and_the_file() {
    for (text, expected) in [
        (
            "max-session = 5\n",
            "unknown key `max-session` (did you mean `max-sessions`?)",
        ),
        ("listen = 8080\n", "key `listen`: invalid value '8080'"),
        (
            "max-sessions = 0\n",
            "key `max-sessions`: invalid value '0'",
        ),
        (
            "max-sessions = \"many\"\n",
            "key `max-sessions`: invalid value 'many'",
        ),
        (
            "no-cache = \"yes\"\n",
            "key `no-cache`: expected true or false, found string",
        ),
        (
            "listen = { port = 80 }\n",
            "key `listen`: expected a string or a number",
        ),
        // A table is no flag: keys are not grouped as in a plugin's sidecar.
        ("[limits]\nmax-sessions = 5\n", "unknown key `limits`"),
        ("max-sessions = \n", "is not valid TOML"),
    ] {
        let (_dir, path) = config_file(text);
        let output = switchyard(&["serve", "--plugins", "/nonexistent", "--config", &path]);
        assert!(!output.status.success(), "{text:?} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{text:?}: {stderr}");
        assert!(
            stderr.contains(&path),
            "{text:?} does not name the file: {stderr}"
        );
    }
}

/// A flag on the command line beats its environment variable, which beats the config file,
/// which beats the default.
#[test]
fn config_file_values_give_way_to_environment_and_flags() {
    // The file asks for Redis on a closed port (the host starts anyway and logs it).
    let (_dir, path) = config_file("pubsub = \"redis://127.0.0.1:1\"\nmax-sessions = 7\n");
    let redis_line = "pubsub: topics shared through Redis";
    let uses_redis = |lines: &[String]| lines.iter().any(|line| line.contains(redis_line));
    let from_file = RunningHost::start(&["--config", &path]).stop_and_read_log();
    assert!(uses_redis(&from_file), "{from_file:?}");
    let env_wins =
        RunningHost::start_with_env(&["--config", &path], &[("SWITCHYARD_PUBSUB", "local")])
            .stop_and_read_log();
    assert!(!uses_redis(&env_wins), "{env_wins:?}");
    let flag_wins = RunningHost::start_with_env(
        &["--config", &path, "--pubsub", "local"],
        &[("SWITCHYARD_PUBSUB", "redis://127.0.0.1:1")],
    )
    .stop_and_read_log();
    assert!(!uses_redis(&flag_wins), "{flag_wins:?}");
}

/// The example config file in the repository loads (its address flags overridden so the test
/// can bind), and turns on what it says: the admin listener, the access log, JSON logs. Each
/// JSON line parses, and the access-log line has its fields.
#[test]
fn the_example_config_file_loads_and_logs_json() {
    use std::io::{Read as _, Write as _};
    let admin = TcpListener::bind("127.0.0.1:0").unwrap();
    let admin_addr = admin.local_addr().unwrap().to_string();
    drop(admin);
    let mut host = RunningHost::start(&["--config", EXAMPLE_CONFIG, "--admin-listen", &admin_addr]);
    let mut public = std::net::TcpStream::connect(&host.addr).unwrap();
    public
        .write_all(b"GET /nobody HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    public.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
    let mut scrape = std::net::TcpStream::connect(&admin_addr).unwrap();
    scrape
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut metrics = String::new();
    scrape.read_to_string(&mut metrics).unwrap();
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains("# TYPE switchyard_open_connections gauge"),
        "{metrics}"
    );
    let access = host.wait_for_line("switchyard::access");
    host.sigterm();
    host.wait_for_exit("SIGTERM");
    let access: serde_json::Value = serde_json::from_str(&access).expect("a JSON log line");
    let fields = &access["fields"];
    assert_eq!(fields["message"], "request", "{access}");
    assert_eq!(fields["method"], "GET", "{access}");
    assert_eq!(fields["path"], "/nobody", "{access}");
    assert_eq!(fields["status"], 404, "{access}");
    assert_eq!(fields["plugin"], "-", "{access}");
    assert_eq!(fields["http"], "HTTP/1.1", "{access}");
    assert!(fields["duration_us"].is_u64(), "{access}");
    for line in host.remaining_lines() {
        serde_json::from_str::<serde_json::Value>(&line)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {line}"));
    }
}

/// The README's "Operating Switchyard" section shows the example config file, byte for byte.
#[test]
fn the_readme_shows_the_example_config_file() {
    let example = std::fs::read_to_string(EXAMPLE_CONFIG).expect("reading the example");
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("reading the README");
    let section = readme
        .split("\n## Operating Switchyard")
        .nth(1)
        .expect("the README has an \"Operating Switchyard\" section");
    let block = section
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```\n").next())
        .expect("the section shows a config file");
    assert_eq!(
        block, example,
        "the README's config file differs from host/switchyard.example.toml"
    );
}
