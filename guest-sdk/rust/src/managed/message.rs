//! [`Message`], a WebSocket data message, and [`Error`], why the host refused a call.

use std::fmt;

use crate::bindings::switchyard::plugin::types::{Error as WitError, Message as WitMessage};

/// A WebSocket data message: text (UTF-8, checked by the host) or binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

impl Message {
    /// The message's bytes, whichever kind it is.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Text(text) => text.as_bytes(),
            Self::Binary(bytes) => bytes,
        }
    }

    /// The text, if this is a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(text) => Some(text),
            Self::Binary(_) => None,
        }
    }

    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Self::Text(_))
    }
}

impl From<String> for Message {
    fn from(text: String) -> Self {
        Self::Text(text)
    }
}

impl From<&str> for Message {
    fn from(text: &str) -> Self {
        Self::Text(text.to_owned())
    }
}

impl From<Vec<u8>> for Message {
    fn from(bytes: Vec<u8>) -> Self {
        Self::Binary(bytes)
    }
}

impl From<&[u8]> for Message {
    fn from(bytes: &[u8]) -> Self {
        Self::Binary(bytes.to_vec())
    }
}

impl From<WitMessage> for Message {
    fn from(message: WitMessage) -> Self {
        match message {
            WitMessage::Text(text) => Self::Text(text),
            WitMessage::Binary(bytes) => Self::Binary(bytes),
        }
    }
}

impl From<Message> for WitMessage {
    fn from(message: Message) -> Self {
        match message {
            Message::Text(text) => Self::Text(text),
            Message::Binary(bytes) => Self::Binary(bytes),
        }
    }
}

/// Why the host refused a call on a connection or topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The connection has closed, or was never this plugin's.
    UnknownConnection,
    /// The message, attachment or close reason is longer than the host allows.
    TooLarge,
    /// The connection's outbound buffer is full: the message was not queued.
    Backpressure,
    /// The topic name is empty or longer than the host allows.
    InvalidTopic,
    /// The connection already belongs to as many topics as the host allows.
    TooManyTopics,
    /// A close code a server may not send (RFC 6455 §7.4), e.g. 1005 or 1006.
    InvalidCloseCode,
}

impl From<WitError> for Error {
    fn from(error: WitError) -> Self {
        match error {
            WitError::UnknownConnection => Self::UnknownConnection,
            WitError::TooLarge => Self::TooLarge,
            WitError::Backpressure => Self::Backpressure,
            WitError::InvalidTopic => Self::InvalidTopic,
            WitError::TooManyTopics => Self::TooManyTopics,
            WitError::InvalidCloseCode => Self::InvalidCloseCode,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UnknownConnection => "the connection is closed or not this plugin's",
            Self::TooLarge => "longer than the host allows",
            Self::Backpressure => "the connection's outbound buffer is full",
            Self::InvalidTopic => "the topic name is empty or too long",
            Self::TooManyTopics => "the connection belongs to too many topics",
            Self::InvalidCloseCode => "a server may not send that close code",
        })
    }
}

impl std::error::Error for Error {}
