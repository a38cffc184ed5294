//! Configurable limits: per-plugin settings from the sidecar's `[limits]` table and host-wide
//! ones, each shown to hold (and to report why) through the real host.

use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use switchyard_host::Limits;
use switchyard_tests::client::{RawConnection, get, misbehave_upgrade};
use switchyard_tests::{TestHost, bounded};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const LOG_WAIT: Duration = Duration::from_secs(5);

/// A silent session is closed after the idle timeout; one that keeps talking is not.
#[tokio::test]
async fn idle_sessions_are_closed_and_busy_ones_are_not() {
    bounded(async {
        let sidecar = "[limits]\nidle_timeout_ms = 400\n";
        let host =
            TestHost::start_configured(&["misbehave"], &[("misbehave", sidecar)], None).await;
        let mut silent = RawConnection::open(host.addr, &misbehave_upgrade("sleep-session")).await;
        let mut chatty = RawConnection::open(host.addr, &misbehave_upgrade("sleep-session")).await;
        for conn in [&mut silent, &mut chatty] {
            assert!(conn.read_head().await.starts_with("HTTP/1.1 101"));
            assert_eq!(conn.read_line().await, "idle");
        }
        let started = Instant::now();
        for i in 0..8 {
            chatty.write(format!("ping {i}\n").as_bytes()).await;
            assert_eq!(chatty.read_line().await, format!("ping {i}"));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        silent.expect_closed().await;
        assert!(started.elapsed() >= Duration::from_millis(400));
        host.wait_for_log(
            &["plugin=misbehave", "session ended: idle for 400ms"],
            LOG_WAIT,
        )
        .await;
        chatty.write(b"still here\n").await;
        assert_eq!(chatty.read_line().await, "still here");
    })
    .await;
}

/// A session that reaches its maximum length is closed and says so.
#[tokio::test]
async fn sessions_end_at_their_maximum_length() {
    bounded(async {
        let sidecar = "[limits]\nmax_session_secs = 1\n";
        let host =
            TestHost::start_configured(&["misbehave"], &[("misbehave", sidecar)], None).await;
        let mut conn = RawConnection::open(host.addr, &misbehave_upgrade("sleep-session")).await;
        conn.read_head().await;
        let started = Instant::now();
        // The greeting may arrive in the same read as the head or in a later one.
        assert_eq!(conn.read_line().await, "idle");
        conn.expect_closed().await;
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "{:?}",
            started.elapsed()
        );
        host.wait_for_log(
            &["session ended: reached its maximum length of 1s"],
            LOG_WAIT,
        )
        .await;
    })
    .await;
}

/// Past a plugin's session limit, upgrades get `503` with `Retry-After`; a freed slot is
/// usable again at once.
#[tokio::test]
async fn full_plugin_answers_503_with_retry_after() {
    bounded(async {
        let sidecar = "[limits]\nmax_sessions = 2\n";
        let host =
            TestHost::start_configured(&["misbehave"], &[("misbehave", sidecar)], None).await;
        let mut first = RawConnection::open(host.addr, &misbehave_upgrade("echo-raw")).await;
        let mut second = RawConnection::open(host.addr, &misbehave_upgrade("echo-raw")).await;
        first.read_head().await;
        second.read_head().await;
        let offer = [("connection", "upgrade"), ("upgrade", "x-test")];
        let refused = get(host.addr, "/misbehave/echo-raw", &offer).await;
        assert_eq!(refused.status, 503);
        assert_eq!(refused.headers["retry-after"], "1");
        host.wait_for_log(&["upgrade refused", "limit of 2 live sessions"], LOG_WAIT)
            .await;
        // Plain requests do not need a session slot.
        assert_eq!(get(host.addr, "/misbehave/ok", &[]).await.status, 200);

        drop(first);
        let deadline = Instant::now() + LOG_WAIT;
        while host.stats().live_sessions() > 1 {
            assert!(
                Instant::now() < deadline,
                "the closed session kept its slot"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut third = RawConnection::open(host.addr, &misbehave_upgrade("echo-raw")).await;
        assert!(third.read_head().await.starts_with("HTTP/1.1 101"));
        third.write(b"ok").await;
        assert_eq!(third.read_exact(2).await, b"ok");
    })
    .await;
}

/// The host-wide session limit holds across plugins.
#[tokio::test]
async fn full_host_answers_503() {
    bounded(async {
        let limits = Limits {
            max_sessions: 1,
            ..Limits::default()
        };
        let host = TestHost::start_configured(&["misbehave", "kv"], &[], Some(limits)).await;
        let mut only = RawConnection::open(host.addr, &misbehave_upgrade("echo-raw")).await;
        only.read_head().await;
        let reply = get(
            host.addr,
            "/kv",
            &[("connection", "upgrade"), ("upgrade", "kv/1")],
        )
        .await;
        assert_eq!(reply.status, 503);
        host.wait_for_log(&["host-wide limit of 1 live sessions"], LOG_WAIT)
            .await;
    })
    .await;
}

/// A plugin may only switch to the protocols its settings allow.
#[tokio::test]
async fn upgrades_outside_the_allow_list_are_refused() {
    bounded(async {
        let sidecar = "[limits]\nallowed_upgrades = [\"websocket\"]\n";
        let host =
            TestHost::start_configured(&["misbehave"], &[("misbehave", sidecar)], None).await;
        let offer = [("connection", "upgrade"), ("upgrade", "x-test")];
        let reply = get(host.addr, "/misbehave/echo-raw", &offer).await;
        assert_eq!(reply.status, 502);
        host.wait_for_log(
            &["which its settings do not allow (allowed: websocket)"],
            LOG_WAIT,
        )
        .await;
        host.wait_until_idle(LOG_WAIT).await;
    })
    .await;
}

/// Oversized request heads get `431`, long targets `414`, large bodies `413`.
#[tokio::test]
async fn oversized_requests_get_4xx() {
    bounded(async {
        let limits = Limits {
            max_header_bytes: 16 * 1024,
            max_uri_bytes: 1024,
            max_request_body: 1024,
            ..Limits::default()
        };
        let host = TestHost::start_configured(&["hello"], &[], Some(limits)).await;
        let big_header = "x".repeat(32 * 1024);
        assert_eq!(
            get(host.addr, "/hello", &[("x-big", &big_header)])
                .await
                .status,
            431
        );
        let long_path = format!("/hello/{}", "a".repeat(2000));
        assert_eq!(get(host.addr, &long_path, &[]).await.status, 414);
        let mut conn = RawConnection::open(
            host.addr,
            b"POST /hello HTTP/1.1\r\nhost: t\r\ncontent-length: 5000\r\n\r\n",
        )
        .await;
        conn.write(&[b'z'; 5000]).await;
        assert!(conn.read_head().await.starts_with("HTTP/1.1 413"));
        assert_eq!(get(host.addr, "/hello", &[]).await.status, 200);
    })
    .await;
}

/// A client that never finishes its request head gets `408` at the header timeout and the
/// connection is closed; a keep-alive connection idle for as long is closed without a reply.
#[tokio::test]
async fn slow_request_heads_time_out() {
    bounded(async {
        let limits = Limits {
            header_read_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let host = TestHost::start_configured(&["hello"], &[], Some(limits)).await;
        let mut stream = tokio::net::TcpStream::connect(host.addr).await.unwrap();
        stream
            .write_all(b"GET /hello HTTP/1.1\r\nhost: t\r\n")
            .await
            .unwrap();
        let started = Instant::now();
        let mut rest = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the connection stayed open");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(250), "{took:?}");
        let text = String::from_utf8_lossy(&rest);
        assert!(
            text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{text:?}"
        );
        assert!(text.contains("connection: close"), "{text}");

        // Idle between requests: one request served, then nothing more is sent.
        let mut idle =
            RawConnection::open(host.addr, b"GET /hello HTTP/1.1\r\nhost: t\r\n\r\n").await;
        let head = idle.read_head().await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let length = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length: "))
            .and_then(|value| value.trim().parse().ok())
            .expect("a content-length");
        idle.read_exact(length).await;
        let rest = idle.read_to_end_within(Duration::from_secs(5)).await;
        assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    })
    .await;
}

/// A request body that stops arriving gets `408` once no byte has come for the body read
/// timeout, and the connection is closed; a body that trickles in steadily is read whole.
#[tokio::test]
async fn stalled_request_bodies_get_408() {
    bounded(async {
        // Long beside the trickle's 100 ms steps, so a busy machine cannot stretch a step past it.
        let stall = Duration::from_millis(1000);
        let limits = Limits {
            body_read_timeout: stall,
            ..Limits::default()
        };
        let host = TestHost::start_configured(&["hello"], &[], Some(limits)).await;
        let mut conn = RawConnection::open(
            host.addr,
            b"POST /hello HTTP/1.1\r\nhost: t\r\ncontent-length: 1000\r\n\r\nabc",
        )
        .await;
        let started = Instant::now();
        let head = conn.read_head().await;
        let took = started.elapsed();
        assert!(head.starts_with("HTTP/1.1 408"), "{head}");
        assert!(head.contains("connection: close"), "{head}");
        assert!(took >= stall && took < stall * 5, "answered after {took:?}");
        conn.read_line().await;
        conn.expect_closed().await;
        host.wait_for_log(&["path=/hello", "request body stalled"], LOG_WAIT)
            .await;

        // Ten bytes, one every 100 ms: never a second without progress.
        let mut steady = RawConnection::open(
            host.addr,
            b"POST /hello HTTP/1.1\r\nhost: t\r\ncontent-length: 10\r\n\r\n",
        )
        .await;
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            steady.write(b"z").await;
        }
        assert!(steady.read_head().await.starts_with("HTTP/1.1 200"));
    })
    .await;
}

/// Past `max_connections` open connections, new ones are closed as soon as they are accepted,
/// counted, and reported in one log line; a freed place is usable at once.
#[tokio::test]
async fn connections_over_the_limit_are_closed_at_once() {
    bounded(async {
        let limits = Limits {
            max_connections: Some(3),
            ..Limits::default()
        };
        let host = TestHost::start_configured(&["hello"], &[], Some(limits)).await;
        let mut holders = Vec::new();
        for _ in 0..3 {
            holders.push(RawConnection::open(host.addr, b"GET /hello HTTP/1.1\r\n").await);
        }
        let deadline = Instant::now() + LOG_WAIT;
        while host.stats().open_connections() < 3 {
            assert!(
                Instant::now() < deadline,
                "the holders were not all accepted"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for _ in 0..5 {
            let mut extra = RawConnection::open(host.addr, b"").await;
            let started = Instant::now();
            extra.expect_closed().await;
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{:?}",
                started.elapsed()
            );
        }
        assert_eq!(host.stats().refused_connections(), 5);
        host.wait_for_log(
            &["connection limit of 3 open connections reached"],
            LOG_WAIT,
        )
        .await;
        let reports = host
            .log_lines()
            .into_iter()
            .filter(|line| line.contains("connection limit of 3"))
            .count();
        assert_eq!(reports, 1, "one line for a burst of refusals");

        drop(holders.pop());
        let deadline = Instant::now() + LOG_WAIT;
        while host.stats().open_connections() >= 3 {
            assert!(
                Instant::now() < deadline,
                "the closed connection kept its place"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(get(host.addr, "/hello", &[]).await.status, 200);
    })
    .await;
}

/// A `handle` that sleeps (instead of spinning) within its deadline is served normally; one
/// over the deadline gets `504`.
#[tokio::test]
async fn handle_deadline_is_wall_time() {
    bounded(async {
        let generous = "[limits]\nhandle_timeout_ms = 2000\n";
        let host =
            TestHost::start_configured(&["misbehave"], &[("misbehave", generous)], None).await;
        assert_eq!(
            get(host.addr, "/misbehave/slow-handle", &[]).await.text(),
            "slept"
        );
        let tight = "[limits]\nhandle_timeout_ms = 100\n";
        let host = TestHost::start_configured(&["misbehave"], &[("misbehave", tight)], None).await;
        assert_eq!(
            get(host.addr, "/misbehave/slow-handle", &[]).await.status,
            504
        );
        host.wait_for_log(&["path=/misbehave/slow-handle", "deadline"], LOG_WAIT)
            .await;
        host.wait_until_idle(LOG_WAIT).await;
    })
    .await;
}

/// A client that closes its sending side (half-close) still gets everything the plugin sends
/// back; the session then ends as closed by the client.
#[tokio::test]
async fn client_half_close_behaves_like_tcp() {
    bounded(async {
        let host = TestHost::start(&["misbehave"]).await;
        let mut stream = tokio::net::TcpStream::connect(host.addr).await.unwrap();
        stream
            .write_all(&misbehave_upgrade("echo-raw"))
            .await
            .unwrap();
        stream.write_all(b"last words").await.unwrap();
        stream.shutdown().await.unwrap();
        let mut all = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut all))
            .await
            .expect("the host closed the connection")
            .unwrap();
        let text = String::from_utf8_lossy(&all);
        assert!(text.starts_with("HTTP/1.1 101"), "{text}");
        assert!(text.ends_with("last words"), "{text}");
        host.wait_for_log(
            &["plugin=misbehave", "session ended: client closed it"],
            LOG_WAIT,
        )
        .await;
    })
    .await;
}

/// A plugin that closes its sending side (half-close) sends the client a FIN but goes on
/// reading what the client still sends, until the client closes too.
#[tokio::test]
async fn plugin_half_close_behaves_like_tcp() {
    bounded(async {
        let host = TestHost::start(&["misbehave"]).await;
        let mut stream = tokio::net::TcpStream::connect(host.addr).await.unwrap();
        stream
            .write_all(&misbehave_upgrade("half-close"))
            .await
            .unwrap();
        let mut from_plugin = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut from_plugin))
            .await
            .expect("the plugin's side ended")
            .unwrap();
        assert!(String::from_utf8_lossy(&from_plugin).ends_with("bye\n"));
        stream.write_all(b"after your FIN").await.unwrap();
        stream.shutdown().await.unwrap();
        host.wait_for_log(&["read after half-close: after your FIN"], LOG_WAIT)
            .await;
        host.wait_for_log(
            &[
                "path=/misbehave/half-close",
                "session ended: client closed it",
            ],
            LOG_WAIT,
        )
        .await;
    })
    .await;
}

/// Graceful shutdown: new connections are refused, a live WebSocket session gets the drain
/// time, then a `1001 going away` close, and the host finishes.
#[tokio::test]
async fn shutdown_drains_then_closes_sessions_with_1001() {
    bounded(async {
        let limits = Limits {
            drain_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let mut host = TestHost::start_configured(&["echo-raw"], &[], Some(limits)).await;
        let (mut client, _) = connect_async(host.ws_url("/echo-raw")).await.unwrap();
        client.send(Message::text("before")).await.unwrap();
        assert_eq!(
            client.next().await.unwrap().unwrap(),
            Message::text("before")
        );

        let started = Instant::now();
        host.shut_down().await;
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(300),
            "stopped before the drain time: {took:?}"
        );
        assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
        match client.next().await {
            Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Away),
            other => panic!("expected a 1001 close, got {other:?}"),
        }
        host.wait_for_log(&["session ended: host shutting down"], LOG_WAIT)
            .await;
        assert!(
            tokio::net::TcpStream::connect(host.addr).await.is_err(),
            "still accepting"
        );
    })
    .await;
}

/// A session whose client never stops sending is asked to end at shutdown too: its input ends
/// although bytes are always waiting, and the client gets the `1001` close after its echoes.
#[tokio::test]
async fn shutdown_ends_a_session_whose_client_keeps_sending() {
    /// Messages the client sends at most; far more than fit in the sockets' buffers.
    const MAX_MESSAGES: usize = 100_000;
    bounded(async {
        let limits = Limits {
            drain_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let mut host = TestHost::start_configured(&["echo-raw"], &[], Some(limits)).await;
        let (client, _) = connect_async(host.ws_url("/echo-raw")).await.unwrap();
        let (mut sink, mut stream) = client.split();
        let sender = tokio::spawn(async move {
            for _ in 0..MAX_MESSAGES {
                if sink.send(Message::binary(vec![7; 512])).await.is_err() {
                    break;
                }
            }
        });
        // The flood is under way: echoes are coming back.
        assert!(matches!(stream.next().await, Some(Ok(Message::Binary(_)))));
        // Echoes are read all along, as a live client does, so the close can get through.
        let receiver = tokio::spawn(async move {
            let mut echoes = 1;
            loop {
                match stream.next().await {
                    Some(Ok(Message::Binary(_))) if echoes < MAX_MESSAGES => echoes += 1,
                    other => break (echoes, other),
                }
            }
        });
        host.shut_down().await;
        let (echoes, close) = receiver.await.unwrap();
        sender.abort();
        match close {
            Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Away),
            other => panic!("expected a 1001 close after {echoes} echoes, got {other:?}"),
        }
    })
    .await;
}

/// A plugin's `handle` calls in progress are capped by `max_concurrent_requests`: with one
/// call sleeping in `handle`, a second gets `503` with `Retry-After`, and once the first has
/// answered the next is served again.
#[tokio::test]
async fn concurrent_handle_calls_are_capped_per_plugin() {
    bounded(async {
        let one = "[limits]\nmax_concurrent_requests = 1\n";
        let host =
            TestHost::start_configured(&["misbehave", "hello"], &[("misbehave", one)], None).await;
        let addr = host.addr;
        let sleep =
            move || tokio::spawn(async move { get(addr, "/misbehave/slow-handle", &[]).await });
        let mut sleeping = sleep();
        let mut refused = None;
        // The sleeper needs a moment to be admitted; probe until it has been. On a busy machine
        // a probe can be admitted first and the sleeper refused: then it tries again.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline {
            if sleeping.is_finished() {
                let lost = sleeping.await.unwrap();
                assert_eq!(
                    lost.status, 503,
                    "the sleeper answered before any probe was refused"
                );
                sleeping = sleep();
            }
            let reply = get(addr, "/misbehave/ok", &[]).await;
            if reply.status == 503 {
                refused = Some(reply);
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let refused = refused.expect("no request was refused while the plugin was busy");
        assert_eq!(refused.headers["retry-after"], "1");
        // Another plugin is not affected.
        assert_eq!(get(addr, "/hello", &[]).await.status, 200);
        assert_eq!(sleeping.await.unwrap().text(), "slept");
        assert_eq!(get(addr, "/misbehave/ok", &[]).await.status, 200);
        host.wait_for_log(
            &["plugin=misbehave", "limit of 1 concurrent requests"],
            LOG_WAIT,
        )
        .await;
    })
    .await;
}
