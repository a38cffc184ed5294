//! How a topic is named at the broker, and the envelope a message crosses it in.
//!
//! A channel is `<prefix>:<plugin>:<topic>`, e.g. `switchyard:chat:room-1`. The prefix has no
//! `:` (checked when the host starts), and a plugin name's `%` and `:` are written `%25` and
//! `%3A`, so the first two `:` always end the prefix and the plugin name and the topic is the
//! rest, whatever it holds: no two (plugin, topic) pairs, of this deployment or another one,
//! share a channel.
//!
//! A message is `SY` and version byte `1`, the publishing host's 16-byte id (so a host skips its
//! own messages when the broker hands them back: it delivered them to its local subscribers when
//! they were published), then the WebSocket frame that host made for the message (unmasked,
//! final, text or binary: the kind is its opcode). The receiving host checks the frame and
//! queues the very bytes to its subscribers, without framing it again. Anything else on a
//! channel is refused with the reason, never trusted: whoever can publish to the broker can
//! put any bytes there.

use std::borrow::Cow;
use std::io::{Cursor, Write as _};

use bytes::Bytes;
use redis::{RedisWrite, ToRedisArgs};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::config::pubsub::PubSubPrefix;
use crate::topics::WireFrame;

/// A host's id in the messages it publishes, random per process start.
pub(super) type HostId = [u8; 16];

/// What every message starts with: `S`, `Y`, and the format's version.
const MAGIC: [u8; 3] = *b"SY\x01";
/// Bytes before the frame: the magic and the host id.
const ENVELOPE_HEAD: usize = MAGIC.len() + 16;
/// Largest payload accepted from the broker: the largest message any host may publish (the top
/// of the `max-message-bytes` range).
pub(super) const MAX_REMOTE_PAYLOAD_BYTES: u64 = 64 << 20;

/// Channel names of one deployment.
#[derive(Debug)]
pub(super) struct ChannelNames {
    /// `<prefix>:`.
    head: String,
}

impl ChannelNames {
    pub(super) fn new(prefix: &PubSubPrefix) -> Self {
        Self {
            head: format!("{}:", prefix.as_str()),
        }
    }

    /// The channel of `topic` of plugin `scope`.
    pub(super) fn channel(&self, scope: &str, topic: &str) -> Vec<u8> {
        let mut name = Vec::with_capacity(self.head.len() + scope.len() + topic.len() + 1);
        name.extend_from_slice(self.head.as_bytes());
        for byte in scope.bytes() {
            match byte {
                b'%' => name.extend_from_slice(b"%25"),
                b':' => name.extend_from_slice(b"%3A"),
                other => name.push(other),
            }
        }
        name.push(b':');
        name.extend_from_slice(topic.as_bytes());
        name
    }

    /// The plugin and topic a channel of this deployment names; `None` for any other name.
    pub(super) fn parse<'a>(&self, channel: &'a [u8]) -> Option<(Cow<'a, str>, &'a str)> {
        let rest = channel.strip_prefix(self.head.as_bytes())?;
        let at = rest.iter().position(|&byte| byte == b':')?;
        let (scope, topic) = (rest.get(..at)?, rest.get(at + 1..)?);
        let scope = std::str::from_utf8(scope).ok()?;
        let topic = std::str::from_utf8(topic).ok()?;
        let scope = if scope.contains('%') {
            Cow::Owned(
                scope
                    .replace("%3A", ":")
                    .replace("%3a", ":")
                    .replace("%25", "%"),
            )
        } else {
            Cow::Borrowed(scope)
        };
        Some((scope, topic))
    }
}

/// A frame in its envelope, as published to the broker: written straight into the command's
/// buffer, with no envelope of its own in between.
pub(super) struct Sealed<'a> {
    /// The publishing host.
    pub(super) host: &'a HostId,
    /// The frame as this host's subscribers got it.
    pub(super) frame: &'a WireFrame,
}

impl ToRedisArgs for Sealed<'_> {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + RedisWrite,
    {
        let mut arg = out.writer_for_next_arg();
        // The writer appends to the command's buffer in memory, which cannot fail.
        let _ = arg.write_all(&MAGIC);
        let _ = arg.write_all(self.host);
        for part in self.frame.parts() {
            let _ = arg.write_all(part);
        }
    }
}

/// `frame` in its envelope, as one buffer.
#[cfg(test)]
pub(super) fn seal(host: &HostId, frame: &WireFrame) -> Vec<u8> {
    let sealed = Sealed { host, frame }.to_redis_args();
    sealed.into_iter().next().unwrap_or_default()
}

/// What a message from the broker holds.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Opened {
    /// This host published it; its local subscribers have it already.
    Own,
    /// Another host's message: the frame to queue to the local subscribers.
    Frame(WireFrame),
}

/// Why a message from the broker was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum Refused {
    /// It does not start like a Switchyard message of this version.
    #[error("not a Switchyard message (no `SY` version 1 envelope)")]
    NotSwitchyard,
    /// The frame's header does not parse, or is cut short.
    #[error("the frame's header is malformed or cut short")]
    BadHeader,
    /// Not one final, unmasked, unextended text or binary frame.
    #[error("not a final, unmasked text or binary frame")]
    NotADataFrame,
    /// The header's length is not the number of bytes that follow it.
    #[error("the frame's length does not match its payload")]
    LengthMismatch,
    /// Larger than any host may publish.
    #[error("the payload is larger than {MAX_REMOTE_PAYLOAD_BYTES} bytes")]
    TooLarge,
    /// A text frame whose payload is not UTF-8.
    #[error("a text frame that is not UTF-8")]
    NotUtf8,
}

/// Opens a message from the broker, checking everything about it.
pub(super) fn open(host: &HostId, message: &[u8]) -> Result<Opened, Refused> {
    let magic = message.get(..MAGIC.len()).ok_or(Refused::NotSwitchyard)?;
    if magic != MAGIC {
        return Err(Refused::NotSwitchyard);
    }
    let sender = message
        .get(MAGIC.len()..ENVELOPE_HEAD)
        .ok_or(Refused::NotSwitchyard)?;
    if sender == host {
        return Ok(Opened::Own);
    }
    let wire = message.get(ENVELOPE_HEAD..).ok_or(Refused::NotSwitchyard)?;
    let mut cursor = Cursor::new(wire);
    let (header, length) = match FrameHeader::parse(&mut cursor) {
        Ok(Some(parsed)) => parsed,
        Ok(None) | Err(_) => return Err(Refused::BadHeader),
    };
    let text = match header.opcode {
        OpCode::Data(Data::Text) => true,
        OpCode::Data(Data::Binary) => false,
        _ => return Err(Refused::NotADataFrame),
    };
    if !header.is_final || header.rsv1 || header.rsv2 || header.rsv3 || header.mask.is_some() {
        return Err(Refused::NotADataFrame);
    }
    if length > MAX_REMOTE_PAYLOAD_BYTES {
        return Err(Refused::TooLarge);
    }
    let head_len = usize::try_from(cursor.position()).map_err(|_| Refused::BadHeader)?;
    let payload = wire.get(head_len..).ok_or(Refused::BadHeader)?;
    if payload.len() as u64 != length {
        return Err(Refused::LengthMismatch);
    }
    if text && std::str::from_utf8(payload).is_err() {
        return Err(Refused::NotUtf8);
    }
    // One copy into one buffer, shared by every local subscriber's outbox.
    Ok(Opened::Frame(WireFrame::from(Bytes::copy_from_slice(wire))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::bindings::Message;
    use crate::session::managed::frames::data_frame;

    const US: HostId = [1; 16];
    const THEM: HostId = [2; 16];

    fn names() -> ChannelNames {
        ChannelNames::new(&"switchyard".parse().unwrap())
    }

    #[test]
    fn channels_name_plugin_and_topic_unambiguously() {
        let names = names();
        assert_eq!(names.channel("chat", "room-1"), b"switchyard:chat:room-1");
        assert_eq!(names.channel("a:b", "c"), b"switchyard:a%3Ab:c");
        assert_ne!(names.channel("a:b", "c"), names.channel("a", "b:c"));
        for (scope, topic) in [("chat", "room:1"), ("a:b%", "c:d"), ("é", ""), ("%3A", "x")] {
            let channel = names.channel(scope, topic);
            let (parsed_scope, parsed_topic) = names.parse(&channel).unwrap();
            assert_eq!((&*parsed_scope, parsed_topic), (scope, topic));
        }
        assert_eq!(names.parse(b"other:chat:room"), None);
        assert_eq!(names.parse(b"switchyard:no-topic-separator"), None);
        assert_eq!(names.parse(b"switchyard:\xff:room"), None);
    }

    #[test]
    fn another_hosts_frame_is_delivered_as_it_was_framed() {
        for message in [
            Message::Text("hello".into()),
            Message::Binary(vec![7; 70_000]),
        ] {
            let frame = data_frame(message);
            let sealed = seal(&THEM, &frame);
            let Ok(Opened::Frame(opened)) = open(&US, &sealed) else {
                panic!("refused")
            };
            assert_eq!(opened.parts().concat(), frame.parts().concat());
        }
    }

    #[test]
    fn a_hosts_own_message_is_recognised() {
        let sealed = seal(&US, &data_frame(Message::Text("mine".into())));
        assert_eq!(open(&US, &sealed), Ok(Opened::Own));
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        let good = seal(&THEM, &data_frame(Message::Text("hello".into())));
        let with = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut message = good.clone();
            edit(&mut message);
            open(&US, &message)
        };
        assert_eq!(open(&US, b""), Err(Refused::NotSwitchyard));
        assert_eq!(open(&US, b"hello world"), Err(Refused::NotSwitchyard));
        assert_eq!(open(&US, &good[..10]), Err(Refused::NotSwitchyard));
        assert_eq!(
            with(&|m| m.truncate(ENVELOPE_HEAD)),
            Err(Refused::BadHeader)
        );
        assert_eq!(
            with(&|m| m.truncate(m.len() - 1)),
            Err(Refused::LengthMismatch)
        );
        assert_eq!(with(&|m| m.push(b'!')), Err(Refused::LengthMismatch));
        // A close frame, a continuation, a non-final frame, a masked one.
        for first in [0x88, 0x80, 0x01, 0xc1] {
            assert_eq!(
                with(&|m| m[ENVELOPE_HEAD] = first),
                Err(Refused::NotADataFrame)
            );
        }
        assert_eq!(
            with(&|m| m[ENVELOPE_HEAD + 1] |= 0x80),
            Err(Refused::NotADataFrame)
        );
        let last = good.len() - 1;
        assert_eq!(with(&|m| m[last] = 0xff), Err(Refused::NotUtf8));
        let mut huge = good[..ENVELOPE_HEAD].to_vec();
        huge.extend_from_slice(&[0x82, 127, 0, 0, 0, 0x10, 0, 0, 0, 0]);
        assert_eq!(open(&US, &huge), Err(Refused::TooLarge));
    }
}
