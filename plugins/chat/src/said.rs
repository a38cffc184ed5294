//! What may be said in a room: the rules for a member's WebSocket message and for a message
//! posted over HTTP, and the answer when one is broken. Pure, so tested on the build machine.

use switchyard_sdk::Message;

/// The longest message, in bytes of UTF-8, from a member or posted over HTTP.
pub(crate) const MAX_TEXT_BYTES: usize = 4096;

/// Close code for a binary message: "unsupported data" (RFC 6455 §7.4.1).
pub(crate) const CLOSE_BINARY: u16 = 1003;
/// Close code for a message over [`MAX_TEXT_BYTES`]: "message too big".
pub(crate) const CLOSE_TOO_BIG: u16 = 1009;
/// Close code when the plugin cannot go on with a connection (it could not join the room, or
/// its attachment is not one this version understands): "internal error".
pub(crate) const CLOSE_INTERNAL: u16 = 1011;

/// How a member's message is refused: the connection is closed with this code and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The close code.
    pub(crate) code: u16,
    /// The close reason (well under the 123 bytes a close frame allows).
    pub(crate) reason: &'static str,
}

/// The text of a member's message, or why the connection is closed instead.
pub(crate) fn from_member(message: &Message) -> Result<&str, Refusal> {
    match message {
        Message::Binary(_) => Err(Refusal {
            code: CLOSE_BINARY,
            reason: "chat takes text messages only",
        }),
        Message::Text(text) if text.len() > MAX_TEXT_BYTES => Err(Refusal {
            code: CLOSE_TOO_BIG,
            reason: "a message is at most 4096 bytes",
        }),
        Message::Text(text) => Ok(text),
    }
}

/// The text of a `POST` body, or the status and body to answer instead: `413` over
/// [`MAX_TEXT_BYTES`], `400` if it is not UTF-8.
pub(crate) fn from_post(body: &[u8]) -> Result<&str, (u16, &'static str)> {
    if body.len() > MAX_TEXT_BYTES {
        return Err((413, "a message is at most 4096 bytes\n"));
    }
    std::str::from_utf8(body).map_err(|_| (400, "the message must be UTF-8 text\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_say_text_up_to_the_limit() {
        let longest = "é".repeat(MAX_TEXT_BYTES / 2);
        assert_eq!(
            from_member(&Message::Text(longest.clone())),
            Ok(&longest[..])
        );
        assert_eq!(from_member(&Message::Text(String::new())), Ok(""));
        let over = format!("{longest}x");
        assert_eq!(from_member(&Message::Text(over)).unwrap_err().code, 1009);
        assert_eq!(
            from_member(&Message::Binary(vec![1])).unwrap_err().code,
            1003
        );
    }

    #[test]
    fn close_reasons_fit_a_close_frame_and_name_the_limit() {
        let too_big = from_member(&Message::Text("x".repeat(MAX_TEXT_BYTES + 1))).unwrap_err();
        assert!(too_big.reason.contains(&MAX_TEXT_BYTES.to_string()));
        let binary = from_member(&Message::Binary(Vec::new())).unwrap_err();
        for refusal in [too_big, binary] {
            assert!(refusal.reason.len() <= 123);
        }
    }

    #[test]
    fn posts_are_bounded_utf8() {
        assert_eq!(from_post("hé".as_bytes()), Ok("hé"));
        assert_eq!(
            from_post(&[b'x'; MAX_TEXT_BYTES]).map(str::len),
            Ok(MAX_TEXT_BYTES)
        );
        assert_eq!(from_post(&[b'x'; MAX_TEXT_BYTES + 1]).unwrap_err().0, 413);
        assert_eq!(from_post(b"\xff\xfe").unwrap_err().0, 400);
        // A long body is refused for its length before its encoding is looked at.
        assert_eq!(from_post(&[0xff; MAX_TEXT_BYTES + 1]).unwrap_err().0, 413);
    }
}
