//! WebSocket through the `echo` plugin, checked with tokio-tungstenite as the client: text,
//! binary, a 1 MiB message, ping/pong, subprotocols and the close handshake (RFC 6455).

use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use switchyard_tests::client::{RawConnection, get};
use switchyard_tests::{TestHost, bounded};

type Client = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(host: &TestHost) -> Client {
    let (client, response) = connect_async(host.ws_url("/echo-raw"))
        .await
        .expect("WebSocket handshake");
    assert_eq!(response.status(), 101);
    client
}

/// The next data message, skipping nothing: echo must answer in order.
async fn next_message(client: &mut Client) -> Message {
    client
        .next()
        .await
        .expect("the connection stayed open")
        .expect("a valid frame")
}

/// Text (with non-ASCII) and binary messages come back as sent, in order.
#[tokio::test]
async fn echoes_text_and_binary() {
    bounded(async {
        let host = TestHost::start(&["echo-raw"]).await;
        let mut client = connect(&host).await;
        client
            .send(Message::text("héllo, wörld — 你好 🚂"))
            .await
            .unwrap();
        client
            .send(Message::binary(vec![0u8, 1, 2, 255]))
            .await
            .unwrap();
        assert_eq!(
            next_message(&mut client).await,
            Message::text("héllo, wörld — 你好 🚂")
        );
        assert_eq!(
            next_message(&mut client).await,
            Message::binary(vec![0u8, 1, 2, 255])
        );
    })
    .await;
}

/// A 1 MiB message survives the trip whole.
#[tokio::test]
async fn echoes_a_one_mebibyte_message() {
    bounded(async {
        let host = TestHost::start(&["echo-raw"]).await;
        let mut client = connect(&host).await;
        let payload: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        client.send(Message::binary(payload.clone())).await.unwrap();
        assert_eq!(next_message(&mut client).await, Message::binary(payload));
    })
    .await;
}

/// A ping is answered with a pong carrying the same payload.
#[tokio::test]
async fn answers_ping_with_pong() {
    bounded(async {
        let host = TestHost::start(&["echo-raw"]).await;
        let mut client = connect(&host).await;
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

/// A client close is answered with a close frame, then the server closes the connection.
#[tokio::test]
async fn completes_the_close_handshake() {
    bounded(async {
        let host = TestHost::start(&["echo-raw"]).await;
        let mut client = connect(&host).await;
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
            &["plugin=echo-raw", "session ended"],
            std::time::Duration::from_secs(5),
        )
        .await;
    })
    .await;
}

/// A subprotocol the plugin supports is selected; the handshake still works without one.
#[tokio::test]
async fn negotiates_a_subprotocol() {
    bounded(async {
        let host = TestHost::start(&["echo-raw"]).await;
        let mut request = host.ws_url("/echo-raw").into_client_request().unwrap();
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

/// Many sessions at once each get their own answers.
#[tokio::test]
async fn concurrent_sessions_are_independent() {
    bounded(async {
        let host = TestHost::start(&["echo-raw"]).await;
        let mut clients = Vec::new();
        for _ in 0..20 {
            clients.push(connect(&host).await);
        }
        for (i, client) in clients.iter_mut().enumerate() {
            client
                .send(Message::text(format!("client {i}")))
                .await
                .unwrap();
        }
        for (i, client) in clients.iter_mut().enumerate() {
            assert_eq!(
                next_message(client).await,
                Message::text(format!("client {i}"))
            );
        }
    })
    .await;
}

/// A plain GET to the WebSocket plugin gets the plugin's own refusal, not a `101`.
#[tokio::test]
async fn plain_request_to_websocket_plugin_is_refused_by_the_plugin() {
    bounded(async {
        let host = TestHost::start(&["echo-raw"]).await;
        let reply = get(host.addr, "/echo-raw", &[]).await;
        assert_eq!(reply.status, 400);
    })
    .await;
}

/// `Upgrade` and `Connection` are token lists: a client offering `foo/2, websocket` (with
/// `keep-alive, Upgrade`) gets the WebSocket, and a frame sent over it comes back.
#[tokio::test]
async fn accepts_websocket_among_other_offered_protocols() {
    bounded(async {
        let host = TestHost::start(&["echo-raw"]).await;
        let mut conn = RawConnection::open(
            host.addr,
            b"GET /echo-raw HTTP/1.1\r\nhost: t\r\nconnection: keep-alive, Upgrade\r\n\
              upgrade: foo/2, WebSocket\r\nsec-websocket-version: 13\r\n\
              sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await;
        let head = conn.read_head().await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(
            head.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "{head}"
        );
        // A masked text frame "hi" (FIN, opcode 1, mask key 0), then the echo, unmasked.
        conn.write(&[0x81, 0x82, 0, 0, 0, 0, b'h', b'i']).await;
        assert_eq!(conn.read_exact(4).await, [0x81, 0x02, b'h', b'i']);
    })
    .await;
}
