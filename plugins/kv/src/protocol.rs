//! The kv/1 line protocol: complete lines in, replies out.

use crate::store::Store;

/// The longest line accepted, terminator excluded; a longer one ends the session.
pub(crate) const MAX_LINE: usize = 8 * 1024;

/// Whether the session goes on after the replies are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Wait for more input.
    Continue,
    /// Send the replies, then close the connection.
    Close,
}

/// Executes every complete line at the front of `input`, removing them, and appends one reply
/// line per command to `replies`. An incomplete last line stays in `input` for the next read.
pub(crate) fn process(store: &mut Store, input: &mut Vec<u8>, replies: &mut Vec<u8>) -> Flow {
    let mut consumed = 0;
    let mut flow = Flow::Continue;
    while let Some(length) = input[consumed..].iter().position(|&byte| byte == b'\n') {
        let line = &input[consumed..consumed + length];
        consumed += length + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        flow = if line.len() > MAX_LINE {
            too_long(replies)
        } else {
            execute(store, line, replies)
        };
        if flow == Flow::Close {
            break;
        }
    }
    input.drain(..consumed);
    if flow == Flow::Continue && input.len() > MAX_LINE {
        flow = too_long(replies);
    }
    flow
}

fn too_long(replies: &mut Vec<u8>) -> Flow {
    replies.extend_from_slice(b"ERR line too long\n");
    Flow::Close
}

/// The reply to a known command with the wrong arguments.
const WRONG_ARGUMENTS: &[u8] = b"ERR wrong number of arguments";

/// Executes one command line.
fn execute(store: &mut Store, line: &[u8], replies: &mut Vec<u8>) -> Flow {
    let (command, arguments) = split_word(line);
    match (command.to_ascii_uppercase().as_slice(), arguments) {
        (b"SET", Some(arguments)) => match split_word(arguments) {
            (key, Some(value)) if !key.is_empty() => match store.set(key, value) {
                Ok(()) => reply(replies, &[b"OK"]),
                Err(_) => reply(replies, &[b"ERR too many keys"]),
            },
            _ => reply(replies, &[WRONG_ARGUMENTS]),
        },
        (b"GET", Some(key)) if is_word(key) => match store.get(key) {
            Some(value) => reply(replies, &[b"VALUE ", value]),
            None => reply(replies, &[b"NIL"]),
        },
        (b"DEL", Some(key)) if is_word(key) => match store.delete(key) {
            true => reply(replies, &[b"DELETED 1"]),
            false => reply(replies, &[b"DELETED 0"]),
        },
        (b"KEYS", None) => {
            let mut parts: Vec<&[u8]> = vec![b"KEYS"];
            for key in store.keys() {
                parts.extend([&b" "[..], key]);
            }
            reply(replies, &parts);
        }
        (b"QUIT", None) => {
            reply(replies, &[b"BYE"]);
            return Flow::Close;
        }
        (b"SET" | b"GET" | b"DEL" | b"KEYS" | b"QUIT", _) => reply(replies, &[WRONG_ARGUMENTS]),
        _ => reply(replies, &[b"ERR unknown command"]),
    }
    Flow::Continue
}

/// Appends one reply line made of `parts`.
fn reply(replies: &mut Vec<u8>, parts: &[&[u8]]) {
    for part in parts {
        replies.extend_from_slice(part);
    }
    replies.push(b'\n');
}

/// Splits off the first space-separated word; the rest is `None` if there was no space.
fn split_word(text: &[u8]) -> (&[u8], Option<&[u8]>) {
    match text.iter().position(|&byte| byte == b' ') {
        Some(space) => (&text[..space], Some(&text[space + 1..])),
        None => (text, None),
    }
}

/// A non-empty argument without spaces: a key.
fn is_word(text: &[u8]) -> bool {
    !text.is_empty() && !text.contains(&b' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `input` through a fresh store, returning the replies and what happens next.
    fn run(input: &str) -> (String, Flow, Vec<u8>) {
        let mut store = Store::default();
        let mut input = input.as_bytes().to_vec();
        let mut replies = Vec::new();
        let flow = process(&mut store, &mut input, &mut replies);
        (String::from_utf8(replies).unwrap(), flow, input)
    }

    /// The commands from the protocol description, pipelined, CRLF or LF.
    #[test]
    fn answers_each_command() {
        let (replies, flow, rest) = run(
            "SET b two words\r\nSET a 1\nGET b\nGET zz\nKEYS\nDEL a\nDEL a\nset a 2\nKEYS\nQUIT\nGET a\n",
        );
        assert_eq!(
            replies,
            "OK\nOK\nVALUE two words\nNIL\nKEYS a b\nDELETED 1\nDELETED 0\nOK\nKEYS a b\nBYE\n"
        );
        assert_eq!(flow, Flow::Close);
        assert_eq!(rest, b"GET a\n", "nothing after QUIT runs");
    }

    /// Bad input gets an error line and the session goes on.
    #[test]
    fn reports_errors() {
        let (replies, flow, _) = run("PING\n\nGET\nGET a b\nSET a\nKEYS x\n");
        assert_eq!(
            replies,
            "ERR unknown command\nERR unknown command\nERR wrong number of arguments\n\
             ERR wrong number of arguments\nERR wrong number of arguments\n\
             ERR wrong number of arguments\n"
        );
        assert_eq!(flow, Flow::Continue);
    }

    /// A partial line waits for the rest; an empty store lists no keys.
    #[test]
    fn keeps_partial_lines() {
        let (replies, flow, rest) = run("KEYS\nGET pa");
        assert_eq!(
            (replies.as_str(), flow, rest.as_slice()),
            ("KEYS\n", Flow::Continue, &b"GET pa"[..])
        );
    }

    /// Lines past the limit end the session, whether complete or still arriving.
    #[test]
    fn refuses_long_lines() {
        let long = "x".repeat(MAX_LINE + 1);
        assert_eq!(run(&format!("{long}\n")).0, "ERR line too long\n");
        let (replies, flow, _) = run(&long);
        assert_eq!(
            (replies.as_str(), flow),
            ("ERR line too long\n", Flow::Close)
        );
        assert_eq!(run(&"x".repeat(MAX_LINE)).1, Flow::Continue);
    }
}
