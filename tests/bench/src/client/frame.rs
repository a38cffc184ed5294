//! The few bits of WebSocket framing (RFC 6455) the load client needs. Like the uWebSockets
//! load tester, the client frames its message once, masked, and sends the same bytes every
//! time; it only parses what servers send back. This keeps the client's own cost per message
//! to two system calls, so the load measures the servers, not the client.

use anyhow::bail;
use tokio::io::{AsyncBufRead, AsyncReadExt as _};

/// Opcodes used here.
const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;
/// The FIN bit of the first header byte.
const FIN: u8 = 0x80;
/// The mask bit of the second header byte.
const MASKED: u8 = 0x80;
/// Any fixed key will do: masking is there to foil proxies, not for secrecy.
const MASK_KEY: [u8; 4] = [0x5a, 0x17, 0xc3, 0x9e];
/// The status code of a normal close.
const NORMAL_CLOSURE: u16 = 1000;

/// A binary message framed as a client must send it (masked).
pub(super) fn binary(payload: &[u8]) -> Vec<u8> {
    client_frame(BINARY, payload)
}

/// A text message framed as a client must send it (masked).
pub(super) fn text(payload: &str) -> Vec<u8> {
    client_frame(TEXT, payload.as_bytes())
}

/// A close frame with status 1000.
pub(super) fn close() -> Vec<u8> {
    client_frame(CLOSE, &NORMAL_CLOSURE.to_be_bytes())
}

fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 14);
    frame.push(FIN | opcode);
    match payload.len() {
        len @ 0..=125 => frame.push(MASKED | len as u8),
        len @ 126..=0xFFFF => {
            frame.push(MASKED | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(MASKED | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&MASK_KEY);
    frame.extend(
        payload
            .iter()
            .zip(MASK_KEY.iter().cycle())
            .map(|(byte, key)| byte ^ key),
    );
    frame
}

/// Reads one whole data message (joining fragments) into `message`, skipping pings and
/// pongs. Fails on a close frame, a masked server frame or a message larger than `max`.
pub(super) async fn read_message<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    message: &mut Vec<u8>,
    max: usize,
) -> anyhow::Result<()> {
    message.clear();
    loop {
        let mut head = [0u8; 2];
        reader.read_exact(&mut head).await?;
        let fin = head[0] & FIN != 0;
        let opcode = head[0] & 0x0F;
        if head[1] & MASKED != 0 {
            bail!("the server masked a frame");
        }
        let len = match head[1] & 0x7F {
            126 => u64::from(reader.read_u16().await?),
            127 => reader.read_u64().await?,
            len => u64::from(len),
        };
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if message.len().saturating_add(len) > max {
            bail!("a message of over {max} bytes");
        }
        match opcode {
            TEXT | BINARY | CONTINUATION => {
                let start = message.len();
                message.resize(start + len, 0);
                reader.read_exact(&mut message[start..]).await?;
                if fin {
                    return Ok(());
                }
            }
            PING | PONG => {
                // Control frames are at most 125 bytes; no server here pings mid-echo.
                let mut skipped = vec![0u8; len];
                reader.read_exact(&mut skipped).await?;
            }
            CLOSE => {
                // Control frames are at most 125 bytes: a code, then a reason.
                let mut payload = vec![0u8; len.min(125)];
                reader.read_exact(&mut payload).await?;
                let code = payload
                    .get(..2)
                    .map(|code| u16::from_be_bytes([code[0], code[1]]));
                let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or_default());
                match code {
                    Some(code) => bail!("the server closed the session ({code} {reason:?})"),
                    None => bail!("the server closed the session"),
                }
            }
            other => bail!("unexpected opcode {other:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a server sends: unmasked, `first` being the FIN bit and opcode.
    fn server_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![first];
        match payload.len() {
            len @ 0..=125 => frame.push(len as u8),
            len => {
                frame.push(126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
            }
        }
        frame.extend_from_slice(payload);
        frame
    }

    #[test]
    fn frames_lengths_in_all_three_forms() {
        assert_eq!(binary(&[1; 20])[..2], [0x82, 0x80 | 20]);
        assert_eq!(binary(&[1; 1024])[..4], [0x82, 0x80 | 126, 0x04, 0x00]);
        let big = binary(&[1; 70_000]);
        assert_eq!(big[1], 0x80 | 127);
        assert_eq!(big.len(), 2 + 8 + 4 + 70_000);
        // Unmasking gives the payload back.
        let small = binary(b"hello");
        let unmasked: Vec<u8> = small[6..]
            .iter()
            .zip(MASK_KEY.iter().cycle())
            .map(|(byte, key)| byte ^ key)
            .collect();
        assert_eq!(unmasked, b"hello");
        assert_eq!(text("hi")[..2], [0x81, 0x80 | 2]);
    }

    #[tokio::test]
    async fn reads_fragmented_messages_and_skips_pings() {
        let mut wire = server_frame(BINARY, b"hel");
        wire.extend(server_frame(FIN | PING, b"p"));
        wire.extend(server_frame(FIN | CONTINUATION, b"lo"));
        wire.extend(server_frame(FIN | BINARY, &[7; 300]));
        let mut reader = &wire[..];
        let mut message = Vec::new();
        read_message(&mut reader, &mut message, 1 << 20)
            .await
            .unwrap();
        assert_eq!(message, b"hello");
        read_message(&mut reader, &mut message, 1 << 20)
            .await
            .unwrap();
        assert_eq!(message, vec![7; 300]);
        let mut closing = &server_frame(FIN | CLOSE, &[0x03, 0xE8])[..];
        assert!(
            read_message(&mut closing, &mut message, 1 << 20)
                .await
                .is_err()
        );
    }
}
