//! Topics: publish once, and the host delivers to every connection subscribed to the topic.
//!
//! A topic belongs to this plugin; another plugin's topic of the same name is a different one.
//! Delivery is at most once and in the order this plugin published: a subscriber that falls
//! behind loses messages or is closed, as the plugin's settings say. [`publish`] works from every
//! export, so a plain HTTP `handle` can notify WebSocket clients.

use crate::bindings::switchyard::plugin::topics;
use crate::managed::{Error, Message};

/// Sends `message` to every connection subscribed to `topic`. Never waits.
pub fn publish(topic: &str, message: impl Into<Message>) -> Result<(), Error> {
    topics::publish(topic, &message.into().into()).map_err(Error::from)
}
