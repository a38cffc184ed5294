//! The host's two engines: a plugin of the `plugin` world (no `raw-upgrade` export) runs on the
//! `plain` engine, a `raw-plugin` on the `concurrent` one; both serve side by side, a plugin
//! may change kind between versions while connections of the old kind live on, and a `plugin`
//! that answers with a raw upgrade anyway is refused.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use hyper::StatusCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use switchyard_tests::{TestHost, bounded, client, eventually};

/// How long a test waits for a log line, a gauge or a message.
const WAIT: Duration = Duration::from_secs(10);

type Client = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(host: &TestHost, path: &str) -> Client {
    let (client, response) = connect_async(host.ws_url(path))
        .await
        .expect("WebSocket handshake");
    assert_eq!(response.status(), 101);
    client
}

/// Sends `text` and returns the next text message.
async fn ask(client: &mut Client, text: &str) -> String {
    client.send(Message::text(text)).await.expect("sending");
    next_text(client).await
}

/// The next text message, skipping pings.
async fn next_text(client: &mut Client) -> String {
    loop {
        let message = tokio::time::timeout(WAIT, client.next())
            .await
            .expect("an answer within the wait")
            .expect("the connection stayed open")
            .expect("a valid frame");
        match message {
            Message::Text(text) => return text.as_str().to_owned(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// The managed `echo` runs on the plain engine and the raw `echo-raw` and `kv` on the
/// concurrent one, as the load log says; a managed connection and a raw session then echo
/// side by side, each counted as what it is.
#[tokio::test]
async fn managed_and_raw_plugins_serve_side_by_side_each_on_its_engine() {
    bounded(async {
        let host = TestHost::start(&["echo", "echo-raw", "hello", "kv"]).await;
        for (plugin, engine) in [
            ("echo", "plain"),
            ("hello", "plain"),
            ("echo-raw", "concurrent"),
            ("kv", "concurrent"),
        ] {
            host.wait_for_log(
                &[
                    &format!("plugin={plugin} "),
                    &format!("engine={engine}"),
                    "serving plugin",
                ],
                WAIT,
            )
            .await;
        }
        let mut managed = connect(&host, "/echo").await;
        let mut raw = connect(&host, "/echo-raw").await;
        for round in 0..3 {
            assert_eq!(
                ask(&mut managed, &format!("m{round}")).await,
                format!("m{round}")
            );
            assert_eq!(
                ask(&mut raw, &format!("r{round}")).await,
                format!("r{round}")
            );
        }
        assert_eq!(host.stats().live_websockets(), 1, "the managed connection");
        assert_eq!(host.stats().live_sessions(), 1, "the raw session");
        let hello = client::get(host.addr, "/hello", &[]).await;
        assert_eq!(hello.status, StatusCode::OK);
    })
    .await;
}

/// A plugin without the `raw-upgrade` export that answers with a raw upgrade gets `502`, and
/// the log says what to build it as.
#[tokio::test]
async fn a_raw_upgrade_from_a_plugin_without_raw_upgrade_is_refused() {
    bounded(async {
        let host = TestHost::start(&["managed"]).await;
        let reply = connect_async(host.ws_url("/managed?raw-upgrade=1")).await;
        match reply {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
            }
            other => panic!("expected a 502, got {other:?}"),
        }
        host.wait_for_log(
            &[
                "plugin=managed",
                "does not export raw-upgrade",
                "raw-upgrade` feature",
            ],
            WAIT,
        )
        .await;
        assert_eq!(host.stats().live_sessions(), 0);
        // The plugin still serves managed connections.
        let mut ok = connect(&host, "/managed").await;
        assert!(next_text(&mut ok).await.starts_with("open:"));
        assert_eq!(ask(&mut ok, "echo:still here").await, "still here");
    })
    .await;
}

/// A raw plugin replaced by a managed one under the same name: the live raw session keeps
/// running on its instance (concurrent engine) while new connections get the managed version
/// (plain engine).
#[tokio::test]
async fn a_raw_plugin_reloaded_as_managed_keeps_its_live_sessions() {
    bounded(async {
        let host = TestHost::start(&[]).await;
        host.install_plugin("echo-raw", "switch");
        host.wait_for_log(
            &["plugin=switch ", "engine=concurrent", "serving plugin"],
            WAIT,
        )
        .await;
        let mut raw = connect(&host, "/switch").await;
        assert_eq!(ask(&mut raw, "before").await, "before");

        host.install_plugin("echo", "switch");
        host.wait_for_log(
            &[
                "plugin=switch ",
                "engine=plain",
                "previous_engine=concurrent",
                "plugin reloaded",
            ],
            WAIT,
        )
        .await;
        assert_eq!(
            ask(&mut raw, "after").await,
            "after",
            "the raw session lives on"
        );
        assert_eq!(host.stats().live_sessions(), 1);

        let mut managed = connect(&host, "/switch").await;
        assert_eq!(ask(&mut managed, "new").await, "new");
        assert_eq!(host.stats().live_websockets(), 1, "the new one is managed");
        assert_eq!(ask(&mut raw, "still").await, "still");
        raw.close(None).await.expect("closing the raw session");
        eventually("the raw session ended", WAIT, || {
            host.stats().live_sessions() == 0
        })
        .await;
        assert_eq!(ask(&mut managed, "alone").await, "alone");
    })
    .await;
}

/// A managed plugin replaced by a raw one under the same name: the live managed connection
/// keeps its instance (plain engine) until it hibernates, then wakes on the new version, on the
/// concurrent engine. (The new version is `misbehave`, whose events echo what they get.)
#[tokio::test]
async fn a_managed_plugin_reloaded_as_raw_wakes_its_connections_on_the_new_engine() {
    bounded(async {
        // Long enough for the reload (compiling misbehave) to finish on a busy machine first.
        let sidecar = "[limits]\nhibernate_after_ms = 5000\n";
        let host = TestHost::start_configured(&["managed"], &[("managed", sidecar)], None).await;
        let mut client = connect(&host, "/managed?attach=kept").await;
        assert!(next_text(&mut client).await.starts_with("open:"));
        assert_eq!(ask(&mut client, "version?").await, "version:managed-1");

        host.install_plugin("misbehave", "managed");
        host.wait_for_log(
            &[
                "plugin=managed ",
                "engine=concurrent",
                "previous_engine=plain",
                "plugin reloaded",
            ],
            WAIT,
        )
        .await;
        // Still awake: the old version, on the plain engine, answers.
        assert_eq!(ask(&mut client, "version?").await, "version:managed-1");
        eventually("the connection hibernated", WAIT, || {
            host.stats().live_instances() == 0
        })
        .await;
        // Woken on the raw plugin, which echoes.
        assert_eq!(ask(&mut client, "version?").await, "version?");
        host.wait_for_log(&["woke on a new version of the plugin"], WAIT)
            .await;
        // And the new version takes raw upgrades.
        let ok = client::get(host.addr, "/managed/ok", &[]).await;
        assert_eq!(ok.status, StatusCode::OK);
    })
    .await;
}

/// A managed plugin on the plain engine that loops in `on-message` and one that traps are each
/// closed with `1011`, while a raw session on the concurrent engine and another managed
/// connection keep echoing: the plain engine preempts at epoch ticks like the other one.
#[tokio::test]
async fn a_loop_and_a_trap_on_the_plain_engine_cost_only_their_connections() {
    bounded(async {
        let sidecar = "[limits]\nrun_cpu_ms = 100\n";
        let host =
            TestHost::start_configured(&["managed", "echo-raw"], &[("managed", sidecar)], None)
                .await;
        host.wait_for_log(&["plugin=managed ", "engine=plain", "serving plugin"], WAIT)
            .await;
        let mut raw = connect(&host, "/echo-raw").await;
        let mut bystander = connect(&host, "/managed").await;
        assert!(next_text(&mut bystander).await.starts_with("open:"));
        let mut looping = connect(&host, "/managed").await;
        assert!(next_text(&mut looping).await.starts_with("open:"));
        let mut trapping = connect(&host, "/managed").await;
        assert!(next_text(&mut trapping).await.starts_with("open:"));

        looping.send(Message::text("loop")).await.unwrap();
        trapping.send(Message::text("trap")).await.unwrap();
        assert_eq!(ask(&mut raw, "meanwhile").await, "meanwhile");
        assert_eq!(ask(&mut bystander, "echo:meanwhile").await, "meanwhile");
        for (client, why) in [
            (&mut looping, "CPU limit per event exceeded"),
            (&mut trapping, "plugin trapped in on-message"),
        ] {
            let closed = loop {
                match tokio::time::timeout(WAIT, client.next())
                    .await
                    .expect("a close within the wait")
                {
                    Some(Ok(Message::Close(Some(frame)))) => break frame,
                    Some(Ok(_)) => {}
                    other => panic!("expected a close frame, got {other:?}"),
                }
            };
            assert_eq!(u16::from(closed.code), 1011, "{why}");
            host.wait_for_log(&["plugin=managed", why], WAIT).await;
        }
        assert_eq!(ask(&mut raw, "after").await, "after");
        assert_eq!(ask(&mut bystander, "echo:after").await, "after");
    })
    .await;
}
