//! Shared instances (`instances = "shared"` in the sidecar): each event borrows one of the
//! plugin's parked instances and hands it back, so all the plugin's connections run on a few
//! instances; a trap costs only the connection whose event trapped; every event runs the
//! plugin's current version; parked instances give way to connections waiting for a slot.

use futures_util::SinkExt as _;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use switchyard_tests::{TestHost, bounded, eventually};

use super::{LOG_WAIT, ask, closed_with, connect, open};

/// The sidecar that makes a plugin share its instances. Parked instances expire with the
/// hibernation timer: an hour, so that a slow run cannot lose them halfway through a test.
const SHARED: &str = "instances = \"shared\"\n[limits]\nhibernate_after_ms = 3600000\n";
/// Longest a reload may take to land (compiling is slow on a loaded machine).
const RELOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// Most instances parked per plugin (the host's `MAX_PARKED_PER_PLUGIN`).
const MAX_PARKED: u32 = 8;
/// Connections that take turns in the sharing test: more than can be parked.
const MEMBERS: usize = 20;

/// A host serving the `managed` plugin with shared instances.
async fn start_shared() -> TestHost {
    TestHost::start_configured(&["managed"], &[("managed", SHARED)], None).await
}

/// Waits until no connection holds an instance: the last event's instance is parked.
async fn parked(host: &TestHost) {
    eventually("the instance handed back", LOG_WAIT, || {
        host.stats().awake_websockets() == 0
    })
    .await;
}

/// The number in a `count:<n>` answer.
fn count(answer: &str) -> u64 {
    answer
        .strip_prefix("count:")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("expected count:<n>, got {answer:?}"))
}

/// Events of different connections run one after another on the same instance (its in-memory
/// count goes on from one connection to the next), and however many connections take turns,
/// the host keeps no more than a few instances, none of them held between events.
#[tokio::test]
async fn the_plugins_connections_share_its_instances() {
    bounded(async {
        let host = start_shared().await;
        let mut members = Vec::new();
        for _ in 0..MEMBERS {
            members.push(open(&host, "/managed?attach=kept").await.0);
            parked(&host).await;
        }
        let mut previous = None;
        for member in &mut members {
            let seen = count(&ask(member, "count?").await);
            if let Some(previous) = previous {
                assert_eq!(seen, previous + 1, "the next event ran on another instance");
            }
            previous = Some(seen);
            parked(&host).await;
        }
        assert_eq!(host.stats().live_websockets(), MEMBERS as u32);
        let live = host.stats().live_instances();
        assert!(
            (1..=MAX_PARKED).contains(&live),
            "{live} instances for {MEMBERS} connections"
        );
        // Memory between events is the plugin's, not the connection's: the attachment is
        // still each connection's own.
        for member in &mut members {
            assert_eq!(ask(member, "attachment?").await, "attachment:kept");
        }
    })
    .await;
}

/// A trap drops the instance it happened on and closes only its own connection (`1011`); the
/// plugin's other connections go on, on other instances.
#[tokio::test]
async fn a_trap_on_a_shared_instance_closes_only_its_connection() {
    bounded(async {
        let host = start_shared().await;
        let (mut victim, _) = open(&host, "/managed").await;
        let (mut bystander, _) = open(&host, "/managed").await;
        assert_eq!(ask(&mut bystander, "echo:before").await, "before");
        parked(&host).await;
        victim.send(Message::text("trap")).await.unwrap();
        let (code, _) = closed_with(&mut victim).await;
        assert_eq!(code, CloseCode::Error);
        host.wait_for_log(
            &["plugin=managed", "plugin trapped in on-message"],
            LOG_WAIT,
        )
        .await;
        for round in 0..3 {
            let text = format!("after {round}");
            assert_eq!(ask(&mut bystander, &format!("echo:{text}")).await, text);
        }
    })
    .await;
}

/// After a reload, the very next event of a connection runs on the new version: no instance
/// stays with a connection, so none keeps the old version alive. (The new "version" is the
/// `echo` plugin installed under the same name, which answers `version?` with `version?`.)
#[tokio::test]
async fn after_a_reload_the_next_event_runs_on_the_new_version() {
    bounded(async {
        let host = start_shared().await;
        let (mut client, _) = open(&host, "/managed?attach=kept").await;
        assert_eq!(ask(&mut client, "version?").await, "version:managed-1");
        host.install_plugin("echo", "managed");
        host.wait_for_log(&["plugin=managed", "plugin reloaded"], RELOAD_WAIT)
            .await;
        assert_eq!(ask(&mut client, "version?").await, "version?");
        let mut fresh = connect(&host, "/managed").await;
        assert_eq!(ask(&mut fresh, "hello").await, "hello");
    })
    .await;
}

/// Parked instances hold places among the awake connections, and give them up at once to a
/// connection waiting to wake: with two places, parked by a shared plugin, a connection of
/// another plugin still gets its events (instead of waiting five seconds and a `1013`).
#[tokio::test]
async fn parked_instances_give_way_to_a_connection_waiting_to_wake() {
    bounded(async {
        let limits = switchyard_host::Limits {
            max_awake_websockets: 2,
            ..switchyard_host::Limits::default()
        };
        let host =
            TestHost::start_configured(&["managed", "echo"], &[("managed", SHARED)], Some(limits))
                .await;
        let (mut first, _) = open(&host, "/managed").await;
        let (mut second, _) = open(&host, "/managed").await;
        // Two events at once would need two instances; one after another, each parks its own.
        assert_eq!(ask(&mut first, "echo:a").await, "a");
        assert_eq!(ask(&mut second, "echo:b").await, "b");
        parked(&host).await;
        assert_eq!(
            host.stats().live_instances(),
            2,
            "both places held by parked instances"
        );
        // Without the parked instances giving way, this wake would wait five seconds and end
        // in a `1013` close instead of an answer.
        let mut other = connect(&host, "/echo").await;
        for round in 0..3 {
            let text = format!("echo {round}");
            assert_eq!(ask(&mut other, &text).await, text);
        }
        assert_eq!(ask(&mut first, "echo:c").await, "c");
    })
    .await;
}

/// An event stuck in a loop holds only the instance it runs on: the plugin's other connections
/// keep getting their events on other instances meanwhile, and the loop is cut off at the
/// per-event CPU limit (`1011`) like on an instance of its own.
#[tokio::test]
async fn a_looping_event_holds_only_its_own_instance() {
    bounded(async {
        let sidecar = format!("{SHARED}run_cpu_ms = 1000\n");
        let host = TestHost::start_configured(&["managed"], &[("managed", &sidecar)], None).await;
        let (mut looping, _) = open(&host, "/managed").await;
        let (mut bystander, _) = open(&host, "/managed").await;
        parked(&host).await;
        looping.send(Message::text("loop")).await.unwrap();
        eventually("the loop holding an instance", LOG_WAIT, || {
            host.stats().awake_websockets() == 1
        })
        .await;
        for round in 0..5 {
            let text = format!("meanwhile {round}");
            assert_eq!(ask(&mut bystander, &format!("echo:{text}")).await, text);
        }
        let cut_off = |host: &TestHost| {
            host.log_lines()
                .iter()
                .any(|line| line.contains("CPU limit per event exceeded"))
        };
        assert!(!cut_off(&host), "the answers waited for the loop to end");
        let (code, _) = closed_with(&mut looping).await;
        assert_eq!(code, CloseCode::Error);
        host.wait_for_log(
            &["plugin=managed", "CPU limit per event exceeded"],
            LOG_WAIT,
        )
        .await;
        assert_eq!(ask(&mut bystander, "echo:after").await, "after");
    })
    .await;
}

/// A removed plugin's parked instances do not wait for an event that never comes: its
/// connection is closed (`1001`) at its next event and the parked instances go with it.
#[tokio::test]
async fn a_removed_plugins_parked_instances_are_dropped() {
    bounded(async {
        let host = start_shared().await;
        let (mut client, _) = open(&host, "/managed").await;
        assert_eq!(ask(&mut client, "echo:parked").await, "parked");
        parked(&host).await;
        assert_eq!(host.stats().live_instances(), 1);
        std::fs::remove_file(host.plugins_dir().join("managed.wasm")).unwrap();
        host.wait_for_log(&["plugin=managed", "removed"], LOG_WAIT)
            .await;
        client.send(Message::text("echo:anyone?")).await.unwrap();
        let (code, reason) = closed_with(&mut client).await;
        assert_eq!(u16::from(code), 1001);
        assert_eq!(reason, "plugin removed");
        eventually("the parked instance dropped", LOG_WAIT, || {
            host.stats().live_instances() == 0
        })
        .await;
    })
    .await;
}
