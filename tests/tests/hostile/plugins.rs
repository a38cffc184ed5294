//! Hostile plugins: loops, memory bombs, panics, floods, protocol abuse and sandbox escapes,
//! each answered with the right status or a closed connection and a precise log line, while
//! another plugin's session keeps working.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use switchyard_tests::client::{RawConnection, get, misbehave_upgrade};
use switchyard_tests::{TestHost, bounded};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::{ONE_AT_A_TIME, SETTLE, mib, under_attack};

/// Rounds per attack: enough to show slots and memory come back, few enough to stay quick.
const ROUNDS: usize = 5;

async fn host_with(sidecar: &str) -> TestHost {
    TestHost::start_configured(
        &["misbehave", "echo", "echo-raw"],
        &[("misbehave", sidecar)],
        None,
    )
    .await
}

/// Opens an upgraded session to `case` and waits until the host closes it.
async fn session_is_closed(host: &TestHost, case: &str, first_line: &str) {
    let mut conn = RawConnection::open(host.addr, &misbehave_upgrade(case)).await;
    assert!(conn.read_head().await.starts_with("HTTP/1.1 101"));
    assert_eq!(conn.read_line().await, first_line);
    conn.expect_closed().await;
}

/// An endless loop in `handle` is stopped at its deadline with `504`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_in_handle() {
    let _serial = ONE_AT_A_TIME.lock().await;
    bounded(async {
        let host = host_with("[limits]\nhandle_timeout_ms = 200\n").await;
        under_attack(&host, "loop in handle", ROUNDS, |_| async {
            let started = Instant::now();
            assert_eq!(
                get(host.addr, "/misbehave/loop-handle", &[]).await.status,
                504
            );
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{:?}",
                started.elapsed()
            );
        })
        .await;
        host.wait_for_log(
            &[
                "plugin=misbehave",
                "path=/misbehave/loop-handle",
                "ran past its 200ms deadline",
            ],
            SETTLE,
        )
        .await;
    })
    .await;
}

/// An endless loop inside a live session is ended by the per-wake-up CPU limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_in_session() {
    let _serial = ONE_AT_A_TIME.lock().await;
    bounded(async {
        let host = host_with("[limits]\nrun_cpu_ms = 200\n").await;
        under_attack(&host, "loop in session", ROUNDS, |_| {
            session_is_closed(&host, "loop-session", "spinning")
        })
        .await;
        host.wait_for_log(
            &["plugin=misbehave", "CPU limit per wake-up exceeded"],
            SETTLE,
        )
        .await;
    })
    .await;
}

/// A session that uses up its whole CPU budget is ended, even below the per-wake-up limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cpu_budget() {
    let _serial = ONE_AT_A_TIME.lock().await;
    bounded(async {
        let host = host_with("[limits]\nsession_cpu_ms = 150\nrun_cpu_ms = 10000\n").await;
        under_attack(&host, "session CPU budget", 2, |_| {
            session_is_closed(&host, "loop-session", "spinning")
        })
        .await;
        host.wait_for_log(&["plugin=misbehave", "CPU budget used up"], SETTLE)
            .await;
    })
    .await;
}

/// A memory bomb in `handle` traps at the memory limit: `500`, and the log says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_in_handle() {
    let _serial = ONE_AT_A_TIME.lock().await;
    bounded(async {
        let host = host_with("[limits]\nmemory_mib = 16\n").await;
        let report = under_attack(&host, "memory bomb in handle", ROUNDS, |_| async {
            assert_eq!(
                get(host.addr, "/misbehave/memory-handle", &[]).await.status,
                500
            );
        })
        .await;
        host.wait_for_log(
            &[
                "plugin=misbehave",
                "trapped in handle (its memory limit was reached)",
            ],
            SETTLE,
        )
        .await;
        let grown = report.rss_after.saturating_sub(report.rss_before);
        assert!(grown < 64 << 20, "RSS grew by {:.1} MiB", mib(grown));
    })
    .await;
}

/// A memory bomb in a session ends that session with "memory limit reached".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_in_session() {
    let _serial = ONE_AT_A_TIME.lock().await;
    bounded(async {
        let host = host_with("[limits]\nmemory_mib = 16\n").await;
        under_attack(&host, "memory bomb in session", ROUNDS, |_| {
            session_is_closed(&host, "memory-session", "allocating")
        })
        .await;
        host.wait_for_log(
            &["plugin=misbehave", "session ended: memory limit reached"],
            SETTLE,
        )
        .await;
    })
    .await;
}

/// Panics in either export: `500` for `handle`, a closed connection for `upgrade`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_in_each_export() {
    let _serial = ONE_AT_A_TIME.lock().await;
    bounded(async {
        let host = host_with("").await;
        under_attack(&host, "panic in each export", ROUNDS, |_| async {
            assert_eq!(
                get(host.addr, "/misbehave/trap-handle", &[]).await.status,
                500
            );
            let mut conn =
                RawConnection::open(host.addr, &misbehave_upgrade("upgrade-then-trap")).await;
            conn.read_head().await;
            conn.write(b"boom").await;
            conn.expect_closed().await;
        })
        .await;
        host.wait_for_log(&["trapped in handle"], SETTLE).await;
        host.wait_for_log(&["session ended: plugin trapped in upgrade"], SETTLE)
            .await;
    })
    .await;
}

/// Contract abuse: `101` for a plain request is a `502`, invalid headers and statuses `500`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_abuse() {
    let _serial = ONE_AT_A_TIME.lock().await;
    bounded(async {
        let host = host_with("").await;
        under_attack(&host, "contract abuse", ROUNDS, |_| async {
            assert_eq!(
                get(host.addr, "/misbehave/upgrade-on-plain", &[])
                    .await
                    .status,
                502
            );
            for case in ["bad-header-name", "bad-header-value", "bad-status"] {
                let path = format!("/misbehave/{case}");
                assert_eq!(get(host.addr, &path, &[]).await.status, 500, "{case}");
            }
        })
        .await;
        host.wait_for_log(&["upgrade refused", "did not ask"], SETTLE)
            .await;
        host.wait_for_log(&["invalid header name"], SETTLE).await;
    })
    .await;
}

/// A plugin writing without end to a client that does not read: the guest's writes wait
/// (host memory stays flat), and the session ends when the client leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_to_a_client_that_does_not_read() {
    let _serial = ONE_AT_A_TIME.lock().await;
    bounded(async {
        let host = host_with("").await;
        under_attack(&host, "flood to a non-reading client", 2, |_| async {
            let mut stream = TcpStream::connect(host.addr).await.unwrap();
            stream.write_all(&misbehave_upgrade("flood")).await.unwrap();
            let mut some = vec![0u8; 64 * 1024];
            stream.read_exact(&mut some).await.unwrap();
            let rss_reading = super::rss_bytes();
            // Stop reading: the socket buffers fill, then the guest's writes must wait.
            tokio::time::sleep(Duration::from_millis(700)).await;
            let rss_stalled = super::rss_bytes();
            println!(
                "  flood: RSS while reading {:.1} MiB, after 700 ms not reading {:.1} MiB",
                mib(rss_reading),
                mib(rss_stalled)
            );
            assert!(
                rss_stalled.saturating_sub(rss_reading) < 16 << 20,
                "host memory grew while the client did not read"
            );
            drop(stream);
        })
        .await;
        host.wait_for_log(
            &["plugin=misbehave", "session ended: client went away"],
            SETTLE,
        )
        .await;
    })
    .await;
}

/// A client writing without end to a plugin that does not read: only the TCP windows fill;
/// the client's writes stall after a bounded amount. Nothing moves once the client gives up
/// (the host cannot see a peer's FIN behind unread bytes), so the idle timeout ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_to_a_plugin_that_does_not_read() {
    let _serial = ONE_AT_A_TIME.lock().await;
    bounded(async {
        let host = host_with("[limits]\nidle_timeout_ms = 2000\n").await;
        under_attack(&host, "flood to a non-reading plugin", 2, |_| async {
            let mut conn = TcpStream::connect(host.addr).await.unwrap();
            conn.write_all(&misbehave_upgrade("slow-reader"))
                .await
                .unwrap();
            let mut head = vec![0u8; 256];
            let _ = conn.read(&mut head).await.unwrap();
            let chunk = vec![b'x'; 64 * 1024];
            let mut accepted = 0usize;
            let cap = 256 << 20;
            while accepted < cap {
                match tokio::time::timeout(Duration::from_millis(300), conn.write(&chunk)).await {
                    Ok(Ok(n)) => accepted += n,
                    Ok(Err(err)) => panic!("write failed: {err}"),
                    Err(_stalled) => break,
                }
            }
            println!(
                "  slow reader: the client's writes stalled after {:.1} MiB",
                mib(accepted as u64)
            );
            assert!(
                accepted < 64 << 20,
                "{accepted} bytes accepted by a plugin that never reads"
            );
        })
        .await;
    })
    .await;
}

/// The sandbox: no files, no directory listing, no environment, no sockets, no name lookup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_escapes_are_denied() {
    let _serial = ONE_AT_A_TIME.lock().await;
    bounded(async {
        let host = host_with("").await;
        let report = get(host.addr, "/misbehave/sandbox", &[]).await;
        assert_eq!(report.status, 200);
        let text = report.text();
        println!("sandbox probes:\n{text}");
        for probe in [
            "read /etc/passwd",
            "list /",
            "tcp connect 127.0.0.1:80",
            "dns localhost",
        ] {
            let line = text
                .lines()
                .find(|line| line.starts_with(&format!("{probe}:")))
                .unwrap_or_else(|| panic!("no line for {probe:?} in:\n{text}"));
            assert!(line.contains("denied"), "{line}");
        }
        assert!(text.contains("env vars: 0"), "{text}");
        assert!(text.contains("env HOME: absent"), "{text}");
        assert!(text.contains("args: 0"), "{text}");
        assert!(!text.contains("root:"), "{text}");
    })
    .await;
}

/// Requests attempted at once against a `handle` that loops (the figure).
const LOOPING_REQUESTS: usize = 400;
/// Pause between `/hello` probes during the fairness attack.
const HELLO_PROBE_INTERVAL: Duration = Duration::from_millis(10);

/// Fairness: 400 requests at once to a `handle` that loops. The plugin's concurrency limit
/// turns most away with `503` + `Retry-After`, the ones admitted are stopped at their deadline
/// (the epoch callback interrupts them even when the run queue is long), and `/hello` on the
/// same host stays quick. Prints `/hello`'s latency and how late the `504`s came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_bound_handles_do_not_starve_other_plugins() {
    let _serial = ONE_AT_A_TIME.lock().await;
    switchyard_tests::probe::raise_open_file_limit();
    bounded(async {
        let host = TestHost::start(&["misbehave", "echo", "echo-raw", "hello"]).await;
        let deadline = switchyard_host::PluginLimits::default().handle_timeout;
        let hello = HelloProbe::connect(&host).await;
        let mut baseline = Vec::new();
        for _ in 0..50 {
            baseline.push(hello.round_trip().await);
        }
        let report = std::sync::Mutex::new(None);
        under_attack(&host, "400 looping handles", 1, |_| {
            let (host, report, hello) = (&host, &report, &hello);
            async move {
                let measured = looping_requests_against_hello(host, hello).await;
                *report.lock().unwrap() = Some(measured);
            }
        })
        .await;
        let (answers, hello) = report.into_inner().unwrap().expect("the attack ran");
        let late_504s: Vec<Duration> = answers
            .iter()
            .filter(|(status, _)| *status == 504)
            .map(|(_, took)| took.saturating_sub(deadline))
            .collect();
        let busy = answers.iter().filter(|(status, _)| *status == 503).count();
        let worst_lateness = late_504s.iter().max().copied().unwrap_or_default();
        println!(
            "  fairness: {LOOPING_REQUESTS} looping requests: {} got 504 (worst {worst_lateness:?} \
             after the {deadline:?} deadline), {busy} got 503; /hello p50 {:?}, p99 {:?}, worst \
             {:?} over {} requests (before the attack: p99 {:?})",
            late_504s.len(),
            percentile(&hello, 50),
            percentile(&hello, 99),
            percentile(&hello, 100),
            hello.len(),
            percentile(&baseline, 99),
        );
        assert_eq!(late_504s.len() + busy, LOOPING_REQUESTS, "{answers:?}");
        assert!(!late_504s.is_empty(), "no looping request was admitted");
        assert!(
            worst_lateness < Duration::from_secs(1),
            "a 504 came {worst_lateness:?} after the deadline"
        );
        assert!(
            percentile(&hello, 99) < Duration::from_millis(500),
            "/hello p99 {:?} under attack",
            percentile(&hello, 99)
        );
    })
    .await;
}

/// Sends [`LOOPING_REQUESTS`] looping requests at once and probes `/hello` until they are all
/// answered; returns each looping request's status and time, and `/hello`'s latencies.
async fn looping_requests_against_hello(
    host: &TestHost,
    hello: &HelloProbe,
) -> (Vec<(u16, Duration)>, Vec<Duration>) {
    let addr = host.addr;
    let attackers: Vec<_> = (0..LOOPING_REQUESTS)
        .map(|_| {
            tokio::spawn(async move {
                let started = Instant::now();
                let status = get(addr, "/misbehave/loop-handle", &[]).await.status;
                (status.as_u16(), started.elapsed())
            })
        })
        .collect();
    let mut latencies = Vec::new();
    while !attackers.iter().all(|attacker| attacker.is_finished()) {
        latencies.push(hello.round_trip().await);
        tokio::time::sleep(HELLO_PROBE_INTERVAL).await;
    }
    let mut answers = Vec::new();
    for attacker in attackers {
        answers.push(attacker.await.expect("an attacker panicked"));
    }
    (answers, latencies)
}

/// `GET /hello` over one keep-alive connection opened before the attack, so that its latency is
/// how quickly the host serves a request. (New connections would also measure the kernel's
/// accept queue, which a burst of 400 connections overflows: a dropped SYN costs a 1 s
/// retransmission, whatever the host does.)
struct HelloProbe {
    sender: tokio::sync::Mutex<SendRequest<Full<Bytes>>>,
    host: String,
}

impl HelloProbe {
    async fn connect(host: &TestHost) -> Self {
        let stream = TcpStream::connect(host.addr).await.unwrap();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP handshake");
        tokio::spawn(connection);
        Self {
            sender: tokio::sync::Mutex::new(sender),
            host: host.addr.to_string(),
        }
    }

    /// One request and its whole response; returns how long it took.
    async fn round_trip(&self) -> Duration {
        let request = Request::get("/hello")
            .header("host", &self.host)
            .body(Full::default())
            .unwrap();
        let mut sender = self.sender.lock().await;
        sender
            .ready()
            .await
            .expect("the /hello connection stays open");
        let started = Instant::now();
        let response = sender.send_request(request).await.expect("a /hello reply");
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.expect("the body");
        started.elapsed()
    }
}

/// The `p`th percentile of `samples` (100: the worst).
fn percentile(samples: &[Duration], p: usize) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = (sorted.len() * p).div_ceil(100).saturating_sub(1);
    sorted.get(rank).copied().unwrap_or_default()
}
