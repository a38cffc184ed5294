//! Hostile managed-WebSocket plugins: `misbehave`'s `ws-*` cases loop in each event, trap
//! (panic, `unreachable`, an out-of-bounds load), exhaust their memory, flood `send` and
//! `publish` without end, and call `send` with arguments no SDK would pass. Each attacker's
//! connection is closed with the right code and a precise log line, host memory stays bounded,
//! and both bystander sessions (managed `echo`, raw `echo-raw`) keep their round trips.

use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use switchyard_tests::probe::rss_bytes;
use switchyard_tests::{TestHost, bounded};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use super::{ONE_AT_A_TIME, SETTLE, mib, under_attack};

/// Rounds per attack: enough to show slots and memory come back, few enough to stay quick.
const ROUNDS: usize = 5;
/// Rounds of the attacks that end within milliseconds (traps, memory): more, so that the
/// bystanders get some round trips in while they run.
const QUICK_ROUNDS: usize = 20;
/// The CPU a single event may use in these tests: short, so the attacks end quickly.
const EVENT_CPU: &str = "[limits]\nrun_cpu_ms = 200\n";
/// How long an attacker's connection may take to be closed once its attack started: the CPU
/// limit plus a loaded 2-core machine's slack.
const CLOSED_WITHIN: Duration = Duration::from_secs(5);
/// The close code for a plugin that failed (trapped, or ran out of CPU or memory): RFC 6455's
/// "internal error".
const PLUGIN_FAILED: u16 = 1011;
/// The close code for a subscriber that fell behind past its outbound buffer (with the default
/// `overflow = "close"`): RFC 6455's "policy violation".
const FELL_BEHIND: u16 = 1008;
/// How soon an idle connection hibernates in the tests that wake one.
const HIBERNATE_AFTER_MS: u64 = 100;
/// How long a flooded client stops reading, to let every buffer fill.
const NOT_READING: Duration = Duration::from_millis(700);
/// How much host memory a flood may add while its client does not read: the outbound buffer
/// and the socket buffers, with room for the allocator, but far from a flood's unbounded growth
/// (16 KiB messages at wasm speed are gigabytes a second).
const FLOOD_RSS_GROWTH: u64 = 32 << 20;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn host_with(sidecar: &str) -> TestHost {
    TestHost::start_configured(
        &["misbehave", "echo", "echo-raw"],
        &[("misbehave", sidecar)],
        None,
    )
    .await
}

/// A managed WebSocket to `misbehave`'s `case`.
async fn open(host: &TestHost, case: &str) -> Socket {
    let (socket, _) = connect_async(host.ws_url(&format!("/misbehave/{case}")))
        .await
        .unwrap_or_else(|err| panic!("the WebSocket handshake to {case}: {err}"));
    socket
}

/// What a client saw of a connection until the host ended it, or until it stopped looking.
#[derive(Debug)]
struct Ended {
    /// The close code the host sent, if it sent a close frame.
    code: Option<u16>,
    /// The close reason it gave.
    reason: String,
    /// Data bytes received.
    data: u64,
    /// Whether the connection was still open when the client stopped looking.
    still_open: bool,
}

/// Reads until the host ends the connection, failing if that takes longer than `within`.
async fn read_to_end(socket: &mut Socket, within: Duration) -> Ended {
    let ended = read_for(socket, within).await;
    assert!(
        !ended.still_open,
        "the connection was still open after {within:?}: {ended:?}"
    );
    ended
}

/// Reads until the host ends the connection or `within` has passed.
async fn read_for(socket: &mut Socket, within: Duration) -> Ended {
    let mut ended = Ended {
        code: None,
        reason: String::new(),
        data: 0,
        still_open: false,
    };
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let Ok(next) = tokio::time::timeout_at(deadline, socket.next()).await else {
            ended.still_open = true;
            return ended;
        };
        match next {
            Some(Ok(Message::Close(frame))) => {
                if let Some(frame) = frame {
                    ended.code = Some(u16::from(frame.code));
                    ended.reason = frame.reason.to_string();
                }
            }
            Some(Ok(message)) => ended.data += message.len() as u64,
            // The end of the stream, or the TCP connection going after the close frame.
            Some(Err(_)) | None => return ended,
        }
    }
}

/// Opens `case`, sends one message to set its attack off, and checks the host closes the
/// connection with [`PLUGIN_FAILED`].
async fn closed_after_message(host: &TestHost, case: &str) -> Ended {
    let mut socket = open(host, case).await;
    socket
        .send(Message::text("go"))
        .await
        .unwrap_or_else(|err| panic!("sending to {case}: {err}"));
    let ended = read_to_end(&mut socket, CLOSED_WITHIN).await;
    assert_eq!(ended.code, Some(PLUGIN_FAILED), "{case}: {ended:?}");
    ended
}

/// Waits until the host has logged that the first connection to `case` was closed with `1011`
/// because the plugin trapped in `on-message`, for a reason that mentions `why`.
async fn trap_logged(host: &TestHost, case: &str, why: &str) {
    let connection = host
        .websocket_connection(&format!("path=/misbehave/{case}"), 0)
        .await;
    host.wait_for_log(
        &[&connection, "closed (1011)", "trapped in on-message", why],
        SETTLE,
    )
    .await;
}

/// Waits until a connection to `case` opened after the host's first `since` log lines has
/// hibernated (its log says so; the bystander `echo` keeps the host's awake count above zero).
async fn hibernated(host: &TestHost, case: &str, since: usize) {
    let connection = host
        .websocket_connection(&format!("path=/misbehave/{case}"), since)
        .await;
    let deadline = tokio::time::Instant::now() + SETTLE;
    while !host
        .log_lines()
        .iter()
        .skip(since)
        .any(|line| line.contains(&connection) && line.contains("hibernating"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{case} did not hibernate within {SETTLE:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An endless loop in `on-message` is stopped by the CPU limit: `1011`, and the log says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_in_on_message() {
    let _serial = ONE_AT_A_TIME.lock().await;
    bounded(async {
        let host = host_with(EVENT_CPU).await;
        under_attack(&host, "loop in on-message", ROUNDS, |_| async {
            let started = Instant::now();
            closed_after_message(&host, "ws-loop").await;
            println!("  loop in on-message: closed after {:?}", started.elapsed());
        })
        .await;
        host.wait_for_log(&["plugin=misbehave", "on-message", "CPU limit"], SETTLE)
            .await;
    })
    .await;
}

/// A connection that uses up its whole CPU budget is closed with `1011`, even below the limit
/// per event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cpu_budget() {
    let _serial = ONE_AT_A_TIME.lock().await;
    bounded(async {
        let host = host_with("[limits]\nsession_cpu_ms = 150\nrun_cpu_ms = 10000\n").await;
        under_attack(&host, "connection CPU budget", 2, |_| async {
            closed_after_message(&host, "ws-loop").await;
        })
        .await;
        host.wait_for_log(
            &["plugin=misbehave", "closed (1011)", "CPU budget is used up"],
            SETTLE,
        )
        .await;
    })
    .await;
}

/// An endless loop in `on-open` is stopped the same way, before any message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_in_on_open() {
    let _serial = ONE_AT_A_TIME.lock().await;
    bounded(async {
        let host = host_with(EVENT_CPU).await;
        under_attack(&host, "loop in on-open", ROUNDS, |_| async {
            let mut socket = open(&host, "ws-loop-open").await;
            let ended = read_to_end(&mut socket, CLOSED_WITHIN).await;
            assert_eq!(ended.code, Some(PLUGIN_FAILED), "{ended:?}");
            assert!(
                ended.data < FLOOD_RSS_GROWTH,
                "a client that did not read was sent {:.1} MiB",
                mib(ended.data)
            );
        })
        .await;
        host.wait_for_log(&["plugin=misbehave", "on-open", "CPU limit"], SETTLE)
            .await;
    })
    .await;
}

/// An endless loop in `on-close`, after the client closed: the client's close is answered
/// as usual, the loop is stopped by the CPU limit and logged, and its slot comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_in_on_close() {
    let _serial = ONE_AT_A_TIME.lock().await;
    bounded(async {
        let host = &host_with(EVENT_CPU).await;
        let cut_off = &|| {
            host.log_lines()
                .iter()
                .filter(|line| line.contains("on-close") && line.contains("CPU limit"))
                .count()
        };
        under_attack(host, "loop in on-close", ROUNDS, |round| async move {
            let mut socket = open(host, "ws-loop-close").await;
            socket.send(Message::text("echo me")).await.unwrap();
            assert_eq!(
                socket.next().await.expect("an echo").expect("a frame"),
                Message::text("echo me")
            );
            let bye = CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            };
            socket
                .send(Message::Close(Some(bye)))
                .await
                .expect("sending a close frame");
            let ended = read_to_end(&mut socket, CLOSED_WITHIN).await;
            assert_eq!(ended.code, Some(u16::from(CloseCode::Normal)), "{ended:?}");
            // One loop at a time, like the other attacks: this round ends when the host has
            // cut its loop off, which the client cannot see.
            let deadline = tokio::time::Instant::now() + CLOSED_WITHIN;
            while cut_off() <= round {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the loop in on-close of round {round} was not cut off"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        host.wait_for_log(&["plugin=misbehave", "on-close", "CPU limit"], SETTLE)
            .await;
    })
    .await;
}

/// Traps in `on-message` (a panic, `unreachable`, a load out of bounds) close the connection
/// with `1011`, and each is logged with what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traps_in_on_message() {
    let _serial = ONE_AT_A_TIME.lock().await;
    bounded(async {
        let host = host_with("").await;
        under_attack(&host, "traps in on-message", QUICK_ROUNDS, |_| async {
            for case in ["ws-panic", "ws-unreachable", "ws-out-of-bounds"] {
                closed_after_message(&host, case).await;
            }
        })
        .await;
        // The panic's message is the plugin's own stderr line; the others are the trap's.
        host.wait_for_log(
            &["plugin=misbehave", "panic in on-message, as asked"],
            SETTLE,
        )
        .await;
        for (case, why) in [
            ("ws-panic", "unreachable"),
            ("ws-unreachable", "unreachable"),
            ("ws-out-of-bounds", "out of bounds memory access"),
        ] {
            trap_logged(&host, case, why).await;
        }
    })
    .await;
}

/// Arguments to `send` that no SDK would pass — bytes past the end of memory, a text that is
/// not UTF-8, a message kind the contract does not have — trap the calling instance: `1011`,
/// a log line that says what was wrong, and nothing written to the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_arguments_to_send() {
    // Each case and what the host's log line says was wrong with its arguments.
    const CASES: [(&str, &str); 3] = [
        (
            "ws-send-wild-pointer",
            "list pointer/length out of bounds of memory",
        ),
        ("ws-send-not-utf8", "invalid utf-8 sequence"),
        ("ws-send-bad-kind", "unexpected discriminant: 7"),
    ];
    let _serial = ONE_AT_A_TIME.lock().await;
    bounded(async {
        let host = host_with("").await;
        under_attack(
            &host,
            "malformed arguments to send",
            QUICK_ROUNDS,
            |_| async {
                for (case, _) in CASES {
                    let ended = closed_after_message(&host, case).await;
                    assert_eq!(ended.data, 0, "{case} got data: {ended:?}");
                }
            },
        )
        .await;
        for (case, why) in CASES {
            trap_logged(&host, case, why).await;
        }
    })
    .await;
}

/// The same traps on a connection that hibernated first: the woken instance finds the case in
/// the attachment, traps, and the connection is closed with `1011` all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traps_after_hibernation() {
    let _serial = ONE_AT_A_TIME.lock().await;
    bounded(async {
        let host = host_with(&format!(
            "[limits]\nhibernate_after_ms = {HIBERNATE_AFTER_MS}\n"
        ))
        .await;
        under_attack(&host, "traps after hibernation", ROUNDS, |_| async {
            for case in ["ws-panic", "ws-unreachable", "ws-out-of-bounds"] {
                let since = host.log_lines().len();
                let mut socket = open(&host, case).await;
                hibernated(&host, case, since).await;
                socket.send(Message::text("go")).await.unwrap();
                let ended = read_to_end(&mut socket, CLOSED_WITHIN).await;
                assert_eq!(ended.code, Some(PLUGIN_FAILED), "{case}: {ended:?}");
            }
        })
        .await;
        host.wait_for_log(&["plugin=misbehave", "woke from hibernation"], SETTLE)
            .await;
        host.wait_for_log(
            &[
                "plugin=misbehave",
                "trapped in on-message",
                "out of bounds memory access",
            ],
            SETTLE,
        )
        .await;
    })
    .await;
}

/// A memory bomb in `on-message` traps at the memory limit: `1011`, the log says why, and host
/// memory comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_in_on_message() {
    let _serial = ONE_AT_A_TIME.lock().await;
    bounded(async {
        let host = host_with("[limits]\nmemory_mib = 16\n").await;
        let report = under_attack(
            &host,
            "memory bomb in on-message",
            QUICK_ROUNDS,
            |_| async {
                closed_after_message(&host, "ws-memory").await;
            },
        )
        .await;
        host.wait_for_log(&["plugin=misbehave", "memory limit"], SETTLE)
            .await;
        let grown = report.rss_after.saturating_sub(report.rss_before);
        assert!(grown < 64 << 20, "RSS grew by {:.1} MiB", mib(grown));
    })
    .await;
}

/// `send` without end to a client that does not read: the outbound buffer refuses what does not
/// fit (host memory stays flat), the CPU limit ends the loop, and the client, reading again,
/// gets what was queued and then `1011`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_flood_to_a_client_that_does_not_read() {
    let _serial = ONE_AT_A_TIME.lock().await;
    bounded(async {
        let host = host_with(EVENT_CPU).await;
        under_attack(&host, "send flood", 2, |_| async {
            let mut socket = open(&host, "ws-flood-send").await;
            let rss_before = rss_bytes();
            socket.send(Message::text("go")).await.unwrap();
            tokio::time::sleep(NOT_READING).await;
            let rss_flooded = rss_bytes();
            let ended = read_to_end(&mut socket, CLOSED_WITHIN).await;
            println!(
                "  send flood: RSS {:.1} MiB before, {:.1} MiB after {NOT_READING:?} not \
                 reading; the client then read {:.1} MiB and close {:?}",
                mib(rss_before),
                mib(rss_flooded),
                mib(ended.data),
                ended.code
            );
            assert!(
                rss_flooded.saturating_sub(rss_before) < FLOOD_RSS_GROWTH,
                "host memory grew while the client did not read"
            );
            assert_eq!(ended.code, Some(PLUGIN_FAILED), "{ended:?}");
            assert!(
                ended.data < FLOOD_RSS_GROWTH,
                "a client that did not read was sent {:.1} MiB",
                mib(ended.data)
            );
        })
        .await;
        host.wait_for_log(&["plugin=misbehave", "on-message", "CPU limit"], SETTLE)
            .await;
    })
    .await;
}

/// `publish` without end to a topic with a subscriber that does not read and one that does:
/// the publisher is ended by the CPU limit (`1011`), the subscriber that fell behind is cut off
/// by its outbound buffer's policy (closed with `1008` by default) and logged, host memory stays flat,
/// and the bystanders (other plugins) never notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_flood() {
    let _serial = ONE_AT_A_TIME.lock().await;
    bounded(async {
        let host = host_with(EVENT_CPU).await;
        under_attack(&host, "publish flood", 2, |_| async {
            let mut idle = open(&host, "ws-subscriber").await;
            let mut reading = open(&host, "ws-subscriber").await;
            // Reads for as long as the attack lasts; it may keep up (at most once: messages it
            // missed are dropped) or be cut off too.
            let reader = tokio::spawn(async move { read_for(&mut reading, CLOSED_WITHIN).await });
            let mut publisher = open(&host, "ws-flood-publish").await;
            let rss_before = rss_bytes();
            publisher.send(Message::text("go")).await.unwrap();
            let publisher_ended = read_to_end(&mut publisher, CLOSED_WITHIN).await;
            tokio::time::sleep(NOT_READING).await;
            let rss_flooded = rss_bytes();
            let idle_ended = read_to_end(&mut idle, CLOSED_WITHIN).await;
            let reader_ended = reader.await.expect("the reading subscriber panicked");
            println!(
                "  publish flood: publisher closed {:?}; the idle subscriber got {:.1} MiB then \
                 close {:?} {:?}; the reading one {:.1} MiB, close {:?} (still open: {}); RSS \
                 {:.1} MiB before, {:.1} MiB flooded",
                publisher_ended.code,
                mib(idle_ended.data),
                idle_ended.code,
                idle_ended.reason,
                mib(reader_ended.data),
                reader_ended.code,
                reader_ended.still_open,
                mib(rss_before),
                mib(rss_flooded),
            );
            assert_eq!(
                publisher_ended.code,
                Some(PLUGIN_FAILED),
                "{publisher_ended:?}"
            );
            // Cut off: the close frame goes out only if the socket takes it, and a client that
            // does not read has left no room for it, so the log line below is what says why.
            assert!(
                matches!(idle_ended.code, None | Some(FELL_BEHIND)),
                "the subscriber that fell behind: {idle_ended:?}"
            );
            assert!(
                idle_ended.data < FLOOD_RSS_GROWTH,
                "the subscriber that did not read was sent {:.1} MiB",
                mib(idle_ended.data)
            );
            assert!(
                rss_flooded.saturating_sub(rss_before) < FLOOD_RSS_GROWTH,
                "host memory grew during the publish flood"
            );
        })
        .await;
        host.wait_for_log(&["plugin=misbehave", "on-message", "CPU limit"], SETTLE)
            .await;
        host.wait_for_log(
            &[
                "plugin=misbehave",
                "cut off",
                "fell behind past its outbound buffer (1008)",
            ],
            SETTLE,
        )
        .await;
    })
    .await;
}

/// The same publish flood with `overflow = "drop"`: the subscriber that fell behind is not
/// closed but misses messages (counted and logged), gets the rest once it reads again, and is
/// still served afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_flood_with_the_drop_policy() {
    let _serial = ONE_AT_A_TIME.lock().await;
    bounded(async {
        let host = host_with(&format!("overflow = \"drop\"\n{EVENT_CPU}")).await;
        under_attack(&host, "publish flood, drop policy", 2, |_| async {
            let mut idle = open(&host, "ws-subscriber").await;
            let mut publisher = open(&host, "ws-flood-publish").await;
            let rss_before = rss_bytes();
            publisher.send(Message::text("go")).await.unwrap();
            let publisher_ended = read_to_end(&mut publisher, CLOSED_WITHIN).await;
            tokio::time::sleep(NOT_READING).await;
            let rss_flooded = rss_bytes();
            // Still a member: what it is sent now comes after what was queued for it.
            idle.send(Message::text("still here?")).await.unwrap();
            let mut data = 0u64;
            let deadline = tokio::time::Instant::now() + CLOSED_WITHIN;
            loop {
                let frame = tokio::time::timeout_at(deadline, idle.next())
                    .await
                    .expect("the echo came")
                    .expect("the subscriber stayed open")
                    .expect("a valid frame");
                if frame == Message::text("still here?") {
                    break;
                }
                assert!(frame.is_binary(), "{frame:?}");
                data += frame.len() as u64;
            }
            println!(
                "  publish flood, drop policy: publisher closed {:?}; the idle subscriber got \
                 {:.1} MiB and stayed; RSS {:.1} MiB before, {:.1} MiB flooded",
                publisher_ended.code,
                mib(data),
                mib(rss_before),
                mib(rss_flooded),
            );
            assert_eq!(
                publisher_ended.code,
                Some(PLUGIN_FAILED),
                "{publisher_ended:?}"
            );
            assert!(
                data < FLOOD_RSS_GROWTH,
                "{:.1} MiB queued for it",
                mib(data)
            );
            assert!(
                rss_flooded.saturating_sub(rss_before) < FLOOD_RSS_GROWTH,
                "host memory grew during the publish flood"
            );
        })
        .await;
        host.wait_for_log(
            &[
                "plugin=misbehave",
                "publish to topic \"flood\": dropped for 1 subscriber(s)",
            ],
            SETTLE,
        )
        .await;
    })
    .await;
}
