//! What a request asks for, read from its path and query, and the rules a room and a name must
//! follow. Everything here is pure, so it is tested on the build machine.
//!
//! The plugin cannot see its route, so it reads paths as `/<mount>` (the page) and
//! `/<mount>/<room>` (a room), where the mount is one segment: `/chat`, the default route of
//! `chat.wasm`, or any one-segment route a sidecar sets.

use std::fmt;

/// The longest room name, in bytes (rooms are ASCII).
pub(crate) const MAX_ROOM: usize = 32;
/// The longest member name, in characters (Unicode scalar values).
pub(crate) const MAX_NAME_CHARS: usize = 32;
/// The name messages posted over HTTP come from; no member may take it.
pub(crate) const SERVER_NAME: &str = "server";

/// What a request's path points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target<'a> {
    /// `/<mount>` or `/<mount>/`: the chat page.
    Page,
    /// `/<mount>/<room>` (a trailing slash is allowed): a room, not yet checked.
    Room(&'a str),
    /// Anything deeper.
    Unknown,
}

/// Reads `path` (without its query) as the chat's URL layout.
pub(crate) fn target(path: &str) -> Target<'_> {
    let path = path.strip_suffix('/').unwrap_or(path);
    let mut segments = path.split('/').skip(1);
    match (segments.next(), segments.next(), segments.next()) {
        (Some(_), None, None) => Target::Page,
        (Some(_), Some(room), None) => Target::Room(room),
        _ => Target::Unknown,
    }
}

/// Why a room or name is refused; the text is the body of the `400`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InputError {
    /// The room is empty, too long, or has characters outside `[A-Za-z0-9_-]`.
    BadRoom,
    /// The query has no `name`, or it is empty.
    MissingName,
    /// The name's percent-encoding is malformed, or the bytes it encodes are not UTF-8.
    BadEncoding,
    /// More than [`MAX_NAME_CHARS`] characters.
    NameTooLong,
    /// The name has a control character (a line break, a tab, U+0000…).
    ControlCharacter,
    /// The name is only white space.
    BlankName,
    /// The name is [`SERVER_NAME`], in any case.
    ReservedName,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadRoom => write!(
                f,
                "the room must be 1 to {MAX_ROOM} characters of A-Z, a-z, 0-9, '_' and '-'"
            ),
            Self::MissingName => write!(
                f,
                "add your name to the address: ?name=<1 to {MAX_NAME_CHARS} characters>"
            ),
            Self::BadEncoding => {
                f.write_str("the name is not valid percent-encoded UTF-8 (use encodeURIComponent)")
            }
            Self::NameTooLong => write!(f, "the name is longer than {MAX_NAME_CHARS} characters"),
            Self::ControlCharacter => f.write_str("the name must not contain control characters"),
            Self::BlankName => f.write_str("the name must not be only spaces"),
            Self::ReservedName => write!(
                f,
                "the name '{SERVER_NAME}' is reserved for messages posted over HTTP"
            ),
        }
    }
}

/// Checks a room name: 1 to [`MAX_ROOM`] of `[A-Za-z0-9_-]`. (The host has already decoded
/// percent-escapes of these characters in the path; any other escape is refused here.)
pub(crate) fn room(room: &str) -> Result<&str, InputError> {
    let allowed = |byte: u8| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-';
    if (1..=MAX_ROOM).contains(&room.len()) && room.bytes().all(allowed) {
        Ok(room)
    } else {
        Err(InputError::BadRoom)
    }
}

/// The member name from a query string (`a=1&name=Ada%20L`): the first `name` parameter,
/// decoded as a form would encode it (`%XX` escapes of UTF-8, `+` for a space), then checked:
/// 1 to [`MAX_NAME_CHARS`] characters, no control characters, not only white space, and not
/// [`SERVER_NAME`] in any case.
pub(crate) fn name(query: Option<&str>) -> Result<String, InputError> {
    let value = query
        .unwrap_or("")
        .split('&')
        .find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key).as_deref() == Ok("name")).then_some(value)
        })
        .ok_or(InputError::MissingName)?;
    let name = decode(value)?;
    if name.is_empty() {
        Err(InputError::MissingName)
    } else if name.chars().count() > MAX_NAME_CHARS {
        Err(InputError::NameTooLong)
    } else if name.chars().any(char::is_control) {
        Err(InputError::ControlCharacter)
    } else if name.trim().is_empty() {
        Err(InputError::BlankName)
    } else if name.trim().eq_ignore_ascii_case(SERVER_NAME) {
        Err(InputError::ReservedName)
    } else {
        Ok(name)
    }
}

/// Decodes one query component: `+` is a space and `%XX` a byte; the bytes must be UTF-8.
fn decode(component: &str) -> Result<String, InputError> {
    let mut bytes = Vec::with_capacity(component.len());
    let mut rest = component.bytes();
    while let Some(byte) = rest.next() {
        bytes.push(match byte {
            b'+' => b' ',
            b'%' => {
                let high = rest.next().and_then(hex_value);
                let low = rest.next().and_then(hex_value);
                match (high, low) {
                    (Some(high), Some(low)) => high << 4 | low,
                    _ => return Err(InputError::BadEncoding),
                }
            }
            byte => byte,
        });
    }
    String::from_utf8(bytes).map_err(|_| InputError::BadEncoding)
}

/// The value of one hex digit.
fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_path_layout() {
        assert_eq!(target("/chat"), Target::Page);
        assert_eq!(target("/chat/"), Target::Page);
        assert_eq!(target("/talk"), Target::Page);
        assert_eq!(target("/chat/lobby"), Target::Room("lobby"));
        assert_eq!(target("/chat/lobby/"), Target::Room("lobby"));
        assert_eq!(target("/chat/a/b"), Target::Unknown);
        assert_eq!(target("/chat/lobby//"), Target::Unknown);
    }

    #[test]
    fn rooms_are_short_and_plain() {
        for good in ["a", "lobby", "Room_42-b", &"x".repeat(MAX_ROOM)] {
            assert_eq!(room(good), Ok(good));
        }
        for bad in [
            "",
            &"x".repeat(MAX_ROOM + 1),
            "with space",
            "dot.ted",
            "%2F",
            "café",
            "a\0b",
        ] {
            assert_eq!(room(bad), Err(InputError::BadRoom), "{bad:?}");
        }
    }

    #[test]
    fn finds_and_decodes_the_name() {
        assert_eq!(name(Some("name=ada")).unwrap(), "ada");
        assert_eq!(name(Some("x=1&name=Ada+L&name=other")).unwrap(), "Ada L");
        assert_eq!(
            name(Some("n%61me=Ada%20L%C3%BCtzen")).unwrap(),
            "Ada Lützen"
        );
        assert_eq!(name(Some("name=%F0%9F%9A%82")).unwrap(), "🚂");
        // Literal non-ASCII in the query (sent by some clients unencoded) is taken as it is.
        assert_eq!(name(Some("name=José")).unwrap(), "José");
        assert_eq!(name(Some("name=a%3Db%26c")).unwrap(), "a=b&c");
    }

    #[test]
    fn names_are_bounded_in_characters_not_bytes() {
        assert_eq!(
            name(Some(&format!("name={}", "é".repeat(32))))
                .unwrap()
                .chars()
                .count(),
            32
        );
        assert_eq!(
            name(Some(&format!("name={}", "é".repeat(33)))),
            Err(InputError::NameTooLong)
        );
    }

    #[test]
    fn refuses_bad_names() {
        let cases = [
            (None, InputError::MissingName),
            (Some(""), InputError::MissingName),
            (Some("nom=ada"), InputError::MissingName),
            (Some("name"), InputError::MissingName),
            (Some("name="), InputError::MissingName),
            (Some("name=%"), InputError::BadEncoding),
            (Some("name=%4"), InputError::BadEncoding),
            (Some("name=%zz"), InputError::BadEncoding),
            (Some("name=%+1"), InputError::BadEncoding),
            (Some("name=%FF"), InputError::BadEncoding),
            (Some("name=%C3"), InputError::BadEncoding),
            (Some("name=a%0Ab"), InputError::ControlCharacter),
            (Some("name=a%00"), InputError::ControlCharacter),
            (Some("name=%C2%85"), InputError::ControlCharacter),
            (Some("name=+++"), InputError::BlankName),
            (Some("name=server"), InputError::ReservedName),
            (Some("name=SeRvEr"), InputError::ReservedName),
            (Some("name=+server+"), InputError::ReservedName),
        ];
        for (query, error) in cases {
            assert_eq!(name(query), Err(error), "{query:?}");
        }
        // Near misses are ordinary names.
        assert_eq!(name(Some("name=servers")).unwrap(), "servers");
    }

    /// Every refusal says what to do in words a person can act on.
    #[test]
    fn errors_explain_themselves() {
        assert!(InputError::BadRoom.to_string().contains("1 to 32"));
        assert!(InputError::MissingName.to_string().contains("?name="));
        assert!(InputError::ReservedName.to_string().contains("'server'"));
    }
}
