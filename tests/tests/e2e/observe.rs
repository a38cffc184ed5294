//! What the operator sees: `/metrics` on the admin listener counts exactly the traffic a test
//! made, `/healthz` and `/readyz` follow the host's life, nothing of it is reachable through the
//! public listener (`/readyz` also follows the Redis broker), and the access log has one line
//! per request and per ended session.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use switchyard_host::config::pubsub::PubSubConfig;
use switchyard_tests::client::{RawConnection, get, misbehave_upgrade};
use switchyard_tests::redis::RedisServer;
use switchyard_tests::{TestHost, bounded};

/// How long counters that are updated when a session ends may take to show it.
const SETTLE: Duration = Duration::from_secs(10);
/// The message the WebSocket clients send: short enough for a 2-byte frame header.
const MESSAGE: &str = "metrics, please";
/// WebSocket clients, and messages each sends.
const CLIENTS: usize = 2;
const MESSAGES: usize = 3;
/// What the raw session sends (and gets back).
const RAW_BYTES: &[u8] = b"raw bytes, counted";

/// Opens a WebSocket to the managed `echo`, sends [`MESSAGES`], reads the echoes, and closes
/// it with a close frame.
async fn echo_session(host: &TestHost) {
    let (mut client, response) = connect_async(host.ws_url("/echo")).await.unwrap();
    assert_eq!(response.status(), 101);
    for _ in 0..MESSAGES {
        client.send(Message::text(MESSAGE)).await.unwrap();
        let echoed = tokio::time::timeout(SETTLE, client.next()).await.unwrap();
        assert_eq!(echoed.unwrap().unwrap(), Message::text(MESSAGE));
    }
    client
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "done".into(),
        }))
        .await
        .unwrap();
    // Read the host's close reply, so the close handshake completes.
    while let Ok(Some(Ok(_))) = tokio::time::timeout(SETTLE, client.next()).await {}
}

/// Requests of every status class, a trap, managed sessions with messages, a reload and a load
/// failure: each counter says exactly how many there were.
#[tokio::test]
async fn metrics_count_exactly_the_traffic() {
    bounded(async {
        let host = TestHost::start(&["hello", "misbehave", "echo"]).await;
        for _ in 0..3 {
            assert_eq!(get(host.addr, "/hello", &[]).await.status, 200);
        }
        for _ in 0..2 {
            assert_eq!(
                get(host.addr, "/misbehave/no-such-case", &[]).await.status,
                404
            );
        }
        assert_eq!(
            get(host.addr, "/misbehave/trap-handle", &[]).await.status,
            500
        );
        for _ in 0..CLIENTS {
            echo_session(&host).await;
        }
        // A raw session: bytes through the plugin's own echo, then the client closes.
        let mut raw = RawConnection::open(host.addr, &misbehave_upgrade("echo-raw")).await;
        assert!(raw.read_head().await.starts_with("HTTP/1.1 101"));
        raw.write(RAW_BYTES).await;
        assert_eq!(raw.read_exact(RAW_BYTES.len()).await, RAW_BYTES);
        drop(raw);
        let raw_ended = [
            ("plugin", "misbehave"),
            ("kind", "raw"),
            ("reason", "client_closed"),
        ];
        wait_for_sample(
            &host,
            "switchyard_plugin_sessions_ended_total",
            &raw_ended,
            1.0,
        )
        .await;
        let ended = [
            ("plugin", "echo"),
            ("kind", "managed"),
            ("reason", "client_closed"),
        ];
        wait_for_sample(
            &host,
            "switchyard_plugin_sessions_ended_total",
            &ended,
            CLIENTS as f64,
        )
        .await;

        let metrics = host.metrics().await;
        let requests = |plugin, class| {
            metrics.value(
                "switchyard_plugin_requests_total",
                &[("plugin", plugin), ("class", class)],
            )
        };
        assert_eq!(requests("hello", "2xx"), 3.0);
        assert_eq!(requests("hello", "5xx"), 0.0);
        assert_eq!(requests("misbehave", "4xx"), 2.0);
        assert_eq!(requests("misbehave", "5xx"), 1.0);
        assert_eq!(requests("misbehave", "1xx"), 1.0);
        let raw_bytes = RAW_BYTES.len() as f64;
        assert_eq!(
            metrics.value(
                "switchyard_plugin_received_bytes_total",
                &[("plugin", "misbehave")]
            ),
            raw_bytes
        );
        assert_eq!(
            metrics.value(
                "switchyard_plugin_sessions",
                &[("plugin", "misbehave"), ("kind", "raw")]
            ),
            0.0
        );
        assert_eq!(requests("echo", "1xx"), CLIENTS as f64);
        let handled = |plugin| {
            metrics.value(
                "switchyard_plugin_handle_seconds_count",
                &[("plugin", plugin)],
            )
        };
        assert_eq!(handled("hello"), 3.0);
        assert_eq!(handled("misbehave"), 4.0);
        assert_eq!(
            metrics.value(
                "switchyard_plugin_handle_seconds_bucket",
                &[("plugin", "hello"), ("le", "+Inf")]
            ),
            3.0
        );
        assert_eq!(
            metrics.family_of("switchyard_plugin_handle_seconds_bucket"),
            Some("histogram")
        );
        assert_eq!(
            metrics.value("switchyard_plugin_traps_total", &[("plugin", "misbehave")]),
            1.0
        );
        assert_eq!(
            metrics.value("switchyard_plugin_traps_total", &[("plugin", "hello")]),
            0.0
        );
        let sessions = [("plugin", "echo"), ("kind", "managed")];
        assert_eq!(metrics.value("switchyard_plugin_sessions", &sessions), 0.0);
        assert_eq!(
            metrics.value("switchyard_plugin_sessions_ended_total", &ended),
            CLIENTS as f64
        );
        // Payload bytes in; frames (2-byte header + payload) out.
        let payload = (CLIENTS * MESSAGES * MESSAGE.len()) as f64;
        let framed = (CLIENTS * MESSAGES * (MESSAGE.len() + 2)) as f64;
        assert_eq!(
            metrics.value(
                "switchyard_plugin_received_bytes_total",
                &[("plugin", "echo")]
            ),
            payload
        );
        assert_eq!(
            metrics.value("switchyard_plugin_sent_bytes_total", &[("plugin", "echo")]),
            framed
        );
        assert_eq!(
            metrics.value("switchyard_refused_connections_total", &[]),
            0.0
        );
        assert_eq!(metrics.value("switchyard_websockets", &[]), 0.0);
        assert_eq!(
            metrics.family_of("switchyard_open_connections"),
            Some("gauge")
        );
        assert_eq!(
            metrics.value("switchyard_plugin_reloads_total", &[("plugin", "hello")]),
            0.0
        );

        // A new version of `hello`, and a file that is no plugin.
        host.install_plugin("echo", "hello");
        std::fs::write(host.plugins_dir().join("broken.wasm"), b"not a component").unwrap();
        wait_for_sample(
            &host,
            "switchyard_plugin_reloads_total",
            &[("plugin", "hello")],
            1.0,
        )
        .await;
        wait_for_sample(
            &host,
            "switchyard_plugin_load_failures_total",
            &[("plugin", "broken")],
            1.0,
        )
        .await;
        let metrics = host.metrics().await;
        assert_eq!(
            metrics.value(
                "switchyard_plugin_load_seconds_count",
                &[("plugin", "hello")]
            ),
            2.0
        );
        assert_eq!(
            metrics.value(
                "switchyard_plugin_load_seconds_count",
                &[("plugin", "broken")]
            ),
            1.0
        );
        assert_eq!(
            metrics.value(
                "switchyard_plugin_load_failures_total",
                &[("plugin", "hello")]
            ),
            0.0
        );
    })
    .await;
}

/// Scrapes until sample `name` with `labels` is `want`; fails after [`SETTLE`].
async fn wait_for_sample(host: &TestHost, name: &str, labels: &[(&str, &str)], want: f64) {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let got = host.metrics().await.get(name, labels);
        if got == Some(want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}{labels:?} is {got:?}, not {want}, after {SETTLE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `/healthz` and `/readyz` answer 200 while the host serves and 503 once it shuts down (while
/// it drains a live WebSocket).
#[tokio::test]
async fn health_follows_the_shutdown() {
    bounded(async {
        let mut host = TestHost::start(&["echo"]).await;
        assert_eq!(get(host.admin, "/healthz", &[]).await.status, 200);
        assert_eq!(get(host.admin, "/readyz", &[]).await.status, 200);
        assert_eq!(get(host.admin, "/nothing", &[]).await.status, 404);
        // A live WebSocket holds the drain open while the health is asked.
        let (_client, _) = connect_async(host.ws_url("/echo")).await.unwrap();
        host.begin_shutdown();
        let admin = host.admin;
        let mut last = 0;
        for _ in 0..200 {
            last = get(admin, "/healthz", &[]).await.status.as_u16();
            if last == 503 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(last, 503, "/healthz during the drain");
        assert_eq!(get(admin, "/readyz", &[]).await.status, 503);
    })
    .await;
}

/// How long a host may take to notice Redis going or coming back.
const BROKER_CHANGE: Duration = Duration::from_secs(15);

/// Asks `/readyz` until it answers `want`; fails after [`BROKER_CHANGE`].
async fn wait_for_readiness(host: &TestHost, want: u16) {
    let deadline = tokio::time::Instant::now() + BROKER_CHANGE;
    loop {
        let got = get(host.admin, "/readyz", &[]).await.status.as_u16();
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz answered {got}, not {want}, after {BROKER_CHANGE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// With topics shared through Redis, `/readyz` says whether the broker is connected: it turns
/// `503` when Redis is killed and `200` again when it is back, while `/healthz` stays `200`
/// (the host serves locally all along). Skipped, saying so, without `redis-server`.
#[tokio::test]
async fn readiness_follows_the_broker() {
    bounded(async {
        let Some(mut redis) = RedisServer::start() else {
            return;
        };
        let config = PubSubConfig::redis(&redis.url()).expect("a Redis URL");
        let host = TestHost::start_with_pubsub(&["echo"], config).await;
        wait_for_readiness(&host, 200).await;
        assert_eq!(host.metrics().await.value("switchyard_pubsub_up", &[]), 1.0);
        redis.kill();
        wait_for_readiness(&host, 503).await;
        assert_eq!(get(host.admin, "/healthz", &[]).await.status, 200);
        assert_eq!(host.metrics().await.value("switchyard_pubsub_up", &[]), 0.0);
        redis.restart();
        wait_for_readiness(&host, 200).await;
        assert!(
            host.metrics()
                .await
                .value("switchyard_pubsub_connects_total", &[])
                >= 2.0
        );
    })
    .await;
}

/// The public listener serves none of the admin paths: they are plugin routes there (and with
/// no such plugin, 404).
#[tokio::test]
async fn admin_paths_are_not_on_the_public_listener() {
    bounded(async {
        let host = TestHost::start(&["hello"]).await;
        for path in ["/metrics", "/healthz", "/readyz"] {
            let reply = get(host.addr, path, &[]).await;
            assert_eq!(reply.status, 404, "{path}");
            assert!(!reply.text().contains("switchyard_"), "{path}");
        }
        assert_eq!(get(host.admin, "/metrics", &[]).await.status, 200);
    })
    .await;
}

/// With the access log on, a request and an ended managed session each give one line with
/// their fields.
#[tokio::test]
async fn the_access_log_has_a_line_per_request_and_session() {
    bounded(async {
        let host = TestHost::start_with_access_log(&["hello", "echo"]).await;
        assert_eq!(get(host.addr, "/hello?x=1", &[]).await.status, 200);
        let line = host
            .wait_for_log(&["switchyard::access", "request", "path=/hello"], SETTLE)
            .await;
        for field in [
            "method=\"GET\"",
            "status=200",
            "plugin=\"hello\"",
            "http=\"HTTP/1.1\"",
            "bytes_in=0",
            "duration_us=",
        ] {
            assert!(line.contains(field), "{field} not in {line}");
        }
        assert_eq!(get(host.addr, "/nobody", &[]).await.status, 404);
        let line = host
            .wait_for_log(&["switchyard::access", "path=/nobody"], SETTLE)
            .await;
        assert!(
            line.contains("status=404") && line.contains("plugin=\"-\""),
            "{line}"
        );
        echo_session(&host).await;
        let line = host
            .wait_for_log(
                &["switchyard::access", "session", "kind=\"managed\""],
                SETTLE,
            )
            .await;
        let payload = MESSAGES * MESSAGE.len();
        for field in [
            "plugin=\"echo\"".to_owned(),
            "reason=\"client_closed\"".to_owned(),
            format!("bytes_in={payload}"),
        ] {
            assert!(line.contains(&field), "{field} not in {line}");
        }
    })
    .await;
}
