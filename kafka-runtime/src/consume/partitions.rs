//! The queues of the assigned partitions, split off the consumer's shared queue so that the
//! worker takes their messages in batches (`rd_kafka_consume_batch_queue`) instead of one
//! rdkafka event at a time.

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use futures_util::task::AtomicWaker;
use rdkafka::TopicPartitionList;
use rdkafka_sys as rdsys;

use crate::ffi::QueueHandle;

/// Rebalance events stay on the shared queue: taking them in a batch call would make
/// librdkafka answer them itself, bypassing the commit on revoke.
pub(crate) struct PartitionQueues {
    assigned: Mutex<Assigned>,
    /// Set when partitions were revoked and the fetcher has not yet dropped what it buffered
    /// of them.
    revoked_pending: AtomicBool,
    /// False once the fetcher is gone: no queue outlives its reader, and none is split off.
    reading: AtomicBool,
    split: SplitFn,
}

/// Gives a partition's queue its own handle: librdkafka's `rd_kafka_queue_get_partition`
/// (replaced in tests, to see what happens when it fails).
pub(crate) type SplitFn = unsafe fn(*mut rdsys::rd_kafka_t, &CString, i32) -> *mut rdsys::rd_kafka_queue_t;

unsafe fn get_partition_queue(
    client: *mut rdsys::rd_kafka_t,
    topic: &CString,
    partition: i32,
) -> *mut rdsys::rd_kafka_queue_t {
    // SAFETY: the caller passes a live client.
    unsafe { rdsys::rd_kafka_queue_get_partition(client, topic.as_ptr(), partition) }
}

#[derive(Default)]
pub(crate) struct Assigned {
    pub(crate) queues: Vec<PartitionQueue>,
    /// Revoked since the fetcher last looked, even if assigned again since: what it buffered
    /// of them is stale either way (librdkafka fetches them again from the last commit).
    revoked: Vec<(String, i32)>,
}

/// One partition's queue.
pub(crate) struct PartitionQueue {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) queue: QueueHandle,
}

impl Default for PartitionQueues {
    fn default() -> Self {
        Self::with_split(get_partition_queue)
    }
}

impl PartitionQueues {
    pub(crate) fn with_split(split: SplitFn) -> Self {
        Self {
            assigned: Mutex::default(),
            revoked_pending: AtomicBool::new(false),
            reading: AtomicBool::new(true),
            split,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Assigned> {
        self.assigned.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The partitions revoked since the last call, if any.
    pub(crate) fn take_revoked(&self) -> Option<Vec<(String, i32)>> {
        if !self.revoked_pending.swap(false, Ordering::AcqRel) {
            return None;
        }
        Some(std::mem::take(&mut self.lock().revoked))
    }

    /// Splits off the queues of newly assigned partitions, before librdkafka starts fetching
    /// them. Once split, a partition's messages reach nobody else: librdkafka does not forward
    /// them back to the shared queue. So a partition whose queue cannot be split is an error
    /// that stops the worker, never a partition left to stall; returns its name.
    pub(crate) fn add(
        &self,
        client: *mut rdsys::rd_kafka_t,
        partitions: &TopicPartitionList,
        waker: &AtomicWaker,
    ) -> Result<(), String> {
        if !self.reading.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut assigned = self.lock();
        let mut result = Ok(());
        for element in partitions.elements() {
            let (topic, partition) = (element.topic(), element.partition());
            if assigned.queues.iter().any(|q| q.topic == topic && q.partition == partition) {
                continue;
            }
            let split = CString::new(topic).ok().and_then(|c_topic| {
                // SAFETY: a live client (the one whose rebalance is being served); the handle
                // returned is owned by the `QueueHandle`.
                unsafe { QueueHandle::from_ptr((self.split)(client, &c_topic, partition)) }
            });
            let Some(mut queue) = split else {
                result = Err(format!("{topic}[{partition}]"));
                continue;
            };
            // SAFETY: a live handle; the waker is the consumer context's, which outlives every
            // queue (they are dropped by `remove`, `close` or with the context).
            unsafe {
                rdsys::rd_kafka_queue_forward(queue.as_ptr(), std::ptr::null_mut());
                queue.wake_on_events(waker);
            }
            assigned.queues.push(PartitionQueue { topic: topic.to_owned(), partition, queue });
        }
        drop(assigned);
        // A queue that was not empty when split will not call back: let the fetcher look.
        waker.wake();
        result
    }

    /// Destroys the queues of revoked partitions and remembers them, so the fetcher drops
    /// what it buffered of them.
    pub(crate) fn remove(&self, partitions: &TopicPartitionList) {
        let removed: Vec<PartitionQueue> = {
            let mut assigned = self.lock();
            let revoked: Vec<(String, i32)> =
                partitions.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
            let (gone, kept) = std::mem::take(&mut assigned.queues)
                .into_iter()
                .partition(|q| revoked.iter().any(|(t, p)| *t == q.topic && *p == q.partition));
            assigned.queues = kept;
            assigned.revoked.extend(revoked);
            gone
        };
        self.revoked_pending.store(true, Ordering::Release);
        drop(removed);
    }

    /// The fetcher is gone: destroys every queue (they must not outlive the client) and
    /// splits off no more.
    pub(crate) fn close(&self) {
        self.reading.store(false, Ordering::Release);
        let closed = std::mem::take(&mut self.lock().queues);
        drop(closed);
    }
}
