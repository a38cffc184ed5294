//! Hibernation: a connection with no events for `hibernate_after_ms` loses its instance (its
//! pool slot is free) but not its socket, attachment or topics; pings are still answered; the
//! next event runs on a fresh instance of the plugin's current version.

use futures_util::SinkExt as _;
use tokio_tungstenite::tungstenite::{Bytes, Message};

use switchyard_tests::{TestHost, bounded, eventually};

use super::{LOG_WAIT, ask, next_message, open, text};

const SIDECAR: &str = "[limits]\nhibernate_after_ms = 200\n";
/// How often a connection kept busy through a reload asks again (well inside its 1.5 s idle time).
const RELOAD_POLL: std::time::Duration = std::time::Duration::from_millis(200);
/// Polls before a reload counts as lost: 30 s at [`RELOAD_POLL`].
const RELOAD_POLLS: u32 = 150;

/// Waits until no managed connection holds an instance.
async fn all_hibernated(host: &TestHost) {
    eventually("every connection hibernated", LOG_WAIT, || {
        host.stats().awake_websockets() == 0 && host.stats().live_instances() == 0
    })
    .await;
}

/// A hibernated connection keeps its socket, attachment and topics, answers pings without
/// waking, and its next message wakes a fresh instance (its in-memory count starts again).
#[tokio::test]
async fn a_hibernated_connection_wakes_with_its_attachment() {
    bounded(async {
        let host = TestHost::start_configured(&["managed"], &[("managed", SIDECAR)], None).await;
        let (mut client, _) = open(&host, "/managed?topic=room&attach=alice").await;
        assert_eq!(ask(&mut client, "count?").await, "count:1");
        assert_eq!(ask(&mut client, "count?").await, "count:2");
        assert_eq!(host.stats().awake_websockets(), 1);
        all_hibernated(&host).await;
        host.wait_for_log(
            &["plugin=managed", "hibernating: no events for 200ms"],
            LOG_WAIT,
        )
        .await;
        assert_eq!(host.stats().live_websockets(), 1, "the socket stays open");

        // Pings are answered by the host: no instance is made for them.
        client
            .send(Message::Ping(Bytes::from_static(b"still there?")))
            .await
            .unwrap();
        assert_eq!(
            next_message(&mut client).await,
            Message::Pong(Bytes::from_static(b"still there?"))
        );
        assert_eq!(host.stats().live_instances(), 0);

        // Topics reach it while hibernated, without waking it.
        let (mut publisher, _) = open(&host, "/managed").await;
        publisher
            .send(Message::text("pub:room:while asleep"))
            .await
            .unwrap();
        assert_eq!(text(&mut client).await, "while asleep");
        drop(publisher);
        all_hibernated(&host).await;

        // The next message wakes a fresh instance: in-memory state is gone, the attachment is
        // not.
        assert_eq!(ask(&mut client, "count?").await, "count:1");
        assert_eq!(ask(&mut client, "attachment?").await, "attachment:alice");
        host.wait_for_log(&["on-message: woke from hibernation"], LOG_WAIT)
            .await;
    })
    .await;
}

/// A plugin reloaded while a connection is open: the connection's events run on the version
/// its live instance was made from until it hibernates, then on the new version. (The new
/// "version" is the `echo` plugin installed under the same name, which answers `version?` with
/// `version?`.)
#[tokio::test]
async fn after_a_reload_events_move_to_the_new_version_at_the_next_wake() {
    bounded(async {
        let sidecar = "[limits]\nhibernate_after_ms = 1500\n";
        let host = TestHost::start_configured(&["managed"], &[("managed", sidecar)], None).await;
        let (mut client, _) = open(&host, "/managed?attach=kept").await;
        assert_eq!(ask(&mut client, "version?").await, "version:managed-1");
        host.install_plugin("echo", "managed");
        // Keep the connection busy while the new version compiles (slow on a loaded machine),
        // so it cannot hibernate before the reload lands: every answer resets its idle clock.
        let reloaded = |host: &TestHost| {
            host.log_lines()
                .iter()
                .any(|line| line.contains("plugin=managed") && line.contains("plugin reloaded"))
        };
        for _ in 0..RELOAD_POLLS {
            if reloaded(&host) {
                break;
            }
            assert_eq!(ask(&mut client, "version?").await, "version:managed-1");
            tokio::time::sleep(RELOAD_POLL).await;
        }
        assert!(reloaded(&host), "the plugin was not reloaded in time");
        // Still awake: the old version answers.
        assert_eq!(ask(&mut client, "version?").await, "version:managed-1");
        all_hibernated(&host).await;
        // Woken on the new version.
        assert_eq!(ask(&mut client, "version?").await, "version?");
        host.wait_for_log(&["woke on a new version of the plugin"], LOG_WAIT)
            .await;
        // New connections are the new version's from the start.
        let mut fresh = super::connect(&host, "/managed").await;
        assert_eq!(ask(&mut fresh, "hello").await, "hello");
    })
    .await;
}

/// A hibernated connection of a plugin that was removed is closed with `1001` at its next
/// event.
#[tokio::test]
async fn a_removed_plugin_closes_its_hibernated_connections_at_the_next_event() {
    bounded(async {
        let host = TestHost::start_configured(&["managed"], &[("managed", SIDECAR)], None).await;
        let (mut client, _) = open(&host, "/managed").await;
        all_hibernated(&host).await;
        std::fs::remove_file(host.plugins_dir().join("managed.wasm")).unwrap();
        host.wait_for_log(&["plugin=managed", "removed"], LOG_WAIT)
            .await;
        client.send(Message::text("echo:anyone?")).await.unwrap();
        let (code, reason) = super::closed_with(&mut client).await;
        assert_eq!(u16::from(code), 1001);
        assert_eq!(reason, "plugin removed");
        host.wait_for_log(
            &["the plugin was removed; no version left to run on-message"],
            LOG_WAIT,
        )
        .await;
    })
    .await;
}

/// More connections than `--max-awake-websockets` all open and all get their events: a new one
/// over the budget hibernates right after `on-open`, and one that must wake waits while the
/// awake ones between events hibernate early; no more than the budget is ever awake.
#[tokio::test]
async fn more_connections_than_awake_slots_all_get_their_events() {
    bounded(async {
        let limits = switchyard_host::Limits {
            max_awake_websockets: 2,
            ..switchyard_host::Limits::default()
        };
        let host = TestHost::start_configured(&["managed"], &[], Some(limits)).await;
        let mut clients = Vec::new();
        for _ in 0..6 {
            clients.push(open(&host, "/managed?attach=kept").await);
        }
        assert!(host.stats().awake_websockets() <= 2);
        for round in 0..3 {
            for (client, _) in &mut clients {
                assert_eq!(
                    ask(client, &format!("echo:{round}")).await,
                    round.to_string()
                );
                assert!(host.stats().awake_websockets() <= 2);
            }
        }
        for (client, _) in &mut clients {
            assert_eq!(ask(client, "attachment?").await, "attachment:kept");
        }
        assert_eq!(host.stats().live_websockets(), 6);
        host.wait_for_log(
            &["hibernating early: the awake slots are all taken"],
            LOG_WAIT,
        )
        .await;
    })
    .await;
}
