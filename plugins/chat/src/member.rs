//! A member: who is connected and to which room, kept in the connection's attachment.
//!
//! The attachment is the only state that outlives an instance (an idle connection hibernates
//! and its next event runs on a fresh instance), and it also outlives a version of the plugin
//! (a hot reload's new version gets the old attachments). So the format starts with a version
//! byte, and a reader refuses what it does not know instead of guessing.
//!
//! Format 1: `1`, the room, `\n`, the name. The room cannot contain `\n` (see
//! [`input::room`](crate::input::room)), so the first `\n` ends it; the name is everything
//! after it. At most 1 + 32 + 1 + 128 bytes, far below the host's attachment limit.

/// The first byte of the current format.
const FORMAT: u8 = 1;

/// Who a connection belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    /// The room joined (already checked).
    pub(crate) room: String,
    /// The member's name (already checked).
    pub(crate) name: String,
}

impl Member {
    /// The attachment that stands for this member.
    pub(crate) fn to_attachment(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(2 + self.room.len() + self.name.len());
        bytes.push(FORMAT);
        bytes.extend_from_slice(self.room.as_bytes());
        bytes.push(b'\n');
        bytes.extend_from_slice(self.name.as_bytes());
        bytes
    }

    /// The member an attachment stands for; `None` if it is not one this version wrote.
    pub(crate) fn from_attachment(bytes: &[u8]) -> Option<Self> {
        let (&format, rest) = bytes.split_first()?;
        if format != FORMAT {
            return None;
        }
        let text = std::str::from_utf8(rest).ok()?;
        let (room, name) = text.split_once('\n')?;
        Some(Self {
            room: room.to_owned(),
            name: name.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_attachment() {
        let member = Member {
            room: "lobby".to_owned(),
            name: "Ada Lützen 🚂".to_owned(),
        };
        let bytes = member.to_attachment();
        assert_eq!(bytes.first(), Some(&FORMAT));
        assert_eq!(Member::from_attachment(&bytes), Some(member));
    }

    #[test]
    fn refuses_what_it_did_not_write() {
        for bytes in [
            &b""[..],
            b"\x01",
            b"\x01lobby",
            b"\x02lobby\nada",
            b"lobby\nada",
            b"\x01lobby\n\xff",
        ] {
            assert_eq!(Member::from_attachment(bytes), None, "{bytes:?}");
        }
    }
}
