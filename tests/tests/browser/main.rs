//! The chat example in a real browser: Debian's headless Chromium, driven by playwright-core from
//! `tests/browser/chat.mjs`, opens the page `GET /chat` serves in two tabs of two people, who
//! join one room, see each other come, chat, and see one of them leave. A tokio-tungstenite
//! member of the same room checks what the pages put on the wire. The same chat again over
//! `https://`: the page over HTTP/2 and its WebSockets over RFC 8441 on that connection.
//!
//! Chromium and playwright-core are installed by `tests/browser/setup.sh` (run by
//! `tests/run-all.sh`). Without them the test is skipped with a message on stderr; it fails
//! instead when run-all.sh said they were ready (`SWITCHYARD_BROWSER_REQUIRED`), and is skipped
//! with setup.sh's reason when a registry was unreachable (`SWITCHYARD_BROWSER_SKIP`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use futures_util::StreamExt as _;
use serde_json::{Value, json};
use switchyard_tests::tls::TestCert;
use switchyard_tests::{TestHost, bounded};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

/// The browser the test drives (Debian's `chromium` package).
const CHROMIUM: &str = "/usr/bin/chromium";
/// The room both pages join.
const ROOM: &str = "browser-test";
/// The person who stays, and the one who leaves.
const FIRST: &str = "alice";
const SECOND: &str = "bob";
/// The room's third member, a WebSocket client of the test's own.
const OBSERVER: &str = "observer";
/// The longest the Node script may run (its own watchdog stops it at 45 s); inside the test's
/// own [`switchyard_tests::TEST_TIMEOUT`].
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(50);
/// How often the running script is checked on.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long the observer may take to see what the pages did, after the script ended.
const OBSERVER_TIMEOUT: Duration = Duration::from_secs(5);
/// What every PNG file starts with.
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
/// The script's viewport; screenshots are at least this large.
const VIEWPORT: (u32, u32) = (900, 700);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pages_chat_in_chromium() {
    let Some(tools) = Tools::find() else {
        return;
    };
    bounded(async {
        let host = TestHost::start(&["chat"]).await;
        let (mut observer, _) = connect_async(host.ws_url(&format!("/chat/{ROOM}?name={OBSERVER}")))
            .await
            .expect("the observer's WebSocket handshake");

        let summary = tools
            .run_script(&Script {
                url: host.url("/chat"),
                extra_args: String::new(),
                screenshot_prefix: "chat",
            })
            .await;
        assert_eq!(summary["ok"], true, "the browser script failed: {summary:#}");
        println!(
            "browser: {} drove two pages through the chat in {} ms",
            summary["chromium"], summary["elapsedMs"]
        );
        assert_eq!(summary["pageErrors"], json!([]), "uncaught errors in the page");

        let hello = |name: &str| format!("{name}: hello from {name}");
        for name in [FIRST, SECOND] {
            let page = &summary["pages"][name];
            assert_eq!(page["status"], "connected", "{name}'s page: {page:#}");
            let messages = strings(&page["messages"]);
            for from in [FIRST, SECOND] {
                let shown = messages.iter().filter(|m| m.contains(&hello(from))).count();
                assert_eq!(shown, 1, "{name}'s page should show {from}'s message once: {page:#}");
            }
            check_screenshot(Path::new(
                summary["screenshots"][name].as_str().expect("a path"),
            ));
        }
        let notices = strings(&summary["pages"][FIRST]["notices"]);
        for event in ["joined", "left"] {
            assert!(
                notices.iter().any(|n| n.contains(SECOND) && n.contains(event)),
                "{FIRST}'s page has no notice that {SECOND} {event}: {notices:?}"
            );
        }

        // What the pages sent, as the chat's protocol says, in the order the script acted.
        let expected = [
            json!({"type": "join", "room": ROOM, "from": FIRST}),
            json!({"type": "join", "room": ROOM, "from": SECOND}),
            json!({"type": "message", "room": ROOM, "from": FIRST, "text": format!("hello from {FIRST}")}),
            json!({"type": "message", "room": ROOM, "from": SECOND, "text": format!("hello from {SECOND}")}),
            json!({"type": "leave", "room": ROOM, "from": SECOND}),
        ];
        let mut seen = Vec::new();
        while seen.len() < expected.len() {
            let frame = tokio::time::timeout(OBSERVER_TIMEOUT, observer.next())
                .await
                .unwrap_or_else(|_| panic!("the observer saw only {seen:#?}"))
                .expect("the observer's connection stayed open")
                .expect("a valid frame");
            if let Message::Text(text) = frame {
                seen.push(serde_json::from_str::<Value>(&text).expect("chat events are JSON"));
            }
        }
        assert_eq!(seen, expected);
    })
    .await;
}

/// The chat page over `https://` with HTTP/2: Chromium trusts the test's certificate by its
/// key's pin (`--ignore-certificate-errors-spki-list`, which keeps the connection a normal,
/// poolable one), and the pages' WebSockets ride RFC 8441 streams on that HTTP/2 connection.
/// The host's access log says so: each page's WebSocket is an HTTP/2 `CONNECT` answered `200`
/// by the chat, and every session started is an `h2-connect` over TLS, none an HTTP/1.1
/// upgrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_over_https_and_http2_in_chromium() {
    let Some(tools) = Tools::find() else {
        return;
    };
    bounded(async {
        use sha2::Digest as _;
        let dir = tempfile::tempdir().expect("a folder for the certificate");
        let cert = TestCert::generate();
        let host = TestHost::start_tls_with_access_log(&["chat"], cert.write_to(dir.path())).await;
        let pin = data_encoding::BASE64.encode(&sha2::Sha256::digest(&cert.spki_der));
        let script = Script {
            url: format!("https://127.0.0.1:{}/chat", host.addr.port()),
            extra_args: format!("--ignore-certificate-errors-spki-list={pin}"),
            screenshot_prefix: "chat-https",
        };
        let summary = tools.run_script(&script).await;
        assert_eq!(
            summary["ok"], true,
            "the browser script failed: {summary:#}"
        );
        assert_eq!(
            summary["pageErrors"],
            json!([]),
            "uncaught errors in the page"
        );
        for name in [FIRST, SECOND] {
            assert_eq!(
                summary["protocols"][name], "h2",
                "{name}'s page did not come over HTTP/2: {summary:#}"
            );
            let page = &summary["pages"][name];
            assert_eq!(page["status"], "connected", "{name}'s page: {page:#}");
            let messages = strings(&page["messages"]);
            for from in [FIRST, SECOND] {
                let hello = format!("{from}: hello from {from}");
                assert!(
                    messages.iter().any(|m| m.contains(&hello)),
                    "{name}'s page does not show {from}'s message: {page:#}"
                );
            }
            check_screenshot(Path::new(
                summary["screenshots"][name].as_str().expect("a path"),
            ));
        }
        let connects: Vec<String> = host
            .log_lines()
            .into_iter()
            .filter(|line| {
                line.contains("switchyard::access") && line.contains("method=\"CONNECT\"")
            })
            .collect();
        assert_eq!(connects.len(), 2, "one CONNECT per page: {connects:#?}");
        for line in &connects {
            assert!(
                line.contains("http=\"HTTP/2\"")
                    && line.contains("status=200")
                    && line.contains("plugin=\"chat\""),
                "a WebSocket that was not an RFC 8441 stream answered by the chat: {line}"
            );
        }
        assert!(
            host.log_lines()
                .iter()
                .any(|line| line.contains("switchyard::access")
                    && line.contains("method=\"GET\"")
                    && line.contains("http=\"HTTP/2\"")),
            "the page itself came over HTTP/2 in the access log"
        );
        let started: Vec<String> = host
            .log_lines()
            .into_iter()
            .filter(|line| line.contains("session started"))
            .collect();
        assert_eq!(started.len(), 2, "one session per page: {started:#?}");
        for line in &started {
            assert!(
                line.contains("transport=\"h2-connect\"")
                    && line.contains("tls=true")
                    && line.contains("websocket{plugin=chat"),
                "a WebSocket that did not ride RFC 8441 over TLS: {line}"
            );
        }
        println!(
            "browser: {} chatted over https + HTTP/2, WebSockets over RFC 8441",
            summary["chromium"]
        );
    })
    .await;
}

/// What one run of `chat.mjs` is pointed at.
struct Script {
    /// The chat page.
    url: String,
    /// More Chromium flags, space-separated.
    extra_args: String,
    /// The screenshots' file name before `-<name>.png`.
    screenshot_prefix: &'static str,
}

/// The strings of a JSON array (none if it is not one).
fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Checks that `path` is a PNG at least as large as the viewport (IHDR: width and height, big
/// endian, right after the signature, the chunk length and the chunk type).
fn check_screenshot(path: &Path) {
    let bytes = std::fs::read(path)
        .unwrap_or_else(|err| panic!("reading the screenshot {}: {err}", path.display()));
    assert!(
        bytes.starts_with(PNG_SIGNATURE),
        "{} is not a PNG",
        path.display()
    );
    let dimension = |at: usize| {
        bytes
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
            .unwrap_or_else(|| panic!("{} is truncated", path.display()))
    };
    let (width, height) = (dimension(16), dimension(20));
    assert!(
        width >= VIEWPORT.0 && height >= VIEWPORT.1,
        "{}: {width}x{height}, smaller than the viewport",
        path.display()
    );
}

/// Where the installed tools are.
struct Tools {
    /// `<target>/browser`: playwright-core's `node_modules`, and where the screenshots go.
    work: PathBuf,
}

impl Tools {
    /// The tools, or `None` after saying loudly why the test is skipped. Panics if run-all.sh
    /// said they were installed but they are not here.
    fn find() -> Option<Self> {
        if let Some(reason) = std::env::var_os("SWITCHYARD_BROWSER_SKIP") {
            skip_loudly(&reason.to_string_lossy());
            return None;
        }
        // Integration tests get `<target>/tmp`; setup.sh installs into `<target>/browser`.
        let work = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("the target folder")
            .join("browser");
        let mut missing = Vec::new();
        if !Path::new(CHROMIUM).is_file() {
            missing.push(CHROMIUM.to_owned());
        }
        let playwright = work.join("node_modules/playwright-core/package.json");
        if !playwright.is_file() {
            missing.push(playwright.display().to_string());
        }
        if Command::new("node").arg("--version").output().is_err() {
            missing.push("node".to_owned());
        }
        if missing.is_empty() {
            return Some(Self { work });
        }
        let reason = format!(
            "missing {}; `bash tests/browser/setup.sh` installs them",
            missing.join(", ")
        );
        assert!(
            std::env::var_os("SWITCHYARD_BROWSER_REQUIRED").is_none(),
            "tests/browser/setup.sh reported the browser test ready, but: {reason}"
        );
        skip_loudly(&reason);
        None
    }

    /// Runs `chat.mjs` as `script` says, bounded by [`SCRIPT_TIMEOUT`], and returns its
    /// summary.
    async fn run_script(&self, script_run: &Script) -> Value {
        let logs = tempfile::tempdir().expect("a folder for the script's output");
        let (stdout, stderr) = (logs.path().join("stdout"), logs.path().join("stderr"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/chat.mjs");
        let mut child = Command::new("node")
            .arg(&script)
            .env("CHAT_URL", &script_run.url)
            .env("CHROMIUM_EXTRA_ARGS", &script_run.extra_args)
            .env("SCREENSHOT_PREFIX", script_run.screenshot_prefix)
            .env("CHAT_ROOM", ROOM)
            .env("CHAT_NAMES", format!("{FIRST},{SECOND}"))
            .env("SCREENSHOT_DIR", &self.work)
            .env("PLAYWRIGHT_DIR", &self.work)
            .env("CHROMIUM", CHROMIUM)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("the script's stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("the script's stderr file"))
            .spawn()
            .expect("starting node");
        let status = wait_bounded(&mut child).await;
        let out = std::fs::read_to_string(&stdout).unwrap_or_default();
        let err = std::fs::read_to_string(&stderr).unwrap_or_default();
        let summary = out
            .lines()
            .rev()
            .find_map(|line| serde_json::from_str::<Value>(line).ok())
            .unwrap_or_else(|| {
                panic!("chat.mjs ({status:?}) printed no summary.\nstdout:\n{out}\nstderr:\n{err}")
            });
        assert!(
            status.is_some_and(|status| status.success()),
            "chat.mjs ended with {status:?}: {summary:#}\nstderr:\n{err}"
        );
        summary
    }
}

/// Waits for `child` until [`SCRIPT_TIMEOUT`]; past it kills it and returns `None`.
async fn wait_bounded(child: &mut std::process::Child) -> Option<ExitStatus> {
    let deadline = tokio::time::Instant::now() + SCRIPT_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for node") {
            return Some(status);
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Says on the real stderr (not the test harness's captured one, which a passing test never
/// shows) that the browser test did not run, and why.
fn skip_loudly(reason: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "\n!!! SKIPPED the browser test (two_pages_chat_in_chromium): {reason}\n"
    );
}
