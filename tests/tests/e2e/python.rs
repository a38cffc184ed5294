//! Python plugins (built with `guest-sdk/python/build`) in the real host: `hello-py` over HTTP,
//! an exception in each export contained (`500`, or the connection closed) with the Python
//! traceback in the log under the plugin's name while other plugins keep serving, and the
//! sandbox: a Python plugin can no more open a file, a socket or read the environment than a
//! Rust one. (The chat suite runs against `chat-py` too, in `chat.rs`; the reload of a Python
//! plugin with live members is its reload test.)
//!
//! Every test skips, saying so, when the Python plugins were not built.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

use switchyard_tests::client::get;
use switchyard_tests::python::python_plugins_ready;
use switchyard_tests::{TestHost, bounded};

/// How long a log line or a close may take to show. Generous: this checks behaviour.
const WITHIN: Duration = Duration::from_secs(10);

/// `hello-py` answers like `hello`: what it was sent, its own header, `200`.
#[tokio::test]
async fn hello_py_answers_with_what_it_was_sent() {
    if !python_plugins_ready("python::hello_py_answers_with_what_it_was_sent") {
        return;
    }
    bounded(async {
        let host = TestHost::start(&["hello-py"]).await;
        let reply = get(host.addr, "/hello-py/world?x=1", &[("user-agent", "e2e/1")]).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.headers["x-plugin"], "hello-py");
        assert_eq!(reply.headers["content-type"], "text/plain; charset=utf-8");
        assert_eq!(
            reply.text(),
            "hello from switchyard\nmethod: GET\npath: /hello-py/world?x=1\nuser-agent: e2e/1\nbody: 0 bytes\n"
        );
    })
    .await;
}

/// An exception in `handle` is a `500`; the traceback, with the exception's text, is logged
/// under the plugin's name; the plugin and its neighbours go on serving.
#[tokio::test]
async fn an_exception_in_handle_is_a_500_with_the_traceback_logged() {
    if !python_plugins_ready("python::an_exception_in_handle_is_a_500_with_the_traceback_logged") {
        return;
    }
    bounded(async {
        let host = TestHost::start(&["misbehave-py", "hello-py", "hello"]).await;
        let reply = get(host.addr, "/misbehave-py/raise", &[]).await;
        assert_eq!(reply.status, 500);
        host.wait_for_log(&["plugin=misbehave-py", "Traceback"], WITHIN)
            .await;
        host.wait_for_log(
            &[
                "plugin=misbehave-py",
                "RuntimeError: raised in handle on purpose",
            ],
            WITHIN,
        )
        .await;
        // What it printed before raising is logged too.
        host.wait_for_log(&["plugin=misbehave-py", "about to raise in handle"], WITHIN)
            .await;
        for (path, status) in [
            ("/hello-py/", 200),
            ("/hello/", 200),
            ("/misbehave-py/x", 404),
        ] {
            assert_eq!(get(host.addr, path, &[]).await.status, status, "{path}");
        }
    })
    .await;
}

/// An exception in `on_open`, `on_message` or `on_close` closes that connection with `1011` (or, for
/// `on_close`, happens after it closed) and is logged with its traceback; another connection
/// of the same plugin and another plugin are unaffected.
#[tokio::test]
async fn an_exception_in_an_event_closes_only_that_connection() {
    if !python_plugins_ready("python::an_exception_in_an_event_closes_only_that_connection") {
        return;
    }
    bounded(async {
        let host = TestHost::start(&["misbehave-py", "hello-py"]).await;
        let (mut bystander, _) = connect_async(host.ws_url("/misbehave-py/ws"))
            .await
            .expect("a well-behaved connection");

        for event in ["open", "message"] {
            let (mut socket, _) =
                connect_async(host.ws_url(&format!("/misbehave-py/ws?raise={event}")))
                    .await
                    .expect("the handshake succeeds before the event raises");
            // on_open raises right after the 101; on_message when this arrives.
            let _ = socket.send(Message::text("hi")).await;
            let ended = tokio::time::timeout(WITHIN, async {
                loop {
                    match socket.next().await {
                        Some(Ok(Message::Close(Some(frame)))) => {
                            assert_eq!(u16::from(frame.code), 1011, "on_{event}: {frame:?}");
                            break;
                        }
                        None | Some(Err(_)) | Some(Ok(Message::Close(None))) => break,
                        Some(Ok(_)) => {}
                    }
                }
            })
            .await;
            assert!(
                ended.is_ok(),
                "the connection whose on_{event} raised stayed open"
            );
            host.wait_for_log(
                &[
                    "plugin=misbehave-py",
                    &format!("RuntimeError: raised in on_{event} on purpose"),
                ],
                WITHIN,
            )
            .await;
        }

        let (mut socket, _) = connect_async(host.ws_url("/misbehave-py/ws?raise=close"))
            .await
            .expect("a connection whose on_close raises");
        socket.close(None).await.expect("closing");
        host.wait_for_log(
            &[
                "plugin=misbehave-py",
                "RuntimeError: raised in on_close on purpose",
            ],
            WITHIN,
        )
        .await;

        bystander
            .send(Message::text("still here"))
            .await
            .expect("the bystander sends");
        let echoed = tokio::time::timeout(WITHIN, bystander.next()).await;
        assert!(
            matches!(&echoed, Ok(Some(Ok(Message::Text(text)))) if text.as_str() == "still here"),
            "the bystander's echo: {echoed:?}"
        );
        assert_eq!(get(host.addr, "/hello-py/", &[]).await.status, 200);
    })
    .await;
}

/// The sandbox holds for Python as for Rust: no file (not even a directory listing), no
/// socket, no environment. Each attempt fails inside the plugin, which says how.
#[tokio::test]
async fn a_python_plugin_cannot_reach_files_sockets_or_the_environment() {
    if !python_plugins_ready(
        "python::a_python_plugin_cannot_reach_files_sockets_or_the_environment",
    ) {
        return;
    }
    bounded(async {
        let host = TestHost::start(&["misbehave-py"]).await;
        for what in ["file", "listdir", "socket", "env"] {
            let reply = get(host.addr, &format!("/misbehave-py/{what}"), &[]).await;
            assert_eq!(reply.status, 200, "{what}: {}", reply.text());
            assert!(
                reply.text().starts_with("denied: "),
                "{what}: {}",
                reply.text()
            );
        }
    })
    .await;
}

/// A Python plugin can share its instances like a Rust one (`instances = "shared"`): connections
/// take turns on a few instances, each answering its own client, and none holds one between
/// events.
#[tokio::test]
async fn a_python_plugin_can_share_its_instances() {
    if !python_plugins_ready("python::a_python_plugin_can_share_its_instances") {
        return;
    }
    bounded(async {
        let host = TestHost::start_configured(
            &["echo-py"],
            &[("echo-py", "instances = \"shared\"\n")],
            None,
        )
        .await;
        let mut members = Vec::new();
        for _ in 0..10 {
            let (socket, _) = connect_async(host.ws_url("/echo-py"))
                .await
                .expect("a WebSocket to echo-py");
            members.push(socket);
        }
        for round in 0..3 {
            for (index, member) in members.iter_mut().enumerate() {
                let text = format!("member {index}, round {round}");
                member
                    .send(Message::text(text.clone()))
                    .await
                    .expect("sending");
                let echoed = tokio::time::timeout(WITHIN, member.next()).await;
                assert!(
                    matches!(&echoed, Ok(Some(Ok(Message::Text(got)))) if got.as_str() == text),
                    "{text}: {echoed:?}"
                );
            }
        }
        switchyard_tests::eventually("every instance handed back", WITHIN, || {
            host.stats().awake_websockets() == 0
        })
        .await;
        let live = host.stats().live_instances();
        assert!(
            (1..=8).contains(&live),
            "{live} instances for 10 connections"
        );
    })
    .await;
}
