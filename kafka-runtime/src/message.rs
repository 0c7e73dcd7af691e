//! [`Message`]: a consumed record, handed to workers without copying its payload.

use std::ffi::{c_void, CStr};
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

use rdkafka::message::{BorrowedMessage, Timestamp};
use rdkafka_sys as rdsys;
use serde::de::DeserializeOwned;

use crate::consumer::WorkerConsumer;
use crate::error::DecodeError;

/// A record read from Kafka. It borrows librdkafka's buffer, so reading the payload copies
/// nothing; it can be kept or moved to another task for as long as needed.
pub struct Message {
    // Field order matters: `raw` must be dropped before the consumer it points into.
    raw: Raw,
    _consumer: Arc<WorkerConsumer>,
}

/// Where the record lives.
enum Raw {
    /// Taken in a batch from one partition's queue; destroyed with the message.
    Native(NativeMessage),
    /// Delivered through rdkafka's own poll (a partition whose queue was not split off).
    Event(BorrowedMessage<'static>),
}

/// A librdkafka message owned by this process, destroyed on drop.
pub(crate) struct NativeMessage(NonNull<rdsys::rd_kafka_message_t>);

// SAFETY: a librdkafka message may be read and destroyed from any thread; it is read-only
// once consumed, like rdkafka's `BorrowedMessage`, which is `Send + Sync` too.
unsafe impl Send for NativeMessage {}
unsafe impl Sync for NativeMessage {}

impl NativeMessage {
    /// Takes ownership of a message returned by a librdkafka consume call.
    ///
    /// # Safety
    /// `ptr` must come from librdkafka, be owned by the caller and destroyed by nobody else.
    pub(crate) unsafe fn from_ptr(ptr: *mut rdsys::rd_kafka_message_t) -> Option<Self> {
        NonNull::new(ptr).map(Self)
    }

    pub(crate) fn as_ptr(&self) -> *mut rdsys::rd_kafka_message_t {
        self.0.as_ptr()
    }

    pub(crate) fn fields(&self) -> &rdsys::rd_kafka_message_t {
        // SAFETY: owned and live until drop; librdkafka does not change it once consumed.
        unsafe { self.0.as_ref() }
    }
}

impl Drop for NativeMessage {
    fn drop(&mut self) {
        // SAFETY: owned, destroyed once.
        unsafe { rdsys::rd_kafka_message_destroy(self.0.as_ptr()) }
    }
}

impl Message {
    /// A message from a partition queue.
    pub(crate) fn native(raw: NativeMessage, consumer: Arc<WorkerConsumer>) -> Self {
        Self { raw: Raw::Native(raw), _consumer: consumer }
    }

    /// Ties a message polled through rdkafka to a reference-counted consumer instead of a borrow.
    pub(crate) fn polled(raw: BorrowedMessage<'_>, consumer: Arc<WorkerConsumer>) -> Self {
        // SAFETY: the borrow only guarantees that the message does not outlive the client it
        // came from. `consumer` is that client, and this struct keeps it alive until after
        // `raw` has been dropped (fields drop in declaration order).
        let raw = unsafe { std::mem::transmute::<BorrowedMessage<'_>, BorrowedMessage<'static>>(raw) };
        Self { raw: Raw::Event(raw), _consumer: consumer }
    }

    fn ptr(&self) -> *mut rdsys::rd_kafka_message_t {
        match &self.raw {
            Raw::Native(native) => native.as_ptr(),
            Raw::Event(polled) => polled.ptr(),
        }
    }

    fn fields(&self) -> &rdsys::rd_kafka_message_t {
        // SAFETY: the message is live as long as `self`.
        unsafe { &*self.ptr() }
    }

    pub fn topic(&self) -> &str {
        // SAFETY: a consumed message always has its topic; the name lives as long as the message.
        unsafe { topic_name(self.fields().rkt) }
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
        let timestamp = unsafe { rdsys::rd_kafka_message_timestamp(self.ptr(), &mut kind) };
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
        let mut headers: *mut rdsys::rd_kafka_headers_t = std::ptr::null_mut();
        // SAFETY: the message is live; librdkafka parses the headers once and keeps them in
        // the message (rdkafka's `BorrowedMessage::headers` does the same through `&self`).
        let found = unsafe { rdsys::rd_kafka_message_headers(self.ptr(), &mut headers) };
        let headers =
            (found == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && !headers.is_null()).then_some(headers);
        (0..).map_while(move |index| {
            let headers = headers?;
            let (mut name, mut value, mut size) = (std::ptr::null(), std::ptr::null(), 0);
            // SAFETY: `headers` belongs to the live message; out-of-range indexes return an error.
            let code = unsafe { rdsys::rd_kafka_header_get_all(headers, index, &mut name, &mut value, &mut size) };
            if code != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
                return None;
            }
            // SAFETY: names are NUL-terminated and values `size` bytes, owned by the message.
            let name = unsafe { CStr::from_ptr(name) }.to_str().unwrap_or("");
            Some((name, unsafe { bytes(value.cast_mut(), size) }))
        })
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
}

/// The name of a librdkafka topic handle.
///
/// # Safety
/// `topic` must be a live topic handle; the name lives as long as the handle.
pub(crate) unsafe fn topic_name<'a>(topic: *mut rdsys::rd_kafka_topic_t) -> &'a str {
    if topic.is_null() {
        return "";
    }
    // Kafka topic names are ASCII; librdkafka never hands out another.
    unsafe { CStr::from_ptr(rdsys::rd_kafka_topic_name(topic)) }.to_str().unwrap_or("")
}

/// `len` bytes at `ptr`, `None` for a null pointer.
///
/// # Safety
/// A non-null `ptr` must point to `len` readable bytes that outlive `'a`.
unsafe fn bytes<'a>(ptr: *mut c_void, len: usize) -> Option<&'a [u8]> {
    (!ptr.is_null()).then(|| unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) })
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
