//! The WebSocket over an in-memory transport, against tungstenite as the client.

use std::mem;

use tungstenite::protocol::Role;

use super::super::memory::Buffers;
use super::*;
use crate::testing::{Script, ready};

/// Frames `messages` as a client sends them (masked).
fn from_client(messages: impl IntoIterator<Item = Message>) -> Vec<u8> {
    let mut client =
        tungstenite::WebSocket::from_raw_socket(Buffers::default(), Role::Client, None);
    for message in messages {
        client.write(message).unwrap();
    }
    client.flush().unwrap();
    mem::take(&mut client.get_mut().outbound)
}

/// Reads everything the server sent, as the client sees it.
fn to_client(sent: &[u8]) -> Vec<Message> {
    let mut buffers = Buffers::default();
    buffers.inbound = sent.to_vec();
    buffers.input_ended = true;
    let unlimited = Config::default()
        .max_message_size(None)
        .max_frame_size(None);
    let mut client =
        tungstenite::WebSocket::from_raw_socket(buffers, Role::Client, Some(unlimited));
    let mut messages = Vec::new();
    while let Ok(message) = client.read() {
        messages.push(message);
    }
    messages
}

fn close_frame(code: CloseCode, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

/// What the echo plugin does; returns the error that ended the session, if any.
async fn echo<T: Transport>(socket: &mut WebSocket<T>) -> Option<Error> {
    while let Some(received) = socket.recv().await {
        match received {
            Ok(message) if message.is_text() || message.is_binary() => {
                socket.feed(message).await.unwrap()
            }
            Ok(_) => {}
            Err(error) => return Some(error),
        }
    }
    None
}

/// Data is echoed, the ping answered and the close handshake completed, all in one write.
#[test]
fn echoes_answers_pings_and_closes_in_one_write() {
    let input = from_client([
        Message::text("hello"),
        Message::binary(vec![1, 2, 3]),
        Message::Ping(b"p".to_vec().into()),
        close_frame(CloseCode::Normal, "done"),
    ]);
    let mut socket = WebSocket::new(Script::new([input]));
    assert!(ready(echo(&mut socket)).is_none());

    let sent = to_client(&socket.transport.output);
    assert_eq!(
        sent,
        [
            Message::text("hello"),
            Message::binary(vec![1, 2, 3]),
            Message::Pong(b"p".to_vec().into()),
            close_frame(CloseCode::Normal, "done"),
        ]
    );
    assert_eq!(socket.transport.writes, 1);
    assert!(
        ready(socket.recv()).is_none(),
        "a finished WebSocket stays finished"
    );
}

/// Messages that arrive together are answered together (one write), and input ending without
/// a close handshake ends the session without an error, after a `1001 going away` close.
#[test]
fn batches_answers_to_pipelined_messages() {
    let messages: Vec<_> = (0..100)
        .map(|i| Message::text(format!("message {i}")))
        .collect();
    let mut socket = WebSocket::new(Script::new([from_client(messages.clone())]));
    assert!(ready(echo(&mut socket)).is_none());
    let mut expected = messages;
    expected.push(close_frame(CloseCode::Away, "going away"));
    assert_eq!(to_client(&socket.transport.output), expected);
    assert_eq!(socket.transport.writes, 2, "the answers, then the goodbye");
}

/// A 1 MiB message arriving in 16 KiB pieces round-trips.
#[test]
fn reassembles_a_large_message_from_many_reads() {
    let payload: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let input = from_client([Message::binary(payload.clone())]);
    let chunks = input.chunks(16 * 1024).map(<[u8]>::to_vec);
    let mut socket = WebSocket::new(Script::new(chunks));
    assert!(ready(echo(&mut socket)).is_none());
    let sent = to_client(&socket.transport.output);
    assert_eq!(sent.len(), 2, "the echo, then the goodbye");
    assert!(sent[0] == Message::binary(payload), "the echo differs");
    assert_eq!(sent[1], close_frame(CloseCode::Away, "going away"));
}

/// A message over the limit is an error, and the client is told with close code 1009.
#[test]
fn refuses_oversized_messages_with_1009() {
    let config = default_config().max_message_size(Some(1024));
    let input = from_client([Message::binary(vec![0; 2048])]);
    let mut socket = WebSocket::with_config(Script::new([input]), config);
    assert!(matches!(
        ready(socket.recv()),
        Some(Err(Error::Capacity(_)))
    ));
    assert!(ready(socket.recv()).is_none());
    assert_eq!(
        to_client(&socket.transport.output),
        [close_frame(CloseCode::Size, "message too big")]
    );
}

/// Clients must mask their frames; an unmasked one fails the connection with code 1002.
#[test]
fn refuses_unmasked_frames_with_1002() {
    let unmasked_text = vec![0x81, 0x02, b'h', b'i'];
    let mut socket = WebSocket::new(Script::new([unmasked_text]));
    assert!(matches!(
        ready(echo(&mut socket)),
        Some(Error::Protocol(ProtocolError::UnmaskedFrameFromClient))
    ));
    assert_eq!(
        to_client(&socket.transport.output),
        [close_frame(CloseCode::Protocol, "protocol error")]
    );
}

/// `feed` holds messages back only up to the threshold.
#[test]
fn feed_sends_once_the_queue_passes_the_threshold() {
    let mut socket = WebSocket::new(Script::default());
    for _ in 0..100 {
        ready(socket.feed(Message::binary(vec![7; 1024]))).unwrap();
    }
    // Each frame is 1024 bytes plus a 4-byte header: the 64th crosses 64 KiB.
    assert_eq!(socket.transport.writes, 1);
    assert_eq!(socket.transport.output.len(), 64 * 1028);
    ready(socket.flush()).unwrap();
    assert_eq!(to_client(&socket.transport.output).len(), 100);
}

/// `close` sends our close frame and returns once the client has answered.
#[test]
fn close_completes_the_handshake() {
    let reply = from_client([close_frame(CloseCode::Normal, "")]);
    let mut socket = WebSocket::new(Script::new([reply]));
    ready(socket.close(Some(CloseFrame {
        code: CloseCode::Away,
        reason: Utf8Bytes::from_static("bye"),
    })))
    .unwrap();
    assert_eq!(
        to_client(&socket.transport.output),
        [close_frame(CloseCode::Away, "bye")]
    );
    assert!(socket.transport.input.is_empty());
    assert!(ready(socket.recv()).is_none());
    assert!(matches!(
        ready(socket.feed(Message::text("late"))),
        Err(Error::AlreadyClosed)
    ));
}

/// When the client can no longer be written to, sending fails and receiving ends.
#[test]
fn a_hung_up_client_ends_the_session() {
    let mut transport = Script::new([from_client([Message::text("a")])]);
    transport.hung_up = true;
    let mut socket = WebSocket::new(transport);
    assert!(ready(socket.send(Message::text("b"))).is_err());
    assert!(ready(socket.recv()).is_none());

    let mut transport = Script::new([from_client([Message::text("a"), Message::text("b")])]);
    transport.hung_up = true;
    let mut socket = WebSocket::new(transport);
    assert!(ready(echo(&mut socket)).is_none());
}
