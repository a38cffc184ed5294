//! What the chat sends to its members: one JSON object per event, spelled exactly as the
//! protocol documents it (keys in this order, no spaces), so clients may compare or parse it.
//!
//! Written by hand rather than with serde_json: the objects are flat, their keys fixed and their
//! values strings, so the only real work is escaping a string (RFC 8259 §7), a few lines that
//! the tests check against serde_json. Leaving serde out keeps the plugin small, and a smaller
//! module is quicker to instantiate on every wake from hibernation.

use std::fmt::Write as _;

/// Something that happened in a room, as the room's members are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event<'a> {
    /// `from` has entered `room` (told to those already there).
    Join { room: &'a str, from: &'a str },
    /// `from` has left `room`.
    Leave { room: &'a str, from: &'a str },
    /// `from` said `text` in `room` (`from` is `server` for a message posted over HTTP).
    Message {
        room: &'a str,
        from: &'a str,
        text: &'a str,
    },
}

impl Event<'_> {
    /// The event as the JSON text members receive, e.g.
    /// `{"type":"message","room":"lobby","from":"ada","text":"hi"}`.
    pub(crate) fn to_json(self) -> String {
        let (kind, room, from, text) = match self {
            Self::Join { room, from } => ("join", room, from, None),
            Self::Leave { room, from } => ("leave", room, from, None),
            Self::Message { room, from, text } => ("message", room, from, Some(text)),
        };
        let mut json =
            String::with_capacity(48 + room.len() + from.len() + text.map_or(0, str::len));
        json.push_str("{\"type\":");
        push_string(&mut json, kind);
        json.push_str(",\"room\":");
        push_string(&mut json, room);
        json.push_str(",\"from\":");
        push_string(&mut json, from);
        if let Some(text) = text {
            json.push_str(",\"text\":");
            push_string(&mut json, text);
        }
        json.push('}');
        json
    }
}

/// Appends `value` as a JSON string: quoted, with `"` and `\` escaped and every control
/// character below U+0020 written as an escape (RFC 8259 §7 requires exactly these). The short
/// forms and the lower-case `\u00xx` are serde_json's spelling too. Everything else, including
/// non-ASCII, is valid as it is in UTF-8 JSON text.
fn push_string(json: &mut String, value: &str) {
    json.push('"');
    for c in value.chars() {
        match c {
            '"' => json.push_str("\\\""),
            '\\' => json.push_str("\\\\"),
            '\n' => json.push_str("\\n"),
            '\r' => json.push_str("\\r"),
            '\t' => json.push_str("\\t"),
            '\u{8}' => json.push_str("\\b"),
            '\u{c}' => json.push_str("\\f"),
            c if c < '\u{20}' => {
                // Writing to a String cannot fail.
                let _ = write!(json, "\\u{:04x}", u32::from(c));
            }
            c => json.push(c),
        }
    }
    json.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The three shapes, byte for byte as the protocol documents them.
    #[test]
    fn spells_each_event_as_documented() {
        assert_eq!(
            Event::Join {
                room: "lobby",
                from: "ada"
            }
            .to_json(),
            r#"{"type":"join","room":"lobby","from":"ada"}"#
        );
        assert_eq!(
            Event::Leave {
                room: "lobby",
                from: "ada"
            }
            .to_json(),
            r#"{"type":"leave","room":"lobby","from":"ada"}"#
        );
        assert_eq!(
            Event::Message {
                room: "lobby",
                from: "ada",
                text: "hello"
            }
            .to_json(),
            r#"{"type":"message","room":"lobby","from":"ada","text":"hello"}"#
        );
    }

    /// Every character that needs escaping, and some that do not, are written as serde_json
    /// writes them, so the result parses back to the same string.
    #[test]
    fn escapes_strings_as_serde_json_does() {
        let every_control: String = (0u8..0x20).map(char::from).collect();
        let samples = [
            String::new(),
            "plain".to_owned(),
            r#"quote " backslash \ slash / "#.to_owned(),
            every_control,
            "\u{7f} DEL, \u{2028}\u{2029} separators, é 你好 🚂".to_owned(),
            r#"{"type":"join","room":"x","from":"spoof"}"#.to_owned(),
            "</script><b>not markup</b>".to_owned(),
        ];
        for sample in samples {
            let mut ours = String::new();
            push_string(&mut ours, &sample);
            assert_eq!(ours, serde_json::to_string(&sample).unwrap(), "{sample:?}");
            assert_eq!(serde_json::from_str::<String>(&ours).unwrap(), sample);
        }
    }

    /// Hostile text stays inside its field: the object still has exactly its four keys.
    #[test]
    fn text_cannot_add_or_change_fields() {
        let text = "\",\"from\":\"server";
        let json = Event::Message {
            room: "r",
            from: "ada",
            text,
        }
        .to_json();
        let Value::Object(object) = serde_json::from_str(&json).unwrap() else {
            panic!("not an object: {json}");
        };
        assert_eq!(object.len(), 4);
        assert_eq!(object["from"], "ada");
        assert_eq!(object["text"], text);
    }
}
