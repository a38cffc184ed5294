//! The in-memory byte stream tungstenite runs over, so it never does I/O itself.
//!
//! Its `Read` hands out bytes already received and says `WouldBlock` when there are none; its
//! `Write` appends to an outbound buffer. The WebSocket moves bytes between these buffers and
//! the session asynchronously.

use std::io::{self, Read, Write};

/// Bytes received but not yet parsed, and bytes framed but not yet sent.
#[derive(Debug, Default)]
pub(crate) struct Buffers {
    /// Received bytes; those before `consumed` have been handed to tungstenite.
    pub(crate) inbound: Vec<u8>,
    consumed: usize,
    /// Set once the transport reported the end of input: reads then return end-of-file, which
    /// tungstenite turns into the end of the connection.
    pub(crate) input_ended: bool,
    /// Framed bytes waiting to be sent.
    pub(crate) outbound: Vec<u8>,
}

impl Read for Buffers {
    fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        let pending = &self.inbound[self.consumed..];
        if pending.is_empty() {
            // Reuse the allocation for the next read from the transport.
            self.inbound.clear();
            self.consumed = 0;
            return if self.input_ended {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let len = pending.len().min(dst.len());
        dst[..len].copy_from_slice(&pending[..len]);
        self.consumed += len;
        Ok(len)
    }
}

impl Write for Buffers {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.outbound.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    /// Nothing to do: sending is the WebSocket's job, done asynchronously.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads hand out buffered bytes, then block, then report end-of-file once input ended.
    #[test]
    fn read_blocks_until_input_ends() {
        let mut buffers = Buffers {
            inbound: b"abc".to_vec(),
            ..Buffers::default()
        };
        let mut dst = [0; 2];
        assert_eq!(buffers.read(&mut dst).unwrap(), 2);
        assert_eq!(buffers.read(&mut dst).unwrap(), 1);
        let blocked = buffers.read(&mut dst).unwrap_err();
        assert_eq!(blocked.kind(), io::ErrorKind::WouldBlock);
        assert!(buffers.inbound.is_empty());
        buffers.input_ended = true;
        assert_eq!(buffers.read(&mut dst).unwrap(), 0);
    }
}
