//! The few direct librdkafka calls rdkafka has no safe API for: queue handles with a wake-up
//! callback, and reading names and buffers out of raw messages and topics.

use std::ffi::{c_void, CStr};

use futures_util::task::AtomicWaker;
use rdkafka_sys as rdsys;

/// An owned librdkafka queue handle. A wake-up callback set with [`wake_on_events`] is removed
/// before the handle is destroyed.
///
/// [`wake_on_events`]: Self::wake_on_events
pub(crate) struct QueueHandle {
    native: *mut rdsys::rd_kafka_queue_t,
    wakes: bool,
}

// SAFETY: librdkafka queues are thread-safe; the handle is owned and destroyed once.
unsafe impl Send for QueueHandle {}
unsafe impl Sync for QueueHandle {}

impl QueueHandle {
    /// Takes ownership of a handle returned by a librdkafka `rd_kafka_queue_get_*` call;
    /// `None` for a null one.
    ///
    /// # Safety
    /// `native` must be null or a queue handle owned by the caller and destroyed by nobody else.
    pub(crate) unsafe fn from_ptr(native: *mut rdsys::rd_kafka_queue_t) -> Option<Self> {
        (!native.is_null()).then(|| Self { native, wakes: false })
    }

    pub(crate) fn as_ptr(&self) -> *mut rdsys::rd_kafka_queue_t {
        self.native
    }

    /// How many events or messages wait in the queue.
    pub(crate) fn len(&self) -> usize {
        // SAFETY: a live handle.
        unsafe { rdsys::rd_kafka_queue_length(self.native) }
    }

    /// Wakes `waker` (from a librdkafka thread) whenever the queue turns non-empty.
    ///
    /// # Safety
    /// `waker` must outlive this handle: the callback is removed only when it is dropped.
    pub(crate) unsafe fn wake_on_events(&mut self, waker: &AtomicWaker) {
        // SAFETY: a live handle; the caller keeps the waker alive (see above).
        unsafe {
            rdsys::rd_kafka_queue_cb_event_enable(self.native, Some(wake), std::ptr::from_ref(waker).cast_mut().cast())
        };
        self.wakes = true;
    }
}

impl Drop for QueueHandle {
    fn drop(&mut self) {
        // SAFETY: a live handle, destroyed once. The callback goes first: the queue itself
        // lives on inside librdkafka and must not call back into a freed waker.
        unsafe {
            if self.wakes {
                rdsys::rd_kafka_queue_cb_event_enable(self.native, None, std::ptr::null_mut());
            }
            rdsys::rd_kafka_queue_destroy(self.native);
        }
    }
}

/// The queue callback: wakes the task waiting on the queue.
unsafe extern "C" fn wake(_client: *mut rdsys::rd_kafka_t, opaque: *mut c_void) {
    // SAFETY: `opaque` is the `AtomicWaker` given to `wake_on_events`, which outlives the
    // callback (removed before the queue handle is destroyed).
    let waker = unsafe { &*opaque.cast::<AtomicWaker>() };
    waker.wake();
}

/// The name of a librdkafka topic handle.
///
/// # Safety
/// `topic` must be null or a live topic handle; the name lives as long as the handle.
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
pub(crate) unsafe fn bytes<'a>(ptr: *const c_void, len: usize) -> Option<&'a [u8]> {
    (!ptr.is_null()).then(|| unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) })
}
