//! A plugin's stdout and stderr, turned into host log lines tagged with the plugin's name.
//!
//! Guests write bytes, not lines: output is buffered until a newline (or until a line grows too
//! long) so each log record holds one whole line. What is left without a newline is logged when
//! the instance ends: each stream's [`LineWriter`] lives in the store's resource table and is
//! dropped with the store, inside the request's span. (Rust's `print!` also buffers in the
//! guest, in std's own line-buffered stdout, which the host cannot reach: the SDK flushes it
//! when `handle` returns and when a session ends.)
//!
//! A plugin's lines are rate-limited across all its instances ([`GUEST_LOG_LINES_PER_SEC`],
//! burst [`GUEST_LOG_BURST`]): one request cannot flood the host's log. Lines over the limit are
//! dropped and counted, and the count is logged with the next line that passes or when an
//! instance ends.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use crate::config::{GUEST_LOG_BURST, GUEST_LOG_LINES_PER_SEC};
use crate::ratelimit::{LogRateLimit, Verdict};

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
    /// The plugin's allowance of lines, shared by all its instances and both streams.
    limit: Arc<LogRateLimit>,
}

impl GuestLog {
    pub(crate) fn new(plugin: Arc<str>, stream: GuestStream, limit: Arc<LogRateLimit>) -> Self {
        Self {
            plugin,
            stream,
            limit,
        }
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
        match self.log.limit.check() {
            Verdict::Log { suppressed } => {
                self.report_dropped(suppressed);
                self.log_line();
            }
            Verdict::Suppress => {}
        }
        self.line.clear();
    }

    /// Says how many lines the rate limit dropped, if any.
    fn report_dropped(&self, dropped: u64) {
        if dropped > 0 {
            tracing::warn!(
                plugin = %self.log.plugin,
                dropped,
                "plugin output: {dropped} lines dropped (limit: {} lines a second, burst {})",
                GUEST_LOG_LINES_PER_SEC,
                GUEST_LOG_BURST,
            );
        }
    }

    fn log_line(&self) {
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
    }

    fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            // `line` is emitted as soon as it is full, so it always has room here.
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
    /// Runs when the store that holds this stream is dropped, i.e. when the instance ends.
    fn drop(&mut self) {
        // A guest that ends without a final newline still gets its last words logged.
        if !self.line.is_empty() {
            self.emit();
        }
        // A flood that ended with this instance is reported now, not at the plugin's next line.
        self.report_dropped(self.log.limit.take_suppressed());
    }
}
