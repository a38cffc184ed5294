//! [`Session`]: the raw bytes of an upgraded connection, and the [`Transport`] trait over them.
//!
//! The host hands the plugin the client's bytes as a component-model `stream<u8>` and pipes the
//! stream the plugin returns back to the client. A session wraps both ends: reading appends to a
//! caller's buffer, writing sends whole buffers, and dropping the session (or its writer) tells
//! the host to close the connection.

use std::fmt;
use std::future::Future;
use std::mem;
use std::pin::{Pin, pin};

use wit_bindgen::{StreamRead, StreamReader, StreamResult, StreamWriter};

/// How much room a read makes in a buffer that has no spare capacity left.
///
/// Large enough to take a burst of pipelined messages in one read, small enough not to matter
/// per session: the pages are only touched as bytes arrive.
pub const READ_CHUNK: usize = 16 * 1024;

/// The client's side of the connection is gone: nothing more can be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the connection is closed")
    }
}

impl std::error::Error for Closed {}

/// A byte transport: what [`WebSocket`](crate::websocket::WebSocket) and other protocol code
/// run over.
///
/// [`Session`] is the real one; tests use in-memory ones.
pub trait Transport {
    /// Appends received bytes to `buf`, returning how many; 0 means the input has ended.
    fn read(&mut self, buf: &mut Vec<u8>) -> impl Future<Output = usize>;

    /// Sends all of `bytes`, or fails because the other side hung up.
    fn write_all(&mut self, bytes: Vec<u8>) -> impl Future<Output = Result<(), Closed>>;
}

/// An upgraded connection's bytes, in both directions.
///
/// Dropping the session ends it: the host closes the connection once the plugin has dropped its
/// writing half. Split it with [`Session::into_parts`] to read and write concurrently.
#[derive(Debug)]
pub struct Session {
    reader: SessionReader,
    writer: SessionWriter,
}

impl Session {
    /// Wraps the stream the host passed in and the writing end of the one returned to it. Only
    /// a `raw-plugin` (the `raw-upgrade` feature) is ever handed one.
    #[cfg(feature = "raw-upgrade")]
    pub(crate) fn new(input: StreamReader<u8>, output: StreamWriter<u8>) -> Self {
        Self {
            reader: SessionReader {
                input,
                ended: false,
            },
            writer: SessionWriter {
                output,
                closed: false,
            },
        }
    }

    /// Appends the next bytes the client sent to `buf` and returns how many.
    ///
    /// See [`SessionReader::read`].
    pub async fn read(&mut self, buf: &mut Vec<u8>) -> usize {
        self.reader.read(buf).await
    }

    /// Sends all of `bytes` to the client.
    ///
    /// See [`SessionWriter::write_all`].
    pub async fn write_all(&mut self, bytes: impl Into<Vec<u8>>) -> Result<(), Closed> {
        self.writer.write_all(bytes).await
    }

    /// Splits the session into halves that can be used from different tasks.
    pub fn into_parts(self) -> (SessionReader, SessionWriter) {
        (self.reader, self.writer)
    }
}

impl Transport for Session {
    fn read(&mut self, buf: &mut Vec<u8>) -> impl Future<Output = usize> {
        self.reader.read(buf)
    }

    fn write_all(&mut self, bytes: Vec<u8>) -> impl Future<Output = Result<(), Closed>> {
        self.writer.write_all(bytes)
    }
}

/// The reading half of a [`Session`]: the bytes the client sends.
#[derive(Debug)]
pub struct SessionReader {
    input: StreamReader<u8>,
    /// Set once the host reported the end of input; reading a finished stream again would trap.
    ended: bool,
}

impl SessionReader {
    /// Appends the next bytes the client sent to `buf` and returns how many.
    ///
    /// Waits until at least one byte arrives. Returns 0 once the client has closed its side
    /// (end of input), and on every call after that. Reads into `buf`'s spare capacity, first
    /// reserving [`READ_CHUNK`] bytes if there is none.
    ///
    /// Cancel-safe: if the returned future is dropped before it completes, `buf` keeps its
    /// contents and any bytes that arrived in the meantime.
    pub async fn read(&mut self, buf: &mut Vec<u8>) -> usize {
        while !self.ended {
            if buf.len() == buf.capacity() {
                buf.reserve(READ_CHUNK);
            }
            match read_into(&mut self.input, buf).await {
                StreamResult::Complete(0) | StreamResult::Cancelled => continue,
                StreamResult::Complete(read) => return read,
                StreamResult::Dropped => self.ended = true,
            }
        }
        0
    }
}

/// One stream read into `buf`'s spare capacity.
async fn read_into(input: &mut StreamReader<u8>, buf: &mut Vec<u8>) -> StreamResult {
    // The stream read takes ownership of the buffer while it runs; the guard gives it back
    // even if this future is dropped half-way.
    let read = pin!(input.read(mem::take(buf)));
    let mut guard = ReadGuard {
        read,
        buf,
        finished: false,
    };
    let (result, filled) = guard.read.as_mut().await;
    guard.finished = true;
    *guard.buf = filled;
    result
}

/// Returns the caller's buffer from an in-flight read that is being dropped.
struct ReadGuard<'g, 's> {
    read: Pin<&'g mut StreamRead<'s, u8>>,
    buf: &'g mut Vec<u8>,
    /// Set once the read completed and gave the buffer back itself.
    finished: bool,
}

impl Drop for ReadGuard<'_, '_> {
    fn drop(&mut self) {
        if !self.finished {
            // Cancelling reports the bytes that arrived before the cancel took effect.
            let (_, filled) = self.read.as_mut().cancel();
            *self.buf = filled;
        }
    }
}

/// The writing half of a [`Session`]: the bytes sent to the client.
///
/// Dropping it ends the session: the host closes the connection.
#[derive(Debug)]
pub struct SessionWriter {
    output: StreamWriter<u8>,
    /// Set once the host stopped reading; writing to a finished stream again would trap.
    closed: bool,
}

impl SessionWriter {
    /// Sends all of `bytes` to the client, waiting until the host has taken them.
    ///
    /// Fails with [`Closed`] once the connection is gone. Not cancel-safe: if the future is
    /// dropped half-way, an unknown prefix of `bytes` has been sent.
    pub async fn write_all(&mut self, bytes: impl Into<Vec<u8>>) -> Result<(), Closed> {
        let bytes = bytes.into();
        if self.closed {
            return Err(Closed);
        }
        // An empty write would wait for the reader without sending anything.
        if bytes.is_empty() {
            return Ok(());
        }
        let unsent = self.output.write_all(bytes).await;
        if unsent.is_empty() {
            Ok(())
        } else {
            self.closed = true;
            Err(Closed)
        }
    }
}
