//! [`Message`]: a consumed record, handed to workers without copying its payload.

use std::ffi::CStr;
use std::fmt;
use std::ptr::NonNull;
use std::sync::{Arc, OnceLock};

use rdkafka::message::Timestamp;
use rdkafka_sys as rdsys;
use serde::de::DeserializeOwned;

use super::client::SharedConsumer;
use crate::ffi::{bytes, topic_name};
use crate::worker::error::DecodeError;

/// A record read from Kafka. It borrows librdkafka's buffer, so reading the payload copies
/// nothing; it can be kept or moved to another task for as long as needed, and shared
/// between threads by reference.
pub struct Message {
    // Field order matters: the record must be dropped before the consumer it points into.
    record: Handle,
    _consumer: SharedConsumer,
}

/// A message's record: owned by one `Message`, or shared by several (a message kept for a
/// retry or a dead-letter topic while the handler has its own).
enum Handle {
    Owned(Record),
    Shared(Arc<Record>),
}

struct Record {
    raw: NativeMessage,
    /// The parsed headers, null when the message has none. librdkafka parses them on first
    /// use and writes the result into the message, so the parse runs once, behind this lock.
    headers: OnceLock<HeadersPtr>,
}

/// A librdkafka message owned by this process, destroyed on drop.
pub(crate) struct NativeMessage(NonNull<rdsys::rd_kafka_message_t>);

// SAFETY: a librdkafka message may be read and destroyed from any thread, and nothing in it
// changes once consumed, except the headers parsed on first use, which `Message` guards.
// Shared references to a bare `NativeMessage` only read its fields.
unsafe impl Send for NativeMessage {}
unsafe impl Sync for NativeMessage {}

struct HeadersPtr(*const rdsys::rd_kafka_headers_t);

// SAFETY: once parsed, librdkafka's header list is only read.
unsafe impl Send for HeadersPtr {}
unsafe impl Sync for HeadersPtr {}

impl NativeMessage {
    /// Takes ownership of a message returned by a librdkafka consume call.
    ///
    /// # Safety
    /// `ptr` must come from librdkafka, be owned by the caller and destroyed by nobody else.
    pub(crate) unsafe fn from_ptr(ptr: *mut rdsys::rd_kafka_message_t) -> Option<Self> {
        NonNull::new(ptr).map(Self)
    }

    pub(crate) fn fields(&self) -> &rdsys::rd_kafka_message_t {
        // SAFETY: owned and live until drop; librdkafka does not change it once consumed.
        unsafe { self.0.as_ref() }
    }

    /// The topic's name.
    pub(crate) fn topic(&self) -> &str {
        // SAFETY: a consumed message holds its topic handle as long as it lives.
        unsafe { topic_name(self.fields().rkt) }
    }
}

impl Drop for NativeMessage {
    fn drop(&mut self) {
        // SAFETY: owned, destroyed once.
        unsafe { rdsys::rd_kafka_message_destroy(self.0.as_ptr()) }
    }
}

impl Message {
    pub(crate) fn new(raw: NativeMessage, consumer: SharedConsumer) -> Self {
        Self { record: Handle::Owned(Record { raw, headers: OnceLock::new() }), _consumer: consumer }
    }

    /// Two handles to this one record: one for the handler, one kept.
    pub(crate) fn share(self) -> (Message, Message) {
        let record = match self.record {
            Handle::Owned(record) => Arc::new(record),
            Handle::Shared(record) => record,
        };
        let kept = Message { record: Handle::Shared(Arc::clone(&record)), _consumer: self._consumer.clone() };
        (Message { record: Handle::Shared(record), _consumer: self._consumer }, kept)
    }

    fn record(&self) -> &Record {
        match &self.record {
            Handle::Owned(record) => record,
            Handle::Shared(record) => record,
        }
    }

    fn raw(&self) -> &NativeMessage {
        &self.record().raw
    }

    fn fields(&self) -> &rdsys::rd_kafka_message_t {
        self.raw().fields()
    }

    pub fn topic(&self) -> &str {
        self.raw().topic()
    }

    pub fn partition(&self) -> i32 {
        self.fields().partition
    }

    pub fn offset(&self) -> i64 {
        self.fields().offset
    }

    pub fn timestamp(&self) -> Timestamp {
        let mut kind = rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: the message is live; librdkafka only reads it.
        let timestamp = unsafe { rdsys::rd_kafka_message_timestamp(self.raw().0.as_ptr(), &mut kind) };
        match kind {
            _ if timestamp == -1 => Timestamp::NotAvailable,
            rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_CREATE_TIME => Timestamp::CreateTime(timestamp),
            rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME => Timestamp::LogAppendTime(timestamp),
            _ => Timestamp::NotAvailable,
        }
    }

    pub fn key(&self) -> Option<&[u8]> {
        let fields = self.fields();
        // SAFETY: the key buffer lives as long as the message.
        unsafe { bytes(fields.key, fields.key_len) }
    }

    /// The payload bytes; `None` for a tombstone.
    pub fn payload(&self) -> Option<&[u8]> {
        let fields = self.fields();
        // SAFETY: the payload buffer lives as long as the message.
        unsafe { bytes(fields.payload, fields.len) }
    }

    /// The headers, in order: name and value (`None` for a null value).
    pub fn headers(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> + '_ {
        let headers = self.parsed_headers();
        (0..).map_while(move |index| {
            if headers.is_null() {
                return None;
            }
            let (mut name, mut value, mut size) = (std::ptr::null(), std::ptr::null(), 0);
            // SAFETY: `headers` belongs to the live message and is only read from here on;
            // out-of-range indexes return an error.
            let code = unsafe { rdsys::rd_kafka_header_get_all(headers, index, &mut name, &mut value, &mut size) };
            if code != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
                return None;
            }
            // SAFETY: names are NUL-terminated and values `size` bytes, owned by the message.
            let name = unsafe { CStr::from_ptr(name) }.to_str().unwrap_or("");
            Some((name, unsafe { bytes(value, size) }))
        })
    }

    /// Parses the headers on first use; null when there are none.
    fn parsed_headers(&self) -> *const rdsys::rd_kafka_headers_t {
        let record = self.record();
        record
            .headers
            .get_or_init(|| {
                let mut headers: *mut rdsys::rd_kafka_headers_t = std::ptr::null_mut();
                // SAFETY: the message is live. This call writes the parsed list into the
                // message; the `OnceLock` makes it the only call, whatever the threads.
                let found = unsafe { rdsys::rd_kafka_message_headers(record.raw.0.as_ptr(), &mut headers) };
                let ok = found == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR;
                HeadersPtr(if ok { headers } else { std::ptr::null_mut() })
            })
            .0
    }

    /// The value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers().find(|(key, _)| *key == name).and_then(|(_, value)| value)
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

    #[cfg(test)]
    pub(crate) fn consumer(&self) -> &SharedConsumer {
        &self._consumer
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
