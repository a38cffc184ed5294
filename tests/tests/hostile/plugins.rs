//! Hostile plugins: loops, memory bombs, panics, floods, protocol abuse and sandbox escapes,
//! each answered with the right status or a closed connection and a precise log line, while
//! another plugin's session keeps working.

use std::time::{Duration, Instant};

use switchyard_tests::client::{RawConnection, get, misbehave_upgrade};
use switchyard_tests::{TestHost, bounded};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::{ONE_AT_A_TIME, SETTLE, mib, under_attack};

/// Rounds per attack: enough to show slots and memory come back, few enough to stay quick.
const ROUNDS: usize = 5;

async fn host_with(sidecar: &str) -> TestHost {
    TestHost::start_configured(&["misbehave", "echo"], &[("misbehave", sidecar)], None).await
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
