//! Hostile clients: slow and half-finished request heads, disconnects at every stage, and many
//! thousands of sessions opened and closed, while a bystander session keeps working and the
//! host's memory comes back.

use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use switchyard_host::Limits;
use switchyard_tests::client::get;
use switchyard_tests::probe::rss_bytes;
use switchyard_tests::{TestHost, bounded};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

use super::{ONE_AT_A_TIME, SETTLE, mib, under_attack};

/// Header timeout for these tests: short, so the attacks are cut off quickly.
const HEADER_TIMEOUT: Duration = Duration::from_millis(500);

async fn host() -> TestHost {
    let limits = Limits {
        header_read_timeout: HEADER_TIMEOUT,
        ..Limits::default()
    };
    TestHost::start_configured(&["echo", "echo-raw", "hello"], &[], Some(limits)).await
}

/// Reads until the host closes the connection; fails if it stays open past `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) {
    let mut sink = Vec::new();
    tokio::time::timeout(within, stream.read_to_end(&mut sink))
        .await
        .expect("the host kept a stalled connection open")
        .ok();
}

/// Slowloris: request heads trickling in a byte at a time are cut off at the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_off() {
    let _serial = ONE_AT_A_TIME.lock().await;
    bounded(async {
        let host = host().await;
        under_attack(&host, "slowloris (50 connections)", 1, |_| async {
            let mut trickling = Vec::new();
            for _ in 0..50 {
                trickling.push(TcpStream::connect(host.addr).await.unwrap());
            }
            let started = Instant::now();
            let head = b"GET /hello HTTP/1.1\r\nhost: t\r\nx-slow: ";
            'trickle: for byte in head.iter().cycle().take(40) {
                for stream in &mut trickling {
                    if stream.write_all(&[*byte]).await.is_err() {
                        break 'trickle;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            for stream in &mut trickling {
                closed_within(stream, Duration::from_secs(3)).await;
            }
            println!("  slowloris: all 50 cut off after {:?}", started.elapsed());
            assert_eq!(get(host.addr, "/hello", &[]).await.status, 200);
        })
        .await;
    })
    .await;
}

/// A thousand connections that send half a request and wait do not stop anyone else, and are
/// all closed at the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_half_requests() {
    let _serial = ONE_AT_A_TIME.lock().await;
    bounded(async {
        switchyard_tests::probe::raise_open_file_limit();
        let host = host().await;
        under_attack(&host, "1,000 half requests", 1, |_| async {
            let mut waiting = Vec::new();
            for _ in 0..1000 {
                let mut stream = TcpStream::connect(host.addr).await.unwrap();
                stream
                    .write_all(b"GET /hello HTTP/1.1\r\nhost: t\r\n")
                    .await
                    .unwrap();
                waiting.push(stream);
            }
            let started = Instant::now();
            assert_eq!(get(host.addr, "/hello", &[]).await.status, 200);
            println!(
                "  half requests: a normal request took {:?} with 1,000 pending",
                started.elapsed()
            );
            for stream in &mut waiting {
                closed_within(stream, Duration::from_secs(5)).await;
            }
        })
        .await;
    })
    .await;
}

/// Clients vanishing mid-handshake (after sending the upgrade request) and mid-session
/// (without a close frame): every session ends and gives its slot back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnects_mid_handshake_and_mid_session() {
    let _serial = ONE_AT_A_TIME.lock().await;
    bounded(async {
        let host = host().await;
        under_attack(&host, "disconnects (100 mid-handshake, 100 mid-session)", 100, |_| async {
            let mut stream = TcpStream::connect(host.addr).await.unwrap();
            stream
                .write_all(b"GET /echo-raw HTTP/1.1\r\nhost: t\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
                .await
                .unwrap();
            drop(stream);
            let (mut client, _) = connect_async(host.ws_url("/echo-raw")).await.unwrap();
            client.send(Message::text("hi")).await.unwrap();
            client.next().await.unwrap().unwrap();
            drop(client);
        })
        .await;
        host.wait_for_log(&["plugin=echo-raw", "session ended"], SETTLE).await;
    })
    .await;
}

/// 10,000 connect / upgrade / one message / close cycles: host memory ends near where it
/// started, and no slot is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_session_cycles() {
    let _serial = ONE_AT_A_TIME.lock().await;
    bounded(async {
        const CYCLES: usize = 10_000;
        const WARM_UP: usize = 500;
        const WORKERS: usize = 8;
        let host = host().await;
        let url = host.ws_url("/echo-raw");
        let cycle = |url: String, count: usize| async move {
            for i in 0..count {
                let (mut client, _) = connect_async(url.as_str()).await.unwrap();
                client.send(Message::text(format!("cycle {i}"))).await.unwrap();
                client.next().await.unwrap().unwrap();
                client.close(None).await.unwrap();
                while client.next().await.is_some() {}
            }
        };
        cycle(url.clone(), WARM_UP).await;
        host.wait_until_idle(SETTLE).await;
        let rss_start = rss_bytes();
        let started = Instant::now();
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| tokio::spawn(cycle(url.clone(), CYCLES / WORKERS)))
            .collect();
        for worker in workers {
            worker.await.unwrap();
        }
        let took = started.elapsed();
        host.wait_until_idle(SETTLE).await;
        let rss_end = rss_bytes();
        println!(
            "10,000 session cycles in {took:?} ({:.0}/s): RSS {:.1} MiB before, {:.1} MiB after ({:+.1} MiB)",
            CYCLES as f64 / took.as_secs_f64(),
            mib(rss_start),
            mib(rss_end),
            (rss_end as f64 - rss_start as f64) / (1024.0 * 1024.0),
        );
        assert!(
            rss_end < rss_start + (16 << 20),
            "RSS grew from {:.1} MiB to {:.1} MiB",
            mib(rss_start),
            mib(rss_end)
        );
    })
    .await;
}

/// Slow bodies: 200 requests that promise 1,000 body bytes and send 3 are each answered `408`
/// once the body read timeout passes without progress, and closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_get_408() {
    let _serial = ONE_AT_A_TIME.lock().await;
    bounded(async {
        const CONNECTIONS: usize = 200;
        let stall = Duration::from_millis(500);
        let limits = Limits {
            body_read_timeout: stall,
            ..Limits::default()
        };
        let host =
            TestHost::start_configured(&["echo", "echo-raw", "hello"], &[], Some(limits)).await;
        under_attack(&host, "stalled bodies (200 connections)", 1, |_| async {
            let mut stalled = Vec::new();
            let started = Instant::now();
            for _ in 0..CONNECTIONS {
                let mut stream = TcpStream::connect(host.addr).await.unwrap();
                stream
                    .write_all(
                        b"POST /hello HTTP/1.1\r\nhost: t\r\ncontent-length: 1000\r\n\r\nabc",
                    )
                    .await
                    .unwrap();
                stalled.push(stream);
            }
            let mut slowest = Duration::ZERO;
            for stream in &mut stalled {
                let mut answer = Vec::new();
                tokio::time::timeout(stall * 10, stream.read_to_end(&mut answer))
                    .await
                    .expect("a stalled body held its connection")
                    .ok();
                assert!(
                    answer.starts_with(b"HTTP/1.1 408"),
                    "{:?}",
                    String::from_utf8_lossy(&answer)
                );
                slowest = slowest.max(started.elapsed());
            }
            println!(
                "  stalled bodies: all {CONNECTIONS} answered 408 and closed within {slowest:?} \
                 (body read timeout {stall:?})"
            );
            assert!(slowest < stall * 6, "{slowest:?}");
            assert_eq!(get(host.addr, "/hello", &[]).await.status, 200);
        })
        .await;
    })
    .await;
}

/// A connection flood past `max_connections`: the excess connections are closed at once and
/// reported in one aggregated log line, while the bystander session keeps being served; once
/// the holders go, plain requests are served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_closed_at_once() {
    let _serial = ONE_AT_A_TIME.lock().await;
    bounded(async {
        const MAX: u32 = 100;
        const FLOOD: usize = 2_000;
        switchyard_tests::probe::raise_open_file_limit();
        let limits = Limits {
            max_connections: Some(MAX),
            ..Limits::default()
        };
        let host = TestHost::start_configured(&["echo", "echo-raw", "hello"], &[], Some(limits)).await;
        under_attack(&host, "connection flood (2,000 past a limit of 100)", 1, |_| async {
            // The bystanders' sessions are two of the open connections. Another connection
            // may still be closing (its task gives its place back as it ends): count once the
            // figure has held still for 200 ms, or the holders would end up short of the limit.
            let deadline = Instant::now() + Duration::from_secs(5);
            let (mut open, mut still) = (host.stats().open_connections(), 0);
            while still < 20 {
                assert!(Instant::now() < deadline, "the open connections did not settle");
                tokio::time::sleep(Duration::from_millis(10)).await;
                let now_open = host.stats().open_connections();
                still = if now_open == open { still + 1 } else { 0 };
                open = now_open;
            }
            let mut holders = Vec::new();
            for _ in open..MAX {
                let mut stream = TcpStream::connect(host.addr).await.unwrap();
                stream.write_all(b"GET /hello HTTP/1.1\r\n").await.unwrap();
                holders.push(stream);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while host.stats().open_connections() < MAX {
                assert!(Instant::now() < deadline, "the holders were not all accepted");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let started = Instant::now();
            let mut slowest = Duration::ZERO;
            for _ in 0..FLOOD {
                let mut stream = TcpStream::connect(host.addr).await.unwrap();
                let connected = Instant::now();
                let mut byte = [0u8; 1];
                let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut byte))
                    .await
                    .expect("a connection over the limit stayed open");
                assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
                slowest = slowest.max(connected.elapsed());
            }
            let took = started.elapsed();
            let refused = host.stats().refused_connections();
            let reports = host
                .log_lines()
                .into_iter()
                .filter(|line| line.contains("connection limit of 100 open connections"))
                .count();
            println!(
                "  connection flood: {FLOOD} connections past the limit closed in {took:?}, \
                 slowest {slowest:?} from connect to close; {refused} counted, {reports} log line(s)"
            );
            assert_eq!(refused, FLOOD as u64);
            assert!(reports <= 2, "{reports} log lines for one flood");
            drop(holders);
            let deadline = Instant::now() + Duration::from_secs(5);
            while host.stats().open_connections() >= MAX {
                assert!(Instant::now() < deadline, "the holders' places did not come back");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(get(host.addr, "/hello", &[]).await.status, 200);
        })
        .await;
    })
    .await;
}
