//! [`WebSocket`]: messages over a [`Transport`], framed by tungstenite without I/O of its own.
//!
//! tungstenite is synchronous, so it runs over in-memory [`Buffers`]: when it needs bytes that
//! have not arrived it says `WouldBlock`, and [`WebSocket::recv`] first sends what is queued,
//! then waits on the transport. Sending only then (or when the queue grows past
//! [`OUTBOUND_FLUSH_THRESHOLD`]) batches the answers to pipelined messages into one write,
//! which is what keeps an echo fast.

use std::io;
use std::mem;

use tungstenite::error::ProtocolError;
use tungstenite::protocol::Role;
use tungstenite::protocol::frame::Frame;

use super::memory::Buffers;
use super::{CloseCode, CloseFrame, Config, Error, Message, Utf8Bytes, default_config};
use crate::session::{Session, Transport};

/// Queued outbound bytes past which [`WebSocket::feed`] sends them without waiting for `recv`.
pub const OUTBOUND_FLUSH_THRESHOLD: usize = 64 * 1024;

/// A server-side WebSocket over an upgraded [`Session`] (or any [`Transport`]).
///
/// Call [`recv`](Self::recv) in a loop; it answers pings and the client's close frame itself.
/// Queue messages with [`feed`](Self::feed) (sent in batches) or [`send`](Self::send) (sent at
/// once). Dropping the WebSocket drops the session, which closes the connection.
///
/// Await each call to completion: a future dropped half-way through a send may have sent only
/// part of a frame, which breaks the connection.
#[derive(Debug)]
pub struct WebSocket<T = Session> {
    /// The framing state machine, over the buffers we move bytes through.
    protocol: tungstenite::WebSocket<Buffers>,
    transport: T,
    /// Set once the connection is over: the close handshake completed, the client went away,
    /// or a protocol error ended it.
    finished: bool,
}

impl<T: Transport> WebSocket<T> {
    /// A WebSocket with the SDK's [`default_config`], after a handshake already answered with
    /// [`accept`](super::accept).
    pub fn new(transport: T) -> Self {
        Self::with_config(transport, default_config())
    }

    /// A WebSocket with the given settings.
    pub fn with_config(transport: T, config: Config) -> Self {
        Self {
            protocol: tungstenite::WebSocket::from_raw_socket(
                Buffers::default(),
                Role::Server,
                Some(config),
            ),
            transport,
            finished: false,
        }
    }

    /// Receives the next message from the client.
    ///
    /// Returns data messages as well as pings, pongs and the client's close frame; pongs and
    /// the close reply are queued and sent automatically. Before waiting for input it sends
    /// everything queued. Returns `None` once the connection is over: the close handshake
    /// completed, or the client closed its side or went away. A protocol violation (or a
    /// message over the configured limits) is returned once as an error, after a close frame
    /// with the matching code has been sent; `None` follows.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        while !self.finished {
            match self.protocol.read() {
                Ok(message) => return Some(Ok(message)),
                Err(Error::Io(error)) if error.kind() == io::ErrorKind::WouldBlock => {
                    // Everything received has been parsed: send what is queued before waiting,
                    // so the client never waits on answers we hold back. (tungstenite holds
                    // frames itself only with a non-zero `write_buffer_size`.)
                    if let Err(error) = self.protocol.flush() {
                        return self.finish(error).await;
                    }
                    if self.send_queued().await.is_err() {
                        self.finished = true;
                        return None;
                    }
                    let buffers = self.protocol.get_mut();
                    if self.transport.read(&mut buffers.inbound).await == 0 {
                        buffers.input_ended = true;
                    }
                }
                Err(error) => return self.finish(error).await,
            }
        }
        None
    }

    /// Queues a message, sending the queue only if it has grown past
    /// [`OUTBOUND_FLUSH_THRESHOLD`]; [`recv`](Self::recv) sends the rest before it waits.
    ///
    /// Fails if the message is over the size limit, after a close frame was sent or received,
    /// or once the client has gone.
    pub async fn feed(&mut self, message: Message) -> Result<(), Error> {
        if self.finished {
            return Err(Error::AlreadyClosed);
        }
        self.protocol.write(message)?;
        if self.protocol.get_ref().outbound.len() >= OUTBOUND_FLUSH_THRESHOLD {
            self.send_queued().await?;
        }
        Ok(())
    }

    /// Sends everything queued, including automatic pongs and close replies.
    pub async fn flush(&mut self) -> Result<(), Error> {
        if self.finished {
            return self.send_queued().await;
        }
        let queued = self.protocol.flush();
        self.send_queued().await?;
        self.settle(queued)
    }

    /// Sends a message at once, with anything queued before it.
    pub async fn send(&mut self, message: Message) -> Result<(), Error> {
        self.feed(message).await?;
        self.flush().await
    }

    /// Starts the close handshake and waits for the client's reply.
    ///
    /// Sends a close frame (with `frame`'s code and reason, if any), then receives until the
    /// client answers with its own close frame or goes away; messages arriving in between are
    /// discarded. Drop the WebSocket instead to hang up without a handshake.
    pub async fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), Error> {
        if self.finished {
            return Ok(());
        }
        let queued = self.protocol.close(frame);
        self.send_queued().await?;
        self.settle(queued)?;
        while let Some(received) = self.recv().await {
            received?;
        }
        Ok(())
    }

    /// Writes the outbound buffer to the transport.
    async fn send_queued(&mut self) -> Result<(), Error> {
        let queued = mem::take(&mut self.protocol.get_mut().outbound);
        if queued.is_empty() {
            return Ok(());
        }
        self.transport.write_all(queued).await.map_err(|_closed| {
            self.finished = true;
            Error::Io(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the client has gone",
            ))
        })
    }

    /// Maps tungstenite's end-of-connection report on a write to success.
    fn settle(&mut self, result: Result<(), Error>) -> Result<(), Error> {
        match result {
            // On a server, this means the close handshake is complete: nothing is wrong.
            Err(Error::ConnectionClosed) => {
                self.finished = true;
                Ok(())
            }
            other => other,
        }
    }

    /// Ends the connection after tungstenite reported `error` while reading.
    async fn finish(&mut self, error: Error) -> Option<Result<Message, Error>> {
        self.finished = true;
        if let Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) = &error {
            // The input ended without a close frame: the client closed its side, or the host
            // is shutting down and ended it. Say goodbye if the other side still listens; it
            // is not an error of this connection.
            // tungstenite has already marked the connection terminated and would refuse to
            // queue a close, so the frame is written directly (unmasked, as servers send).
            let frame = CloseFrame {
                code: CloseCode::Away,
                reason: Utf8Bytes::from_static("going away"),
            };
            let outbound = &mut self.protocol.get_mut().outbound;
            if Frame::close(Some(frame)).format(outbound).is_ok() {
                let _ = self.send_queued().await;
            }
            return None;
        }
        let close = match &error {
            // The close handshake completed.
            Error::ConnectionClosed | Error::AlreadyClosed => None,
            Error::Capacity(_) => Some((CloseCode::Size, "message too big")),
            Error::Utf8(_) => Some((CloseCode::Invalid, "invalid UTF-8")),
            Error::Protocol(_) => Some((CloseCode::Protocol, "protocol error")),
            _ => Some((CloseCode::Error, "internal error")),
        };
        if let Some((code, reason)) = close {
            // Tell the client why before hanging up; there is no handshake to wait for.
            let frame = CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            };
            let _ = self.protocol.close(Some(frame));
        }
        // Sends the close reply or our close frame; the client may be gone already.
        let _ = self.send_queued().await;
        close.map(|_| Err(error))
    }
}

#[cfg(test)]
mod tests;
