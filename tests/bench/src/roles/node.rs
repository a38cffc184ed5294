//! Node's `ws` servers, the peer most WebSocket servers are measured against: an echo server
//! and a broadcast server with rooms. They need `node` and `npm`; `ws` is installed once into
//! `<target>/bench-node` and reused. Whatever is missing makes the Node column a clean
//! "skipped" with the reason, never a failure.

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
const ECHO_JS: &str = r#"// Written by switchyard-bench: a WebSocket echo server for comparison.
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

/// Rooms by request path, like the native broadcast server: a message a member sends is framed
/// once and the same bytes are written to every member's socket (the sender included), the
/// way `ws` itself frames and writes (no compression, so its sends go straight to the socket
/// and these writes stay in order with them).
const BROADCAST_JS: &str = r#"// Written by switchyard-bench: WebSocket rooms for comparison.
const { WebSocketServer } = require('ws');
const server = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
const rooms = new Map();
function frame(data, isBinary) {
  const len = data.length;
  let head;
  if (len < 126) {
    head = Buffer.from([isBinary ? 0x82 : 0x81, len]);
  } else if (len < 65536) {
    head = Buffer.alloc(4);
    head[1] = 126;
    head.writeUInt16BE(len, 2);
  } else {
    head = Buffer.alloc(10);
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  head[0] = isBinary ? 0x82 : 0x81;
  return Buffer.concat([head, data]);
}
server.on('listening', () => {
  console.log(`127.0.0.1:${server.address().port}`);
});
server.on('connection', (socket, request) => {
  socket._socket.setNoDelay(true);
  const path = request.url.split('?')[0];
  let room = rooms.get(path);
  if (!room) {
    room = new Set();
    rooms.set(path, room);
  }
  room.add(socket);
  socket.on('message', (data, isBinary) => {
    const bytes = frame(data, isBinary);
    for (const member of room) member._socket.write(bytes);
  });
  socket.on('close', () => room.delete(socket));
  socket.on('error', () => {});
});
"#;

/// Which Node server to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Script {
    /// Echoes every message.
    Echo,
    /// Rooms: every message reaches every member of the sender's room.
    Broadcast,
}

impl Script {
    fn file_name(self) -> &'static str {
        match self {
            Self::Echo => "echo-server.js",
            Self::Broadcast => "broadcast-server.js",
        }
    }

    fn source(self) -> &'static str {
        match self {
            Self::Echo => ECHO_JS,
            Self::Broadcast => BROADCAST_JS,
        }
    }
}

/// Starts the Node server `script`, installing `ws` first if needed. `Err` is the reason the
/// Node column is skipped.
pub(crate) fn start(script: Script) -> Result<ServerProcess, String> {
    let node = version_of("node").ok_or("`node` is not installed")?;
    version_of("npm").ok_or("`npm` is not installed")?;
    let dir = work_dir();
    std::fs::create_dir_all(&dir)
        .map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
    if !dir.join("node_modules/ws/package.json").is_file() {
        install_ws(&dir)?;
    }
    let path = dir.join(script.file_name());
    std::fs::write(&path, script.source())
        .map_err(|err| format!("cannot write {}: {err}", path.display()))?;
    let mut command =
        pinned_command("node", &[path.into_os_string()]).map_err(|err| err.to_string())?;
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
