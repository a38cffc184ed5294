//! Where topics live: in this process only (`local`, the default) or shared by every host that
//! names the same Redis server and prefix (`redis://HOST:PORT[/DB]`). Parsed from
//! `--pubsub` / `SWITCHYARD_PUBSUB` and `--pubsub-prefix` / `SWITCHYARD_PUBSUB_PREFIX`.

use std::fmt;
use std::str::FromStr;

/// The prefix of every Redis channel name when none is given.
pub const DEFAULT_PUBSUB_PREFIX: &str = "switchyard";
/// Longest prefix accepted: a prefix is a deployment's name, not data.
pub const MAX_PUBSUB_PREFIX_BYTES: usize = 64;

/// Which backend carries topics, and how its channels are named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubSubConfig {
    /// In-process, or a Redis server.
    pub backend: PubSubBackend,
    /// Starts every Redis channel name, so several deployments can share one Redis server
    /// (see [`PubSubPrefix`]).
    pub prefix: PubSubPrefix,
}

impl Default for PubSubConfig {
    fn default() -> Self {
        Self {
            backend: PubSubBackend::Local,
            prefix: PubSubPrefix::default(),
        }
    }
}

impl PubSubConfig {
    /// Topics shared through the Redis server at `url`, with the default prefix.
    pub fn redis(url: &str) -> Result<Self, PubSubConfigError> {
        Ok(Self {
            backend: url.parse()?,
            prefix: PubSubPrefix::default(),
        })
    }
}

/// Which backend carries topics.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PubSubBackend {
    /// This process only: a publish reaches this host's subscribers.
    #[default]
    Local,
    /// A Redis server (`redis://HOST:PORT[/DB]`): a publish reaches the subscribers on every
    /// host connected to it with the same prefix.
    Redis(RedisUrl),
}

/// A `redis://` URL, checked to name a host (the connection itself is made later, and retried
/// while the server is away).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// The URL as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RedisUrl {
    /// The URL without its password, if it has one: it goes into log lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.split_once('@') {
            Some((_, host)) => write!(f, "redis://…@{host}"),
            None => f.write_str(&self.0),
        }
    }
}

/// Why a `--pubsub` or `--pubsub-prefix` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PubSubConfigError {
    /// Neither `local` nor a `redis://` URL.
    #[error(
        "unknown pub/sub backend {0:?}: expected `local` or `redis://HOST:PORT[/DB]` \
         (TLS `rediss://` is not supported)"
    )]
    UnknownBackend(String),
    /// A `redis://` URL the client cannot use.
    #[error("invalid Redis URL {url:?}: {reason}")]
    BadUrl {
        /// The URL as given (without its password).
        url: String,
        /// What the client said.
        reason: String,
    },
    /// A prefix that is empty, too long, or has a character outside `A-Z a-z 0-9 . _ -`.
    #[error(
        "invalid pub/sub prefix {0:?}: 1 to {MAX_PUBSUB_PREFIX_BYTES} characters from \
         A-Z a-z 0-9 . _ - (no `:`, which separates the parts of a channel name)"
    )]
    BadPrefix(String),
}

impl FromStr for PubSubBackend {
    type Err = PubSubConfigError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value == "local" {
            return Ok(Self::Local);
        }
        if !value.starts_with("redis://") {
            return Err(PubSubConfigError::UnknownBackend(value.to_owned()));
        }
        let url = RedisUrl(value.to_owned());
        match redis::Client::open(value) {
            Ok(_) => Ok(Self::Redis(url)),
            Err(err) => Err(PubSubConfigError::BadUrl {
                url: url.to_string(),
                reason: err.to_string(),
            }),
        }
    }
}

impl fmt::Display for PubSubBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local => f.write_str("local"),
            Self::Redis(url) => url.fmt(f),
        }
    }
}

/// The first part of every Redis channel name (`<prefix>:<plugin>:<topic>`): 1 to
/// [`MAX_PUBSUB_PREFIX_BYTES`] characters from `A-Z a-z 0-9 . _ -`. It has no `:`, so no two
/// deployments' channels can ever be the same name. It is what keeps deployments on one Redis
/// server apart: pub/sub channels are server-wide, whatever database a URL selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubSubPrefix(String);

impl PubSubPrefix {
    /// The prefix as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for PubSubPrefix {
    fn default() -> Self {
        Self(DEFAULT_PUBSUB_PREFIX.to_owned())
    }
}

impl FromStr for PubSubPrefix {
    type Err = PubSubConfigError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let allowed = |byte: u8| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-');
        if value.is_empty() || value.len() > MAX_PUBSUB_PREFIX_BYTES || !value.bytes().all(allowed)
        {
            return Err(PubSubConfigError::BadPrefix(value.to_owned()));
        }
        Ok(Self(value.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_are_local_or_a_redis_url() {
        assert_eq!("local".parse(), Ok(PubSubBackend::Local));
        assert!(matches!(
            "redis://127.0.0.1:6379/2".parse(),
            Ok(PubSubBackend::Redis(_))
        ));
        assert!(matches!(
            "nats://127.0.0.1".parse::<PubSubBackend>(),
            Err(PubSubConfigError::UnknownBackend(_))
        ));
        assert!(matches!(
            "rediss://127.0.0.1".parse::<PubSubBackend>(),
            Err(PubSubConfigError::UnknownBackend(_))
        ));
        assert!(matches!(
            "redis://127.0.0.1:6379/notadb".parse::<PubSubBackend>(),
            Err(PubSubConfigError::BadUrl { .. })
        ));
    }

    #[test]
    fn a_password_stays_out_of_the_log() {
        let backend: PubSubBackend = "redis://user:secret@127.0.0.1:6379".parse().unwrap();
        assert_eq!(backend.to_string(), "redis://…@127.0.0.1:6379");
    }

    #[test]
    fn prefixes_have_no_colon() {
        assert_eq!(
            "staging-2".parse::<PubSubPrefix>().map(|p| p.0),
            Ok("staging-2".to_owned())
        );
        for bad in ["", "a:b", "white space", &"x".repeat(65)] {
            assert!(bad.parse::<PubSubPrefix>().is_err(), "{bad:?}");
        }
    }
}
