//! The Kafka consumer behind each worker: its client settings, its rebalance handling
//! (commit on revoke) and the offset store that marks a message as done.

use std::ffi::CString;
use std::sync::Arc;

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::BorrowedMessage;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::Message as _;
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

/// Logs what the client reports, naming the worker, and commits stored offsets before
/// partitions are taken away.
pub(crate) struct WorkerConsumerContext {
    pub(crate) label: Arc<str>,
    pub(crate) brokers: Arc<str>,
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
                commit_stored(consumer, &self.label, "on revoke");
            }
            Rebalance::Error(err) => tracing::warn!(worker = &*self.label, "rebalance error: {err}"),
            Rebalance::Assign(_) => {}
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
    pub(crate) fn receipt(&mut self, consumer: &WorkerConsumer, message: &BorrowedMessage<'_>) -> Receipt {
        let object = message.topic_ptr();
        let index = match self.topics.iter().position(|handle| handle.native == object) {
            Some(index) => index,
            None => {
                let name = message.topic();
                match self.topics.iter().position(|handle| &*handle.name == name) {
                    Some(index) => index,
                    None => {
                        self.topics.push(TopicHandle::new(consumer, name));
                        self.topics.len() - 1
                    }
                }
            }
        };
        Receipt { topic: index, partition: message.partition(), offset: message.offset() }
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
