//! The `echo` example as a managed WebSocket: what a client sees is what the in-guest echo
//! (`echo-raw`) gives, with the framing in the host.

use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Bytes, Message};

use switchyard_tests::client::RawConnection;
use switchyard_tests::{TestHost, bounded};

use super::{LOG_WAIT, connect, next_message};

/// Text (with non-ASCII) and binary messages come back as sent, in order.
#[tokio::test]
async fn echoes_text_and_binary() {
    bounded(async {
        let host = TestHost::start(&["echo"]).await;
        let mut client = connect(&host, "/echo").await;
        let text = "héllo, wörld — 你好 🚂";
        client.send(Message::text(text)).await.unwrap();
        client
            .send(Message::binary(vec![0u8, 1, 2, 255]))
            .await
            .unwrap();
        assert_eq!(next_message(&mut client).await, Message::text(text));
        assert_eq!(
            next_message(&mut client).await,
            Message::binary(vec![0u8, 1, 2, 255])
        );
        host.wait_for_log(&["plugin=echo", "connection=", "connection open"], LOG_WAIT)
            .await;
    })
    .await;
}

/// A 1 MiB message (the default limit) survives the trip whole, either way.
#[tokio::test]
async fn echoes_a_one_mebibyte_message() {
    bounded(async {
        let host = TestHost::start(&["echo"]).await;
        let mut client = connect(&host, "/echo").await;
        let payload: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        client.send(Message::binary(payload.clone())).await.unwrap();
        assert_eq!(next_message(&mut client).await, Message::binary(payload));
    })
    .await;
}

/// The host answers a ping with a pong carrying the same payload.
#[tokio::test]
async fn answers_ping_with_pong() {
    bounded(async {
        let host = TestHost::start(&["echo"]).await;
        let mut client = connect(&host, "/echo").await;
        client
            .send(Message::Ping(Bytes::from_static(b"are you there")))
            .await
            .unwrap();
        assert_eq!(
            next_message(&mut client).await,
            Message::Pong(Bytes::from_static(b"are you there"))
        );
    })
    .await;
}

/// A client's close is answered with the same code, then the host closes the connection and
/// logs the code and the reason.
#[tokio::test]
async fn completes_the_close_handshake() {
    bounded(async {
        let host = TestHost::start(&["echo"]).await;
        let mut client = connect(&host, "/echo").await;
        client
            .close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            }))
            .await
            .unwrap();
        match next_message(&mut client).await {
            Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Normal),
            other => panic!("expected a close frame, got {other:?}"),
        }
        assert!(
            client.next().await.is_none(),
            "the stream ends after the close handshake"
        );
        host.wait_for_log(
            &[
                "plugin=echo",
                "connection closed by the client (1000 \"bye\")",
            ],
            LOG_WAIT,
        )
        .await;
        let deadline = tokio::time::Instant::now() + LOG_WAIT;
        while host.stats().live_websockets() > 0 || host.stats().live_instances() > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "slots not given back"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// The subprotocol the plugin picks from the client's offer is named in the `101`.
#[tokio::test]
async fn negotiates_a_subprotocol() {
    bounded(async {
        let host = TestHost::start(&["echo"]).await;
        let mut request = host.ws_url("/echo").into_client_request().unwrap();
        request
            .headers_mut()
            .insert("sec-websocket-protocol", "chat, echo".parse().unwrap());
        let (mut client, response) = connect_async(request).await.unwrap();
        assert_eq!(response.headers()["sec-websocket-protocol"], "echo");
        client.send(Message::text("with protocol")).await.unwrap();
        assert_eq!(
            next_message(&mut client).await,
            Message::text("with protocol")
        );
    })
    .await;
}

/// Raw bytes on the wire: the `101` carries the RFC's accept key, frames the client sent right
/// behind its request head are not lost, and the echo comes back unmasked.
#[tokio::test]
async fn early_frames_and_the_wire_format() {
    bounded(async {
        let host = TestHost::start(&["echo"]).await;
        // The head, then at once a masked text frame "hi" (FIN, opcode 1, mask key 0).
        let mut bytes = b"GET /echo HTTP/1.1\r\nhost: t\r\nconnection: keep-alive, Upgrade\r\n\
              upgrade: foo/2, WebSocket\r\nsec-websocket-version: 13\r\n\
              sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            .to_vec();
        bytes.extend_from_slice(&[0x81, 0x82, 0, 0, 0, 0, b'h', b'i']);
        let mut conn = RawConnection::open(host.addr, &bytes).await;
        let head = conn.read_head().await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(
            head.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "{head}"
        );
        assert_eq!(conn.read_exact(4).await, [0x81, 0x02, b'h', b'i']);
    })
    .await;
}
