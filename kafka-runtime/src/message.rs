//! [`Message`]: a consumed record, handed to workers without copying its payload.

use std::fmt;
use std::sync::Arc;

use rdkafka::message::{BorrowedHeaders, BorrowedMessage, Headers, Timestamp};
use serde::de::DeserializeOwned;

use crate::consumer::WorkerConsumer;
use crate::error::DecodeError;

/// A record read from Kafka. It borrows librdkafka's buffer, so reading the payload copies
/// nothing; it can be kept or moved to another task for as long as needed.
pub struct Message {
    // Field order matters: `raw` must be dropped before the consumer it points into.
    raw: BorrowedMessage<'static>,
    _consumer: Arc<WorkerConsumer>,
}

impl Message {
    /// Ties the message's lifetime to a reference-counted consumer instead of a borrow.
    pub(crate) fn new(raw: BorrowedMessage<'_>, consumer: Arc<WorkerConsumer>) -> Self {
        // SAFETY: the borrow only guarantees that the message does not outlive the client it
        // came from. `consumer` is that client, and this struct keeps it alive until after
        // `raw` has been dropped (fields drop in declaration order).
        let raw = unsafe { std::mem::transmute::<BorrowedMessage<'_>, BorrowedMessage<'static>>(raw) };
        Self { raw, _consumer: consumer }
    }

    pub fn topic(&self) -> &str {
        rdkafka::Message::topic(&self.raw)
    }

    pub fn partition(&self) -> i32 {
        rdkafka::Message::partition(&self.raw)
    }

    pub fn offset(&self) -> i64 {
        rdkafka::Message::offset(&self.raw)
    }

    pub fn timestamp(&self) -> Timestamp {
        rdkafka::Message::timestamp(&self.raw)
    }

    pub fn key(&self) -> Option<&[u8]> {
        rdkafka::Message::key(&self.raw)
    }

    /// The payload bytes; `None` for a tombstone.
    pub fn payload(&self) -> Option<&[u8]> {
        rdkafka::Message::payload(&self.raw)
    }

    pub fn headers(&self) -> Option<&BorrowedHeaders> {
        rdkafka::Message::headers(&self.raw)
    }

    /// The value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers()?.iter().find(|header| header.key == name).and_then(|header| header.value)
    }

    /// The payload as UTF-8 text.
    pub fn payload_str(&self) -> Result<&str, DecodeError> {
        let payload = self.payload().ok_or_else(|| DecodeError::empty("payload as text"))?;
        std::str::from_utf8(payload)
            .map_err(|err| DecodeError { what: "payload as UTF-8 text", reason: err.to_string() })
    }

    /// The payload decoded from JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, DecodeError> {
        let payload = self.payload().ok_or_else(|| DecodeError::empty("payload as JSON"))?;
        serde_json::from_slice(payload).map_err(|err| DecodeError { what: "payload as JSON", reason: err.to_string() })
    }

    /// The underlying rdkafka message, for anything this type does not expose.
    pub fn raw(&self) -> &BorrowedMessage<'_> {
        &self.raw
    }
}

impl DecodeError {
    pub(crate) fn empty(what: &'static str) -> Self {
        Self { what, reason: "the message has no payload (a tombstone)".into() }
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("topic", &self.topic())
            .field("partition", &self.partition())
            .field("offset", &self.offset())
            .field("key", &self.key().map(String::from_utf8_lossy))
            .field("payload_len", &self.payload().map(<[u8]>::len))
            .finish()
    }
}
