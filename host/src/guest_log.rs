//! A plugin's stdout and stderr, turned into host log lines tagged with the plugin's name.
//!
//! Guests write bytes, not lines: output is buffered until a newline (or until a line grows too
//! long) so each log record holds one whole line.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Longest line kept before it is logged in pieces, so a guest printing without newlines cannot
/// grow host memory.
const MAX_LINE_BYTES: usize = 4096;

/// Which of a guest's output streams a [`GuestLog`] stands for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum GuestStream {
    Stdout,
    Stderr,
}

impl GuestStream {
    fn name(self) -> &'static str {
        match self {
            GuestStream::Stdout => "stdout",
            GuestStream::Stderr => "stderr",
        }
    }
}

/// A WASI output stream that writes into the host log.
#[derive(Debug, Clone)]
pub(crate) struct GuestLog {
    plugin: Arc<str>,
    stream: GuestStream,
}

impl GuestLog {
    pub(crate) fn new(plugin: Arc<str>, stream: GuestStream) -> Self {
        Self { plugin, stream }
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.line_writer())
    }

    /// Logging is synchronous and cheap, so WASI 0.2 writes log inline, inside the guest's
    /// call, and so inside the request's log span (the default adapter would log from a
    /// background task instead).
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.line_writer())
    }
}

impl GuestLog {
    fn line_writer(&self) -> LineWriter {
        LineWriter {
            log: self.clone(),
            line: Vec::new(),
        }
    }
}

/// Collects bytes into lines and logs each one.
struct LineWriter {
    log: GuestLog,
    line: Vec<u8>,
}

impl LineWriter {
    fn emit(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        let text = text.trim_end_matches(['\r', '\n']);
        match self.log.stream {
            GuestStream::Stdout => {
                tracing::info!(plugin = %self.log.plugin, stream = %self.log.stream.name(), "{text}")
            }
            GuestStream::Stderr => {
                tracing::warn!(plugin = %self.log.plugin, stream = %self.log.stream.name(), "{text}")
            }
        }
        self.line.clear();
    }

    fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = MAX_LINE_BYTES - self.line.len();
            let take = match bytes.iter().position(|&b| b == b'\n') {
                Some(newline) if newline < room => newline + 1,
                _ => bytes.len().min(room),
            };
            self.line.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.line.ends_with(b"\n") || self.line.len() == MAX_LINE_BYTES {
                self.emit();
            }
        }
    }
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_LINE_BYTES)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.line.is_empty() {
            self.emit();
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        // A guest that ends without a final newline still gets its last words logged.
        if !self.line.is_empty() {
            self.emit();
        }
    }
}
