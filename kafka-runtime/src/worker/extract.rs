//! Extractors: typed views of a message that a per-message handler takes as arguments.
//! A payload that cannot be decoded is an error for that message, never a panic.

use serde::de::DeserializeOwned;

use super::context::WorkerContext;
use super::error::{DecodeError, WorkerError};
use super::handler::FromMessageParts;
use crate::consume::Message;

/// The payload decoded from JSON into `T`.
#[derive(Debug, Clone, PartialEq)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> FromMessageParts for Json<T> {
    fn from_message_parts(message: &Message, _ctx: &WorkerContext) -> Result<Self, WorkerError> {
        Ok(Json(message.json()?))
    }
}

/// The payload as UTF-8 text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl FromMessageParts for Text {
    fn from_message_parts(message: &Message, _ctx: &WorkerContext) -> Result<Self, WorkerError> {
        Ok(Text(message.payload_str()?.to_owned()))
    }
}

/// The message key as UTF-8 text, `None` when the message has no key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key(pub Option<String>);

impl FromMessageParts for Key {
    fn from_message_parts(message: &Message, _ctx: &WorkerContext) -> Result<Self, WorkerError> {
        let key = match message.key() {
            None => None,
            Some(bytes) => Some(
                std::str::from_utf8(bytes)
                    .map_err(|err| DecodeError { what: "key as UTF-8 text", reason: err.to_string() })?
                    .to_owned(),
            ),
        };
        Ok(Key(key))
    }
}

/// The message headers, in order, as name and raw value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Headers(pub Vec<(String, Option<Vec<u8>>)>);

impl Headers {
    /// The value of the first header named `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.0.iter().find(|(key, _)| key == name).and_then(|(_, value)| value.as_deref())
    }
}

impl FromMessageParts for Headers {
    fn from_message_parts(message: &Message, _ctx: &WorkerContext) -> Result<Self, WorkerError> {
        let headers = message.headers().map(|(name, value)| (name.to_owned(), value.map(<[u8]>::to_vec))).collect();
        Ok(Headers(headers))
    }
}

impl FromMessageParts for WorkerContext {
    fn from_message_parts(_message: &Message, ctx: &WorkerContext) -> Result<Self, WorkerError> {
        Ok(ctx.clone())
    }
}
