//! The plugin's events and how a connection ends: `on-open` first, `on-message` per message,
//! `on-close` with the client's code; a plugin's close; a plugin that traps or loops; the
//! host's keep-alive pings and idle timeout; shutdown.

use std::time::Duration;

use futures_util::SinkExt as _;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use switchyard_host::Limits;
use switchyard_tests::client::RawConnection;
use switchyard_tests::{TestHost, bounded};

use super::{LOG_WAIT, ask, closed_with, next_message, open, text};

/// `on-close` gets the client's close code and reason, after the connection left its topics;
/// it can still read the attachment but no longer send. The plugin reports it all on the topic
/// `closed`.
#[tokio::test]
async fn on_close_gets_the_clients_code_and_reason() {
    bounded(async {
        let host = TestHost::start(&["managed"]).await;
        let (mut watcher, _) = open(&host, "/managed?topic=closed").await;
        let (mut leaving, id) = open(&host, "/managed?attach=alice").await;
        leaving
            .close(Some(CloseFrame {
                code: CloseCode::Library(4001),
                reason: "see you".into(),
            }))
            .await
            .unwrap();
        assert_eq!(
            text(&mut watcher).await,
            format!("closed:{id}:4001:see you:alice:error:unknown-connection")
        );
        // A client that just vanishes is reported as 1006.
        let (vanishing, id) = open(&host, "/managed").await;
        drop(vanishing);
        assert_eq!(
            text(&mut watcher).await,
            format!("closed:{id}:1006:::error:unknown-connection")
        );
        host.wait_for_log(&["plugin=managed", "client went away"], LOG_WAIT)
            .await;
    })
    .await;
}

/// The plugin closes its connection: the client gets the plugin's code and reason, answers,
/// and `on-close` sees the client's answer. A code a server may not send is refused.
#[tokio::test]
async fn the_plugin_closes_a_connection() {
    bounded(async {
        let host = TestHost::start(&["managed"]).await;
        let (mut watcher, _) = open(&host, "/managed?topic=closed").await;
        let (mut client, id) = open(&host, "/managed").await;
        assert_eq!(
            ask(&mut client, "close:1005:no").await,
            "error:invalid-close-code"
        );
        let long = "r".repeat(124);
        assert_eq!(
            ask(&mut client, &format!("close:4000:{long}")).await,
            "error:too-large"
        );
        client
            .send(Message::text("close:4000:done here"))
            .await
            .unwrap();
        assert_eq!(
            closed_with(&mut client).await,
            (CloseCode::Library(4000), "done here".to_owned())
        );
        // Reading on sends the client's answer (tungstenite echoes the code), then the end.
        assert!(futures_util::StreamExt::next(&mut client).await.is_none());
        assert_eq!(
            text(&mut watcher).await,
            format!("closed:{id}:4000:done here::error:unknown-connection")
        );
        host.wait_for_log(
            &["connection closed by the host or plugin (4000", "answered"],
            LOG_WAIT,
        )
        .await;
    })
    .await;
}

/// A plugin that traps in `on-message` costs only that connection: it is closed with `1011`
/// and a precise log line, and another connection of the same plugin keeps working.
#[tokio::test]
async fn a_trap_closes_only_its_connection_with_1011() {
    bounded(async {
        let host = TestHost::start(&["managed"]).await;
        let (mut bystander, _) = open(&host, "/managed").await;
        let (mut victim, _) = open(&host, "/managed").await;
        victim.send(Message::text("trap")).await.unwrap();
        assert_eq!(closed_with(&mut victim).await.0, CloseCode::Error);
        host.wait_for_log(
            &[
                "plugin=managed",
                "connection=",
                "plugin trapped in on-message",
            ],
            LOG_WAIT,
        )
        .await;
        assert_eq!(ask(&mut bystander, "echo:still here").await, "still here");
    })
    .await;
}

/// A plugin that loops in `on-message` is interrupted at its CPU limit per event: `1011`, and
/// the host and other connections keep going.
#[tokio::test]
async fn a_loop_is_cut_off_at_its_cpu_limit() {
    bounded(async {
        let sidecar = "[limits]\nrun_cpu_ms = 100\n";
        let host = TestHost::start_configured(&["managed"], &[("managed", sidecar)], None).await;
        let (mut bystander, _) = open(&host, "/managed").await;
        let (mut looping, _) = open(&host, "/managed").await;
        looping.send(Message::text("loop")).await.unwrap();
        assert_eq!(ask(&mut bystander, "echo:meanwhile").await, "meanwhile");
        assert_eq!(closed_with(&mut looping).await.0, CloseCode::Error);
        host.wait_for_log(&["CPU limit per event exceeded"], LOG_WAIT)
            .await;
        assert_eq!(ask(&mut bystander, "echo:after").await, "after");
    })
    .await;
}

/// A silent client is pinged after `ping_interval_ms`; one that answers (tungstenite answers
/// as it reads) stays; one that sends nothing at all is closed with `1001` after
/// `websocket_idle_timeout_ms`.
#[tokio::test]
async fn silent_clients_are_pinged_and_dead_ones_closed() {
    bounded(async {
        let sidecar = "[limits]\nping_interval_ms = 100\nwebsocket_idle_timeout_ms = 400\n";
        let host = TestHost::start_configured(&["managed"], &[("managed", sidecar)], None).await;
        let (mut alive, _) = open(&host, "/managed").await;
        // Reading answers the pings; several idle timeouts pass.
        let mut pings = 0;
        while pings < 6 {
            if let Message::Ping(_) = next_message(&mut alive).await {
                pings += 1;
            }
        }
        assert_eq!(ask(&mut alive, "echo:alive").await, "alive");

        let mut dead = RawConnection::open(
            host.addr,
            b"GET /managed HTTP/1.1\r\nhost: t\r\nconnection: upgrade\r\nupgrade: websocket\r\n\
              sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await;
        assert!(dead.read_head().await.starts_with("HTTP/1.1 101"));
        let rest = dead.read_to_end_within(Duration::from_secs(5)).await;
        // open:<id>, ping(s), then a close frame with 1001.
        let close_at = rest
            .windows(2)
            .position(|w| w == [0x88, 2 + "idle for 400ms".len() as u8])
            .expect("a close frame");
        assert_eq!(rest[close_at + 2..close_at + 4], 1001u16.to_be_bytes());
        host.wait_for_log(&["idle for 400ms"], LOG_WAIT).await;
    })
    .await;
}

/// At shutdown, once the drain timeout has passed, managed connections get `1001`, and the
/// host waits for them.
#[tokio::test]
async fn shutdown_closes_connections_with_1001() {
    bounded(async {
        let limits = Limits {
            drain_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let mut host = TestHost::start_configured(&["managed"], &[], Some(limits)).await;
        let (mut client, _) = open(&host, "/managed").await;
        let closing = tokio::spawn(async move { closed_with(&mut client).await });
        host.shut_down().await;
        // The host returned from its drain: every connection has ended.
        assert_eq!(host.stats().live_websockets(), 0);
        let (code, reason) = closing.await.unwrap();
        assert_eq!(code, CloseCode::Away);
        assert_eq!(reason, "server shutting down");
    })
    .await;
}
