//! What the host's framing refuses: handshakes (with the SDK's statuses), answers a plugin may
//! not give (`502`), and frames a client may not send (`1007`, `1009`, `1002`).

use futures_util::SinkExt as _;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use switchyard_tests::client::{RawConnection, get};
use switchyard_tests::{TestHost, bounded};

use super::{LOG_WAIT, ask, closed_with, open};

const HANDSHAKE: [(&str, &str); 4] = [
    ("connection", "upgrade"),
    ("upgrade", "websocket"),
    ("sec-websocket-version", "13"),
    ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
];

/// Handshakes that are not valid get the statuses the SDK answers, and no WebSocket.
#[tokio::test]
async fn bad_handshakes_are_refused_with_the_sdk_statuses() {
    bounded(async {
        let host = TestHost::start(&["managed"]).await;
        assert_eq!(get(host.addr, "/managed", &[]).await.status, 400);
        let old_version = [
            HANDSHAKE[0],
            HANDSHAKE[1],
            ("sec-websocket-version", "8"),
            HANDSHAKE[3],
        ];
        let refused = get(host.addr, "/managed", &old_version).await;
        assert_eq!(refused.status, 426);
        assert_eq!(refused.headers["sec-websocket-version"], "13");
        let bad_key = [
            HANDSHAKE[0],
            HANDSHAKE[1],
            HANDSHAKE[2],
            ("sec-websocket-key", "c2hvcnQ="),
        ];
        assert_eq!(get(host.addr, "/managed", &bad_key).await.status, 400);
        assert_eq!(host.stats().live_websockets(), 0);
    })
    .await;
}

/// A plugin's answer the host cannot send is refused with `502` and an error naming why: a
/// handshake field, an attachment or topics over the limits.
#[tokio::test]
async fn invalid_websocket_answers_get_502() {
    bounded(async {
        let host = TestHost::start(&["managed"]).await;
        for (query, logged) in [
            (
                "header=sec-websocket-accept",
                "belongs to the WebSocket handshake",
            ),
            ("attach-bytes=4097", "an attachment of 4097 bytes"),
            (&"topic=x&".repeat(65), "65 topics"),
            (
                &format!("topic={}", "t".repeat(129)),
                "topic name of 129 bytes",
            ),
        ] {
            let reply = get(host.addr, &format!("/managed?{query}"), &HANDSHAKE).await;
            assert_eq!(reply.status, 502, "{query}");
            host.wait_for_log(
                &["plugin returned an invalid websocket answer", logged],
                LOG_WAIT,
            )
            .await;
        }
        // Within the limits it is fine, and a plugin's own field reaches the client.
        let (_client, response) = tokio_tungstenite::connect_async(host.ws_url(&format!(
            "/managed?attach-bytes=4096&header=x-room&topic={}",
            "t".repeat(128)
        )))
        .await
        .unwrap();
        assert_eq!(response.headers()["x-room"], "x");
        assert_eq!(host.stats().live_websockets(), 1);
    })
    .await;
}

/// The host names the subprotocol the plugin chose from the client's offer.
#[tokio::test]
async fn names_the_chosen_subprotocol() {
    bounded(async {
        let host = TestHost::start(&["managed"]).await;
        let mut request = host.ws_url("/managed").into_client_request().unwrap();
        request
            .headers_mut()
            .insert("sec-websocket-protocol", "v2, v1".parse().unwrap());
        let (_client, response) = tokio_tungstenite::connect_async(request).await.unwrap();
        assert_eq!(response.headers()["sec-websocket-protocol"], "v1");
    })
    .await;
}

/// A text message that is not UTF-8 is refused with `1007`.
#[tokio::test]
async fn invalid_utf8_is_closed_with_1007() {
    bounded(async {
        let host = TestHost::start(&["managed"]).await;
        let mut conn = RawConnection::open(host.addr, &upgrade_request()).await;
        assert!(conn.read_head().await.starts_with("HTTP/1.1 101"));
        // A masked (key 0) text frame holding 0xff, which is never UTF-8.
        conn.write(&[0x81, 0x81, 0, 0, 0, 0, 0xff]).await;
        let rest = conn.read_to_end_within(LOG_WAIT).await;
        assert_eq!(close_code_in(&rest), Some(1007), "{rest:?}");
        host.wait_for_log(&["connection failed by the host (1007"], LOG_WAIT)
            .await;
    })
    .await;
}

/// A message over `max_message_bytes` is refused with `1009`; one at the limit passes.
#[tokio::test]
async fn oversized_messages_are_closed_with_1009() {
    bounded(async {
        let sidecar = "[limits]\nmax_message_bytes = 1024\n";
        let host = TestHost::start_configured(&["managed"], &[("managed", sidecar)], None).await;
        let (mut client, _) = open(&host, "/managed").await;
        let at_limit = format!("echo:{}", "a".repeat(1024 - 5));
        assert_eq!(ask(&mut client, &at_limit).await.len(), 1024 - 5);
        client.send(Message::binary(vec![0u8; 1025])).await.unwrap();
        assert_eq!(closed_with(&mut client).await.0, CloseCode::Size);
        host.wait_for_log(
            &["(1009 message of 1025 bytes, more than the 1024 allowed)"],
            LOG_WAIT,
        )
        .await;
    })
    .await;
}

/// A client frame without a mask breaks RFC 6455: `1002`.
#[tokio::test]
async fn unmasked_frames_are_closed_with_1002() {
    bounded(async {
        let host = TestHost::start(&["managed"]).await;
        let mut conn = RawConnection::open(host.addr, &upgrade_request()).await;
        assert!(conn.read_head().await.starts_with("HTTP/1.1 101"));
        conn.write(&[0x81, 0x02, b'h', b'i']).await;
        let rest = conn.read_to_end_within(LOG_WAIT).await;
        assert_eq!(close_code_in(&rest), Some(1002), "{rest:?}");
    })
    .await;
}

fn upgrade_request() -> Vec<u8> {
    b"GET /managed HTTP/1.1\r\nhost: t\r\nconnection: upgrade\r\nupgrade: websocket\r\n\
      sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        .to_vec()
}

/// The code of the close frame in `bytes` (server frames, unmasked): skips the frames before
/// it.
fn close_code_in(mut bytes: &[u8]) -> Option<u16> {
    while let [first, len, rest @ ..] = bytes {
        let len = usize::from(*len & 0x7f);
        assert!(len < 126, "test frames are short");
        if *first == 0x88 {
            return Some(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
        }
        bytes = rest.get(len..)?;
    }
    None
}
