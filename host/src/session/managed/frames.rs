//! WebSocket frames the host writes itself, formatted by tungstenite (never by hand): a data
//! frame for a plugin's `send` or `publish` (formatted once, then shared by every outbox it is
//! queued in), and the close frame the host sends when it cuts a connection off.

use bytes::Bytes;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};

use crate::engine::bindings::Message;

/// Longest close reason that fits a control frame (125 bytes less the 2-byte code).
pub(crate) const MAX_CLOSE_REASON_BYTES: usize = 123;

/// The payload size of `message`.
pub(crate) fn payload_len(message: &Message) -> usize {
    match message {
        Message::Text(text) => text.len(),
        Message::Binary(bytes) => bytes.len(),
    }
}

/// `message` as one final, unmasked (server-to-client) data frame.
pub(crate) fn data_frame(message: Message) -> Bytes {
    let frame = match message {
        Message::Text(text) => Frame::message(text.into_bytes(), OpCode::Data(Data::Text), true),
        Message::Binary(bytes) => Frame::message(bytes, OpCode::Data(Data::Binary), true),
    };
    format(frame)
}

/// A close frame with `code` and `reason` (cut to [`MAX_CLOSE_REASON_BYTES`] on a character
/// boundary).
pub(crate) fn close_frame(code: u16, reason: &str) -> Bytes {
    format(Frame::close(Some(close_payload(code, reason))))
}

/// The close frame tungstenite sends for `code` and `reason`, the reason cut to fit.
pub(crate) fn close_payload(code: u16, reason: &str) -> CloseFrame {
    CloseFrame {
        code: CloseCode::from(code),
        reason: truncate(reason, MAX_CLOSE_REASON_BYTES).to_owned().into(),
    }
}

fn format(frame: Frame) -> Bytes {
    let mut wire = Vec::with_capacity(frame.len());
    // Writing into a `Vec` cannot fail.
    let _ = frame.format(&mut wire);
    Bytes::from(wire)
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

/// Whether a server may send close `code` (RFC 6455 §7.4): the defined codes meant to be
/// sent, and the ranges for libraries (3000–3999) and applications (4000–4999).
pub(crate) fn is_sendable_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_unmasked_and_final() {
        let frame = data_frame(Message::Text("hi".into()));
        assert_eq!(&frame[..], &[0x81, 2, b'h', b'i']);
        let frame = data_frame(Message::Binary(vec![0; 200]));
        assert_eq!(&frame[..4], &[0x82, 126, 0, 200]);
        assert_eq!(frame.len(), 204);
    }

    #[test]
    fn close_reasons_are_cut_on_a_character_boundary() {
        let frame = close_frame(1000, &"é".repeat(100));
        // 2-byte header, 2-byte code, then at most 123 bytes of whole characters.
        assert_eq!(frame.len(), 2 + 2 + 122);
        assert_eq!(&frame[..4], &[0x88, 124, 0x03, 0xe8]);
    }

    #[test]
    fn only_codes_a_server_may_send_are_sendable() {
        for code in [1000, 1001, 1008, 1011, 1013, 3000, 4999] {
            assert!(is_sendable_close_code(code), "{code}");
        }
        for code in [0, 999, 1004, 1005, 1006, 1015, 2000, 2999, 5000] {
            assert!(!is_sendable_close_code(code), "{code}");
        }
    }
}
