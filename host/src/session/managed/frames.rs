//! WebSocket frames the host writes itself, formatted by tungstenite (never by hand): a data
//! frame for a plugin's `send` or `publish` (formatted once, then shared by every outbox it is
//! queued in; a large payload is not copied behind its header), and the close frame the host
//! sends when it cuts a connection off.

use bytes::Bytes;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};

use crate::engine::bindings::{Message, MessageRef};
use crate::topics::WireFrame;

/// Payloads up to this size are copied behind their header into one buffer (one allocation,
/// one slice to write); larger ones stay where they are and are written after it.
const COPY_PAYLOAD_BYTES: usize = 512;

/// Longest close reason that fits a control frame (125 bytes less the 2-byte code).
pub(crate) const MAX_CLOSE_REASON_BYTES: usize = 123;

/// `message` as one final, unmasked (server-to-client) data frame.
pub(crate) fn data_frame(message: Message) -> WireFrame {
    let (payload, opcode) = match message {
        Message::Text(text) => (Bytes::from(text.into_bytes()), Data::Text),
        Message::Binary(bytes) => (Bytes::from(bytes), Data::Binary),
    };
    if payload.len() <= COPY_PAYLOAD_BYTES {
        return format(Frame::message(payload, OpCode::Data(opcode), true)).into();
    }
    WireFrame::new(header(opcode, payload.len()), payload)
}

/// A data frame for `message` whose payload stays where it is (a guest's memory) unless it is
/// small: what [`data_frame`] makes, without taking the payload.
pub(crate) enum BorrowedFrame<'a> {
    /// A small payload, copied behind its header.
    Whole(WireFrame),
    /// The header, and the payload to write after it.
    Split { head: Bytes, body: &'a [u8] },
}

/// `message` (borrowed) as one final, unmasked data frame: a payload up to
/// [`COPY_PAYLOAD_BYTES`] is copied behind its header, a larger one is left where it is.
pub(crate) fn borrowed_data_frame(message: MessageRef<'_>) -> BorrowedFrame<'_> {
    let (payload, opcode) = match message {
        MessageRef::Text(text) => (text.as_bytes(), Data::Text),
        MessageRef::Binary(bytes) => (bytes, Data::Binary),
    };
    if payload.len() <= COPY_PAYLOAD_BYTES {
        let frame = Frame::message(Bytes::copy_from_slice(payload), OpCode::Data(opcode), true);
        return BorrowedFrame::Whole(format(frame).into());
    }
    BorrowedFrame::Split {
        head: header(opcode, payload.len()),
        body: payload,
    }
}

/// The header of a final, unmasked data frame of `len` payload bytes.
fn header(opcode: Data, len: usize) -> Bytes {
    let header = FrameHeader {
        opcode: OpCode::Data(opcode),
        ..FrameHeader::default()
    };
    let mut head = Vec::with_capacity(header.len(len as u64));
    // Writing into a `Vec` cannot fail.
    let _ = header.format(len as u64, &mut head);
    Bytes::from(head)
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

    fn wire(frame: &WireFrame) -> Vec<u8> {
        frame.parts().concat()
    }

    #[test]
    fn frames_are_unmasked_and_final() {
        assert_eq!(
            wire(&data_frame(Message::Text("hi".into()))),
            [0x81, 2, b'h', b'i']
        );
        let frame = wire(&data_frame(Message::Binary(vec![0; 200])));
        assert_eq!(frame[..4], [0x82, 126, 0, 200]);
        assert_eq!(frame.len(), 204);
        // A large payload is not copied: it follows its header as a part of its own.
        let frame = data_frame(Message::Binary(vec![7; 70_000]));
        let [head, body] = frame.parts();
        assert_eq!(head, [0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
        assert_eq!(body.len(), 70_000);
    }

    #[test]
    fn borrowed_frames_match_owned_ones() {
        for payload in [vec![3_u8; 20], vec![5; 512], vec![7; 513], vec![9; 70_000]] {
            let owned = wire(&data_frame(Message::Binary(payload.clone())));
            let borrowed = match borrowed_data_frame(MessageRef::Binary(&payload)) {
                BorrowedFrame::Whole(frame) => wire(&frame),
                BorrowedFrame::Split { head, body } => [&head[..], body].concat(),
            };
            assert_eq!(borrowed, owned, "{} bytes", payload.len());
        }
        let text = "é".repeat(300);
        let owned = wire(&data_frame(Message::Text(text.clone())));
        let BorrowedFrame::Split { head, body } = borrowed_data_frame(MessageRef::Text(&text))
        else {
            panic!("600 bytes are left where they are");
        };
        assert_eq!([&head[..], body].concat(), owned);
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
