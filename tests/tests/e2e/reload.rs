//! Hot reload: replacing, adding, removing and corrupting plugin files while the host serves,
//! without dropping live sessions.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

use switchyard_tests::client::{RawConnection, get};
use switchyard_tests::{TestHost, bounded, built_plugin};

/// How long a reload may take before the test fails. Generous on purpose: this proves the
/// behaviour; the reload latency itself (well under a second) is measured by the benchmark.
const RELOAD_WITHIN: Duration = Duration::from_secs(5);
/// Spacing between polls while waiting for a reload to show.
const POLL: Duration = Duration::from_millis(20);

/// Polls `GET path` until its status is `status`, failing after [`RELOAD_WITHIN`].
async fn wait_for_status(host: &TestHost, path: &str, status: u16) {
    let deadline = tokio::time::Instant::now() + RELOAD_WITHIN;
    loop {
        let got = get(host.addr, path, &[]).await.status;
        if got == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} still answers {got}, expected {status}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Replacing `echo.wasm` serves new connections from the new file within a second, while a
/// session opened before keeps working on the old version until it closes.
#[tokio::test]
async fn replaced_plugin_serves_new_connections_and_keeps_old_sessions() {
    bounded(async {
        let host = TestHost::start(&["echo-raw"]).await;
        let (mut old_session, _) = connect_async(host.ws_url("/echo-raw")).await.unwrap();
        old_session.send(Message::text("before")).await.unwrap();
        assert_eq!(
            old_session.next().await.unwrap().unwrap(),
            Message::text("before")
        );

        // The new "version" of echo is the hello plugin: a plain GET tells them apart.
        assert_eq!(get(host.addr, "/echo-raw", &[]).await.status, 400);
        host.install_plugin("hello", "echo-raw");
        wait_for_status(&host, "/echo-raw", 200).await;
        host.wait_for_log(&["plugin=echo-raw", "plugin reloaded"], RELOAD_WITHIN)
            .await;

        old_session.send(Message::text("after")).await.unwrap();
        assert_eq!(
            old_session.next().await.unwrap().unwrap(),
            Message::text("after")
        );
        old_session.close(None).await.unwrap();
    })
    .await;
}

/// A new file adds a route; deleting it removes the route (404) while its live session
/// finishes normally.
#[tokio::test]
async fn added_and_removed_plugins_come_and_go() {
    bounded(async {
        let host = TestHost::start(&[]).await;
        assert_eq!(get(host.addr, "/foo", &[]).await.status, 404);
        let file = host.install_plugin("kv", "foo");
        let upgrade =
            b"GET /foo HTTP/1.1\r\nhost: t\r\nconnection: upgrade\r\nupgrade: kv/1\r\n\r\n";
        let deadline = tokio::time::Instant::now() + RELOAD_WITHIN;
        while get(host.addr, "/foo", &[]).await.status != 426 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "/foo did not appear"
            );
            tokio::time::sleep(POLL).await;
        }
        let mut session = RawConnection::open(host.addr, upgrade).await;
        session.read_head().await;
        assert_eq!(session.read_line().await, "KV/1 READY");

        std::fs::remove_file(file).unwrap();
        wait_for_status(&host, "/foo", 404).await;
        host.wait_for_log(&["plugin=foo", "plugin removed"], RELOAD_WITHIN)
            .await;

        session.write(b"SET still here\nGET still\nQUIT\n").await;
        assert_eq!(session.read_line().await, "OK");
        assert_eq!(session.read_line().await, "VALUE here");
        assert_eq!(session.read_line().await, "BYE");
        session.expect_closed().await;
    })
    .await;
}

/// Garbage written over a plugin is logged with the file and the reason, and the previous
/// version keeps serving.
#[tokio::test]
async fn corrupt_replacement_keeps_the_previous_version() {
    bounded(async {
        let host = TestHost::start(&["hello"]).await;
        let file = host.plugins_dir().join("hello.wasm");
        std::fs::write(&file, b"\0asm garbage that is not a component").unwrap();
        let line = host
            .wait_for_log(&["plugin not loaded", "hello.wasm"], Duration::from_secs(5))
            .await;
        assert!(line.contains("kept_version="), "{line}");
        assert!(!line.contains("kept_version=none"), "{line}");
        assert_eq!(get(host.addr, "/hello", &[]).await.status, 200);

        // A good file afterwards is picked up again.
        host.install_plugin("misbehave", "hello");
        wait_for_status(&host, "/hello/trap-handle", 500).await;
    })
    .await;
}

/// The number of log lines this host wrote that contain every one of `needles`.
fn count_log_lines(host: &TestHost, needles: &[&str]) -> usize {
    host.log_lines()
        .iter()
        .filter(|line| needles.iter().all(|needle| line.contains(needle)))
        .count()
}

/// `rm -rf plugins; mkdir plugins; cp hello.wasm plugins/`: the routes go with the folder (each
/// removal logged once) and come back with it, also a second time.
#[tokio::test]
async fn deleted_and_recreated_plugins_folder_is_watched_again() {
    bounded(async {
        let host = TestHost::start_nested(&["hello"]).await;
        assert_eq!(get(host.addr, "/hello", &[]).await.status, 200);
        for round in 1..=2 {
            std::fs::remove_dir_all(host.plugins_dir()).unwrap();
            wait_for_status(&host, "/hello", 404).await;
            std::fs::create_dir(host.plugins_dir()).unwrap();
            host.install_plugin("hello", "hello");
            wait_for_status(&host, "/hello", 200).await;
            let removed = count_log_lines(&host, &["plugin=hello", "plugin removed"]);
            assert_eq!(removed, round, "each removal is logged once");
        }
    })
    .await;
}

/// A plugins folder renamed away stops serving, and a new folder renamed into its place is
/// served: files written into the old folder afterwards change nothing.
#[tokio::test]
async fn plugins_folder_swapped_by_rename_serves_the_new_folder() {
    bounded(async {
        let host = TestHost::start_nested(&["hello"]).await;
        assert_eq!(get(host.addr, "/hello", &[]).await.status, 200);
        let parent = host.plugins_dir().parent().unwrap().to_owned();
        let old = parent.join("plugins.old");
        std::fs::rename(host.plugins_dir(), &old).unwrap();
        wait_for_status(&host, "/hello", 404).await;

        let staged = parent.join("plugins.new");
        std::fs::create_dir(&staged).unwrap();
        std::fs::copy(built_plugin("echo-raw"), staged.join("echo-raw.wasm")).unwrap();
        std::fs::rename(&staged, host.plugins_dir()).unwrap();
        wait_for_status(&host, "/echo-raw", 400).await;

        // The old folder is no longer the plugins folder.
        std::fs::copy(built_plugin("kv"), old.join("kv.wasm")).unwrap();
        host.install_plugin("hello", "hello");
        wait_for_status(&host, "/hello", 200).await;
        assert_eq!(get(host.addr, "/kv", &[]).await.status, 404);
    })
    .await;
}

/// Writes `text` as plugin `name`'s sidecar in one step (temporary file, then rename).
fn write_sidecar(host: &TestHost, name: &str, text: &str) {
    let staging = host.plugins_dir().join(format!(".{name}.toml.partial"));
    std::fs::write(&staging, text).unwrap();
    std::fs::rename(&staging, host.plugins_dir().join(format!("{name}.toml"))).unwrap();
}

/// A plugin refused because its route is taken gets the route as soon as it is free, whether
/// the owner moves to another route or is removed, without its own files being touched.
#[tokio::test]
async fn refused_route_claim_is_granted_when_the_route_frees_up() {
    bounded(async {
        let shared = "route = \"/shared\"";
        let host = TestHost::start_configured(
            &["echo-raw", "hello"],
            &[("echo-raw", shared), ("hello", shared)],
            None,
        )
        .await;
        // Plugins load in name order: echo takes the route, hello is refused.
        host.wait_for_log(
            &[
                "plugin=hello",
                "plugin not loaded",
                "already served by plugin echo-raw",
            ],
            RELOAD_WITHIN,
        )
        .await;
        assert_eq!(get(host.addr, "/shared", &[]).await.status, 400);

        // The owner moves away: hello takes the route.
        write_sidecar(&host, "echo-raw", "route = \"/elsewhere\"");
        wait_for_status(&host, "/shared", 200).await;
        wait_for_status(&host, "/elsewhere", 400).await;

        // echo asks for the route back and is refused; when hello goes, echo gets it.
        write_sidecar(&host, "echo-raw", shared);
        host.wait_for_log(
            &[
                "plugin=echo-raw",
                "plugin not loaded",
                "already served by plugin hello",
            ],
            RELOAD_WITHIN,
        )
        .await;
        assert_eq!(get(host.addr, "/shared", &[]).await.status, 200);
        std::fs::remove_file(host.plugins_dir().join("hello.wasm")).unwrap();
        wait_for_status(&host, "/shared", 400).await;
    })
    .await;
}
