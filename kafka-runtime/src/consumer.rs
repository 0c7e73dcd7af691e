//! The Kafka consumer behind each worker: its client settings, its rebalance handling
//! (commit on revoke) and the offset store that marks a message as done.

use std::ffi::{c_void, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::task::AtomicWaker;

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::TopicPartitionList;
use rdkafka_sys as rdsys;

/// The consumer every worker runs on.
pub(crate) type WorkerConsumer = StreamConsumer<WorkerConsumerContext>;

/// Settings the runtime always applies, whatever the layers say: offsets are stored only
/// after a handler succeeds. (With librdkafka's default `enable.auto.commit=true`, stored
/// offsets are committed in the background; they are also committed on revoke and at close.)
pub(crate) const ENFORCED_SETTINGS: &[(&str, &str)] = &[("enable.auto.offset.store", "false")];

/// Defaults below every layer. `fetch.queue.backoff.ms` is lowered from librdkafka's 1000 ms,
/// which stalls fetching for a second whenever the local queue fills up.
/// Extra defaults on the embedded mock cluster. It answers an empty fetch only after
/// `fetch.wait.max.ms` (new data does not wake it), and it keeps 5 MiB per partition: a
/// consumer that waits too long can find its position deleted. A rebalance there waits
/// `session.timeout.ms` less a second.
pub(crate) const EMBEDDED_SETTINGS: &[(&str, &str)] = &[("fetch.wait.max.ms", "10"), ("session.timeout.ms", "6000")];

pub(crate) const DEFAULT_SETTINGS: &[(&str, &str)] =
    &[("auto.offset.reset", "earliest"), ("fetch.queue.backoff.ms", "10")];

/// Logs what the client reports, naming the worker, commits stored offsets before
/// partitions are taken away, and gives every assigned partition its own queue.
pub(crate) struct WorkerConsumerContext {
    pub(crate) label: Arc<str>,
    pub(crate) brokers: Arc<str>,
    pub(crate) partitions: PartitionQueues,
}

impl WorkerConsumerContext {
    pub(crate) fn new(label: Arc<str>, brokers: Arc<str>) -> Self {
        Self { label, brokers, partitions: PartitionQueues::default() }
    }
}

impl ClientContext for WorkerConsumerContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        let label = &*self.label;
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", worker = label, "{fac}: {log_message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", worker = label, "{fac}: {log_message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", worker = label, "{fac}: {log_message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", worker = label, "{fac}: {log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let label = &*self.label;
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            tracing::error!(
                worker = label,
                "cannot reach any broker of {}: {reason}; still retrying. Check --brokers, \
                 KAFKA_BROKERS or kafka.brokers in config.json",
                self.brokers
            );
        } else {
            tracing::warn!(worker = label, "kafka client error: {error}: {reason}");
        }
    }
}

impl ConsumerContext for WorkerConsumerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(partitions) => {
                // Handlers run between polls, so every finished message is already stored:
                // commit them before another member takes the partitions over.
                tracing::info!(worker = &*self.label, "partitions revoked: {}", describe(partitions));
                self.partitions.remove(partitions);
                commit_stored(consumer, &self.label, "on revoke");
            }
            Rebalance::Error(err) => tracing::warn!(worker = &*self.label, "rebalance error: {err}"),
            // Before librdkafka starts fetching them, so no message goes to the shared queue.
            Rebalance::Assign(partitions) => self.partitions.add(consumer, partitions),
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            tracing::info!(worker = &*self.label, "partitions assigned: {}", describe(partitions));
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(err) => {
                tracing::warn!(worker = &*self.label, "offset commit failed: {err}; it is retried with the next commit")
            }
        }
    }
}

/// Commits the stored offsets synchronously. Nothing to commit is not an error.
pub(crate) fn commit_stored<C: ConsumerContext, K: Consumer<C> + ?Sized>(
    consumer: &K,
    label: &str,
    when: &str,
) -> bool {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => {
            tracing::debug!(worker = label, "committed stored offsets {when}");
            true
        }
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => true,
        Err(err) => {
            tracing::error!(
                worker = label,
                "could not commit offsets {when}: {err}; messages after the last commit will be redelivered"
            );
            false
        }
    }
}

fn describe(partitions: &TopicPartitionList) -> String {
    let mut list: Vec<String> =
        partitions.elements().iter().map(|p| format!("{}[{}]", p.topic(), p.partition())).collect();
    list.sort();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

/// Creates a consumer from merged client settings and subscribes it.
pub(crate) fn subscribe(
    config: &ClientConfig,
    context: WorkerConsumerContext,
    subscription: &[String],
) -> Result<WorkerConsumer, KafkaError> {
    let consumer: WorkerConsumer = config.create_with_context(context)?;
    let topics: Vec<&str> = subscription.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    Ok(consumer)
}

/// Where a handed-out message sits, so its offset can be stored once it is done.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Receipt {
    topic: usize,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
}

/// Stores offsets without allocating: one librdkafka topic handle per topic, reused.
pub(crate) struct OffsetStore {
    topics: Vec<TopicHandle>,
}

struct TopicHandle {
    name: Box<str>,
    native: *mut rdsys::rd_kafka_topic_t,
}

// SAFETY: librdkafka topic handles are thread-safe; the store only creates, uses and destroys
// its own handles.
unsafe impl Send for OffsetStore {}
unsafe impl Sync for OffsetStore {}

impl OffsetStore {
    pub(crate) fn new() -> Self {
        Self { topics: Vec::new() }
    }

    /// The receipt for a message about to be handed to a worker. librdkafka hands out one
    /// object per topic, the same one our handle holds, so the topic is found by address;
    /// the name is compared only if that ever misses. (Holding the handle keeps the object,
    /// so its address cannot be reused by another topic.)
    pub(crate) fn receipt(&mut self, consumer: &WorkerConsumer, message: &rdsys::rd_kafka_message_t) -> Receipt {
        let object = message.rkt;
        let index = match self.topics.iter().position(|handle| handle.native == object) {
            Some(index) => index,
            None => {
                // SAFETY: a consumed message's topic handle lives as long as the message.
                let name = unsafe { crate::message::topic_name(object) };
                match self.topics.iter().position(|handle| &*handle.name == name) {
                    Some(index) => index,
                    None => {
                        self.topics.push(TopicHandle::new(consumer, name));
                        self.topics.len() - 1
                    }
                }
            }
        };
        Receipt { topic: index, partition: message.partition, offset: message.offset }
    }

    pub(crate) fn topic(&self, receipt: &Receipt) -> &str {
        &self.topics[receipt.topic].name
    }

    /// Marks the message as done: librdkafka then commits its successor's offset.
    pub(crate) fn store(&self, receipt: &Receipt) -> Result<(), RDKafkaErrorCode> {
        let handle = &self.topics[receipt.topic];
        if handle.native.is_null() {
            return Err(RDKafkaErrorCode::UnknownTopic);
        }
        // SAFETY: `native` is a live handle owned by this store. `rd_kafka_offset_store`
        // adds the 1 itself: it takes the offset of the message that is done.
        let code = unsafe { rdsys::rd_kafka_offset_store(handle.native, receipt.partition, receipt.offset) };
        if code == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
            Ok(())
        } else {
            Err(code.into())
        }
    }
}

impl TopicHandle {
    fn new(consumer: &WorkerConsumer, name: &str) -> Self {
        // Topic names come from librdkafka, which never hands out one with a NUL byte.
        let c_name = CString::new(name).unwrap_or_default();
        // SAFETY: the client pointer is live for the duration of the call; the returned
        // handle holds its own reference and is destroyed in `Drop`.
        let native =
            unsafe { rdsys::rd_kafka_topic_new(consumer.client().native_ptr(), c_name.as_ptr(), std::ptr::null_mut()) };
        Self { name: name.into(), native }
    }
}

impl Drop for TopicHandle {
    fn drop(&mut self) {
        if !self.native.is_null() {
            // SAFETY: created by `rd_kafka_topic_new` and destroyed once.
            unsafe { rdsys::rd_kafka_topic_destroy(self.native) }
        }
    }
}

/// The queues of the assigned partitions, split off the consumer's shared queue so that the
/// worker can take their messages in batches (`rd_kafka_consume_batch_queue`) instead of one
/// rdkafka event at a time. Rebalance events stay on the shared queue, which the worker still
/// polls: taking them in a batch call would make librdkafka answer them itself, bypassing the
/// commit on revoke. Each queue wakes the worker when it turns non-empty.
pub(crate) struct PartitionQueues {
    assigned: Mutex<Assigned>,
    /// Set when partitions were revoked and the worker has not yet dropped what it buffered
    /// of them.
    revoked_pending: AtomicBool,
    /// Wakes the worker's task; the queues' callbacks point at it.
    pub(crate) waker: Arc<AtomicWaker>,
    /// False once the worker's stream is gone: partitions assigned after that stay on the
    /// shared queue, and no queue outlives the reader.
    reading: AtomicBool,
}

#[derive(Default)]
pub(crate) struct Assigned {
    pub(crate) queues: Vec<PartitionQueue>,
    /// Revoked since the worker last looked, even if assigned again since: what it buffered
    /// of them is stale either way (librdkafka fetches them again from the last commit).
    pub(crate) revoked: Vec<(String, i32)>,
}

impl Default for PartitionQueues {
    fn default() -> Self {
        Self {
            assigned: Mutex::new(Assigned::default()),
            revoked_pending: AtomicBool::new(false),
            waker: Arc::new(AtomicWaker::new()),
            reading: AtomicBool::new(true),
        }
    }
}

/// One partition's queue, owned: its wake-up callback is removed and the handle destroyed on drop.
pub(crate) struct PartitionQueue {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) native: *mut rdsys::rd_kafka_queue_t,
}

// SAFETY: librdkafka queues are thread-safe; the handle is owned and destroyed once.
unsafe impl Send for PartitionQueue {}

impl Drop for PartitionQueue {
    fn drop(&mut self) {
        // SAFETY: a live handle from `rd_kafka_queue_get_partition`. The callback goes first:
        // the partition's queue lives on inside librdkafka, and must not wake a freed waker.
        unsafe {
            rdsys::rd_kafka_queue_cb_event_enable(self.native, None, std::ptr::null_mut());
            rdsys::rd_kafka_queue_destroy(self.native);
        }
    }
}

/// Called by librdkafka (from its own threads) when a partition queue turns non-empty.
unsafe extern "C" fn wake_worker(_client: *mut rdsys::rd_kafka_t, opaque: *mut c_void) {
    // SAFETY: `opaque` is the `AtomicWaker` of `PartitionQueues`, which outlives the callback
    // (removed before the queue handle is destroyed, and the context outlives the client).
    let waker = unsafe { &*opaque.cast::<AtomicWaker>() };
    waker.wake();
}

impl PartitionQueues {
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

    fn add(&self, consumer: &BaseConsumer<WorkerConsumerContext>, partitions: &TopicPartitionList) {
        if !self.reading.load(Ordering::Acquire) {
            return;
        }
        let mut assigned = self.lock();
        for element in partitions.elements() {
            let (topic, partition) = (element.topic(), element.partition());
            if assigned.queues.iter().any(|q| q.topic == topic && q.partition == partition) {
                continue;
            }
            let Ok(c_topic) = CString::new(topic) else { continue };
            // SAFETY: a live client; the returned handle is owned by the `PartitionQueue`.
            let native = unsafe {
                rdsys::rd_kafka_queue_get_partition(consumer.client().native_ptr(), c_topic.as_ptr(), partition)
            };
            if native.is_null() {
                // Its messages then come through the shared queue, in order all the same.
                continue;
            }
            // SAFETY: live handle; the waker outlives the callback (see `wake_worker`).
            unsafe {
                rdsys::rd_kafka_queue_forward(native, std::ptr::null_mut());
                rdsys::rd_kafka_queue_cb_event_enable(
                    native,
                    Some(wake_worker),
                    Arc::as_ptr(&self.waker).cast_mut().cast(),
                );
            }
            assigned.queues.push(PartitionQueue { topic: topic.to_owned(), partition, native });
        }
        drop(assigned);
        // A queue that was not empty when split will not call back: let the worker look.
        self.waker.wake();
    }

    fn remove(&self, partitions: &TopicPartitionList) {
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

    /// The reader is gone: destroys every queue (they must not outlive the client) and
    /// splits off no more.
    pub(crate) fn close(&self) {
        self.reading.store(false, Ordering::Release);
        let closed = std::mem::take(&mut self.lock().queues);
        drop(closed);
    }
}
