//! Clients that read slower than messages arrive: each connection's outbound buffer is bounded;
//! past it a publish cuts the client off (`overflow = "close"`, the default) or is dropped for
//! it (`"drop"`), and a plugin's own `send` hears `backpressure`. Other subscribers keep
//! receiving everything, in order.

use tokio::net::TcpSocket;
use tokio_tungstenite::{MaybeTlsStream, client_async};

use switchyard_tests::{TestHost, bounded, eventually};

use super::{Client, LOG_WAIT, ask, open, text};

/// Outbound buffer for these tests: small, so a client that does not read falls behind soon.
const SIDECAR: &str = "[limits]\nmax_outbound_bytes = 65536\n";
/// Messages published, and the bytes of each: far more than the buffer and the kernel's
/// socket buffers of a client that reads nothing.
const MESSAGES: usize = 300;
const MESSAGE_BYTES: usize = 16 * 1024;

/// A WebSocket to `path` whose socket has a small receive buffer, so that the kernel holds
/// little for it while it does not read.
async fn slow_client(host: &TestHost, path: &str) -> Client {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(host.addr).await.unwrap();
    let (mut client, _) = client_async(host.ws_url(path), MaybeTlsStream::Plain(stream))
        .await
        .unwrap();
    let opened = text(&mut client).await;
    assert!(opened.starts_with("open:"), "{opened}");
    client
}

/// Under the close policy, a subscriber that stops reading is cut off (logged as such), while
/// a subscriber that reads gets every message in order.
#[tokio::test]
async fn a_slow_subscriber_is_cut_off_and_the_others_keep_receiving() {
    bounded(async {
        let host = TestHost::start_configured(&["managed"], &[("managed", SIDECAR)], None).await;
        let mut slow = slow_client(&host, "/managed?topic=room").await;
        let (mut fast, _) = open(&host, "/managed?topic=room").await;
        // The publisher is a subscriber too and waits for its own copy of each message, so a
        // subscriber that reads keeps up: only the one that does not read falls behind.
        let (mut publisher, _) = open(&host, "/managed?topic=room").await;
        let reader = tokio::spawn(async move {
            for i in 0..MESSAGES {
                let message = text(&mut fast).await;
                assert!(
                    message.starts_with(&format!("{i}:")),
                    "message {i} out of order"
                );
            }
            fast
        });
        let pad = "x".repeat(MESSAGE_BYTES);
        for i in 0..MESSAGES {
            let message = format!("{i}:{pad}");
            assert_eq!(
                ask(&mut publisher, &format!("pub:room:{message}")).await,
                message
            );
        }
        let _fast = reader
            .await
            .expect("the fast subscriber got everything in order");
        host.wait_for_log(
            &["connection cut off: the client fell behind past its outbound buffer (1008)"],
            LOG_WAIT,
        )
        .await;
        // The slow client now reads what reached it, then the end of the connection.
        let mut received = 0;
        while let Ok(Some(Ok(message))) =
            tokio::time::timeout(LOG_WAIT, futures_util::StreamExt::next(&mut slow)).await
        {
            if message.is_text() {
                received += 1;
            }
        }
        assert!(
            received < MESSAGES,
            "the slow client got all {received} messages"
        );
        eventually("the cut-off connection is gone", LOG_WAIT, || {
            host.stats().live_websockets() == 2
        })
        .await;
    })
    .await;
}

/// A subscriber that stops reading for a while, with room enough in its outbound buffer, gets
/// every message in the publisher's order once it reads again: the frames its socket took when
/// they were published, then those that waited in the buffer, then those published after it
/// caught up, with no gap or swap where one kind of write gives way to the other. A
/// subscriber that reads throughout, hibernated, gets them all too.
#[tokio::test]
async fn a_subscriber_that_pauses_gets_everything_in_order_when_it_reads_again() {
    bounded(async {
        // Room for everything published while the slow subscriber does not read: more than its
        // socket's buffers hold, less than its outbound buffer.
        let sidecar = "[limits]\nhibernate_after_ms = 200\nmax_outbound_bytes = 16777216\n";
        let host = TestHost::start_configured(&["managed"], &[("managed", sidecar)], None).await;
        let mut slow = slow_client(&host, "/managed?topic=room").await;
        let (mut steady, _) = open(&host, "/managed?topic=room").await;
        eventually("both subscribers hibernated", LOG_WAIT, || {
            host.stats().awake_websockets() == 0
        })
        .await;
        let (mut publisher, _) = open(&host, "/managed").await;
        const FIRST: usize = 400;
        const FIRST_BYTES: usize = 16 * 1024;
        assert_eq!(
            ask(
                &mut publisher,
                &format!("pubmany:room:{FIRST}:{FIRST_BYTES}")
            )
            .await,
            format!("published:{FIRST}")
        );
        for i in 0..FIRST {
            let message = text(&mut steady).await;
            assert!(
                message.starts_with(&format!("{i}:")),
                "steady: {i} out of order"
            );
        }
        // The slow subscriber has read nothing yet: most of it waits in its buffer.
        for i in 0..FIRST {
            let message = text(&mut slow).await;
            assert!(
                message.starts_with(&format!("{i}:")),
                "slow: {i} out of order"
            );
            assert_eq!(message.len(), format!("{i}:").len() + FIRST_BYTES);
        }
        // Caught up: what comes next is written as it is published.
        assert_eq!(
            ask(&mut publisher, "pubmany:room:50:0").await,
            "published:50"
        );
        for client in [&mut slow, &mut steady] {
            for i in 0..50 {
                assert_eq!(text(client).await, format!("{i}:"));
            }
        }
        assert_eq!(ask(&mut slow, "echo:alive").await, "alive");
        assert_eq!(host.stats().live_websockets(), 3, "nobody was cut off");
    })
    .await;
}

/// Under the drop policy, a subscriber that stops reading loses messages but stays connected,
/// and the drops are counted in the log.
#[tokio::test]
async fn the_drop_policy_drops_messages_and_keeps_the_connection() {
    bounded(async {
        let sidecar = format!("overflow = \"drop\"\n{SIDECAR}");
        let host =
            TestHost::start_configured(&["managed"], &[("managed", sidecar.as_str())], None).await;
        let mut slow = slow_client(&host, "/managed?topic=room").await;
        let (mut publisher, _) = open(&host, "/managed").await;
        assert_eq!(
            ask(
                &mut publisher,
                &format!("pubmany:room:{MESSAGES}:{MESSAGE_BYTES}")
            )
            .await,
            format!("published:{MESSAGES}")
        );
        host.wait_for_log(
            &["dropped for 1 subscriber(s) whose outbound buffer is full"],
            LOG_WAIT,
        )
        .await;
        // The slow client catches up: what was not dropped arrives in order, then the answer
        // to a command sent now, on the same connection.
        slow_send(&mut slow, "echo:caught up").await;
        let mut last = None;
        let mut received = 0;
        loop {
            let message = text(&mut slow).await;
            if message == "caught up" {
                break;
            }
            let index: usize = message.split(':').next().unwrap().parse().unwrap();
            assert!(last.is_none_or(|last| index > last), "out of order");
            last = Some(index);
            received += 1;
        }
        assert!(0 < received && received < MESSAGES, "{received} received");
        assert_eq!(ask(&mut slow, "echo:alive").await, "alive");
        assert_eq!(host.stats().live_websockets(), 2);
    })
    .await;
}

/// A plugin's own `send` to a client that does not read hears `backpressure` once the buffer
/// is full; nothing is lost silently and the connection stays.
#[tokio::test]
async fn send_reports_backpressure() {
    bounded(async {
        let host = TestHost::start_configured(&["managed"], &[("managed", SIDECAR)], None).await;
        let mut slow = slow_client(&host, "/managed").await;
        slow_send(&mut slow, &format!("flood:{MESSAGES}:{MESSAGE_BYTES}")).await;
        let mut binaries = 0;
        let report = loop {
            match super::next_message(&mut slow).await {
                tokio_tungstenite::tungstenite::Message::Binary(_) => binaries += 1,
                tokio_tungstenite::tungstenite::Message::Text(text) => break text.to_string(),
                _ => {}
            }
        };
        let (queued, refused) = report
            .strip_prefix("flood:")
            .and_then(|rest| rest.split_once(':'))
            .map(|(q, r)| (q.parse::<usize>().unwrap(), r.parse::<usize>().unwrap()))
            .unwrap_or_else(|| panic!("unexpected answer {report:?}"));
        assert_eq!(queued + refused, MESSAGES);
        assert!(refused > 0, "no send was refused");
        assert_eq!(binaries, queued, "every queued message arrived");
        assert_eq!(ask(&mut slow, "echo:alive").await, "alive");
    })
    .await;
}

async fn slow_send(client: &mut Client, command: &str) {
    use futures_util::SinkExt as _;
    client
        .send(tokio_tungstenite::tungstenite::Message::text(command))
        .await
        .unwrap();
}

/// A client that floods pings and never reads cannot grow the host's memory: the host's pongs
/// queue in the same bounded buffer as everything else, and the client is cut off once it is
/// full.
#[tokio::test]
async fn a_ping_flood_without_reading_is_cut_off() {
    use tokio::io::AsyncWriteExt as _;
    bounded(async {
        let sidecar = "[limits]\nmax_outbound_bytes = 1024\n";
        let host = TestHost::start_configured(&["managed"], &[("managed", sidecar)], None).await;
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = socket.connect(host.addr).await.unwrap();
        stream
            .write_all(
                b"GET /managed HTTP/1.1\r\nhost: t\r\nconnection: upgrade\r\nupgrade: websocket\r\n\
                  sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            )
            .await
            .unwrap();
        // Masked (key 0) pings with 125-byte payloads, in batches, until the host hangs up.
        let mut ping = vec![0x89, 0x80 | 125, 0, 0, 0, 0];
        ping.extend_from_slice(&[b'p'; 125]);
        let batch = ping.repeat(100);
        let mut cut_off = false;
        for _ in 0..2_000 {
            if stream.write_all(&batch).await.is_err() {
                cut_off = true;
                break;
            }
            if host
                .log_lines()
                .iter()
                .any(|line| line.contains("connection cut off"))
            {
                cut_off = true;
                break;
            }
        }
        assert!(
            cut_off,
            "200,000 pings later the client was still connected"
        );
        host.wait_for_log(
            &["connection cut off: the client fell behind past its outbound buffer"],
            LOG_WAIT,
        )
        .await;
        eventually("the connection is gone", LOG_WAIT, || {
            host.stats().live_websockets() == 0
        })
        .await;
    })
    .await;
}
