//! Node's `ws` echo server, the peer most WebSocket servers are measured against. It needs
//! `node` and `npm`; `ws` is installed once into `<target>/bench-node` and reused. Whatever is
//! missing makes the Node column a clean "skipped" with the reason, never a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{ServerProcess, pinned_command};

/// The `ws` release line the script is written for.
const WS_PACKAGE: &str = "ws@8";
/// Longest `npm install` may take before the Node column is skipped.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(180);
/// How often a running `npm install` is checked on.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Echoes every message as it came (text stays text), with Nagle off like the other servers.
/// Listens on a free port and prints its address first, as every benchmark server does.
const SERVER_JS: &str = r#"// Written by switchyard-bench: a WebSocket echo server for comparison.
const { WebSocketServer } = require('ws');
const server = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
server.on('listening', () => {
  console.log(`127.0.0.1:${server.address().port}`);
});
server.on('connection', (socket) => {
  socket._socket.setNoDelay(true);
  socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
  socket.on('error', () => {});
});
"#;

/// Starts the Node echo server, installing `ws` first if needed. `Err` is the reason the Node
/// column is skipped.
pub(crate) fn start() -> Result<ServerProcess, String> {
    let node = version_of("node").ok_or("`node` is not installed")?;
    version_of("npm").ok_or("`npm` is not installed")?;
    let dir = work_dir();
    std::fs::create_dir_all(&dir)
        .map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
    if !dir.join("node_modules/ws/package.json").is_file() {
        install_ws(&dir)?;
    }
    let script = dir.join("echo-server.js");
    std::fs::write(&script, SERVER_JS)
        .map_err(|err| format!("cannot write {}: {err}", script.display()))?;
    let mut command =
        pinned_command("node", &[script.into_os_string()]).map_err(|err| err.to_string())?;
    command.current_dir(&dir);
    ServerProcess::start(&format!("Node {node} ws"), command).map_err(|err| format!("{err:#}"))
}

/// `<target>/bench-node`, beside the binary's profile folder, so it is reused across runs and
/// `cargo clean` removes it; a temporary folder if the binary lives elsewhere.
fn work_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_owned()))
        .unwrap_or_else(std::env::temp_dir)
        .join("bench-node")
}

/// `program --version`, if it runs.
fn version_of(program: &str) -> Option<String> {
    let output = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// `npm install ws` into `dir`, bounded in time.
fn install_ws(dir: &Path) -> Result<(), String> {
    println!("installing Node's {WS_PACKAGE} into {} …", dir.display());
    // Without a package.json npm may walk up and install into an enclosing project.
    std::fs::write(
        dir.join("package.json"),
        "{ \"name\": \"switchyard-bench-node\", \"private\": true }\n",
    )
    .map_err(|err| format!("cannot write package.json: {err}"))?;
    let log_path = dir.join("npm-install.log");
    let log = std::fs::File::create(&log_path).map_err(|err| err.to_string())?;
    let mut child = Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--no-progress",
            "--loglevel=error",
            WS_PACKAGE,
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|err| err.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|err| format!("cannot run npm: {err}"))?;
    let deadline = Instant::now() + INSTALL_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL_INTERVAL),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "npm install {WS_PACKAGE} took over {INSTALL_TIMEOUT:?}"
                ));
            }
            Err(err) => return Err(format!("waiting for npm: {err}")),
        }
    };
    if status.success() && dir.join("node_modules/ws/package.json").is_file() {
        Ok(())
    } else {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let last = log
            .lines()
            .rev()
            .find(|line| !line.trim().is_empty())
            .unwrap_or("");
        Err(format!(
            "npm install {WS_PACKAGE} failed ({status}): {last}"
        ))
    }
}
