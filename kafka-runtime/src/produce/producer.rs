//! The producer shared by the whole process: one librdkafka client, created once, used by
//! workers, the `start-producer` command and the app's own code.

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{Producer as _, ProducerContext, PurgeConfig, ThreadedProducer};
use rdkafka::util::IntoOpaque;
use rdkafka::Message as _;
use serde::Serialize;
use tokio::sync::{oneshot, Notify};

use super::outgoing::{OutgoingMessage, Payload, Topic};
use super::serialize::Serializer;
use crate::config::client::client_config;
use crate::reachability::{connection_problem, failed_attempts_in_log, Reachability};

/// The process's producer. The first call configures nothing; the client is created by
/// [`Producer::setup`] or, failing that, from config.json on the first send.
pub fn producer() -> &'static Producer {
    static PRODUCER: OnceLock<Producer> = OnceLock::new();
    PRODUCER.get_or_init(Producer::new)
}

/// A producer shared by every task. See [`producer`].
pub struct Producer {
    pub(super) client: OnceLock<Client>,
    creating: tokio::sync::Mutex<()>,
    defaults: RwLock<Defaults>,
    stats: Arc<Stats>,
}

/// How the producer is set up: librdkafka settings, a value serializer, and how long
/// `send` waits for room when librdkafka's queue is full.
#[derive(Clone, Debug)]
pub struct ProducerSetup {
    brokers: Option<String>,
    settings: BTreeMap<String, String>,
    serializer: Serializer,
    queue_timeout: Duration,
    topic_prefix: Option<String>,
}

impl Default for ProducerSetup {
    fn default() -> Self {
        Self {
            brokers: None,
            settings: BTreeMap::new(),
            serializer: Serializer::Json,
            queue_timeout: Duration::from_secs(30),
            topic_prefix: None,
        }
    }
}

impl ProducerSetup {
    pub fn new() -> Self {
        Self::default()
    }

    /// Comma-separated brokers. Without them, the app's configured brokers are used.
    pub fn brokers(mut self, brokers: impl Into<String>) -> Self {
        self.brokers = Some(brokers.into());
        self
    }

    /// A librdkafka setting, passed through as it is, over the app's configured ones.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.insert(key.into(), value.into());
        self
    }

    /// How values become payloads. JSON by default.
    pub fn serializer(mut self, serializer: Serializer) -> Self {
        self.serializer = serializer;
        self
    }

    /// How long `send` waits for room when librdkafka's queue is full (default 30 s).
    pub fn queue_timeout(mut self, timeout: Duration) -> Self {
        self.queue_timeout = timeout;
        self
    }

    /// The prefix for topic names. Without it, the app's configured `topic_prefix` is used.
    pub fn topic_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.topic_prefix = Some(prefix.into());
        self
    }
}

/// What the app's configuration says, for a producer nobody set up explicitly.
#[derive(Default)]
pub(super) struct Defaults {
    brokers: Option<String>,
    settings: BTreeMap<String, String>,
    pub(super) topic_prefix: String,
}

pub(super) struct Client {
    pub(super) inner: Arc<ThreadedProducer<SharedContext>>,
    pub(super) serializer: Serializer,
    pub(super) queue_timeout: Duration,
    pub(super) topic_prefix: Option<String>,
}

/// Where a message was written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeliveryReport {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the epoch, when the broker or client gave one.
    pub timestamp: Option<i64>,
}

impl fmt::Display for DeliveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "delivered to {} partition {} offset {}", self.topic, self.partition, self.offset)?;
        if let Some(timestamp) = self.timestamp {
            write!(f, " timestamp {timestamp}")?;
        }
        Ok(())
    }
}

/// Why a message was not sent.
#[derive(Debug)]
pub enum SendError {
    /// No brokers are known: neither `setup` nor the app's configuration gave any.
    NotConfigured,
    /// The value could not be serialized.
    Serialize(String),
    /// librdkafka's queue stayed full for the whole queue timeout.
    QueueFull(Duration),
    /// librdkafka refused or failed to deliver the message.
    Kafka(KafkaError),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::NotConfigured => f.write_str(
                "the producer is not configured: call kafka_runtime::producer().setup(...) with brokers, \
                 or run inside a #[kafka_main] app with kafka.brokers, KAFKA_BROKERS or --brokers",
            ),
            SendError::Serialize(reason) => write!(f, "cannot serialize the value: {reason}"),
            SendError::QueueFull(timeout) => write!(
                f,
                "the producer queue stayed full for {} ms; the broker is slower than the app sends",
                timeout.as_millis()
            ),
            SendError::Kafka(err) => write!(f, "{err}"),
        }
    }
}

impl std::error::Error for SendError {}

/// Counters since the process started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProducerStats {
    /// librdkafka clients created (never more than one).
    pub clients_created: u64,
    pub delivered: u64,
    pub failed: u64,
    /// Failures of messages sent with [`OutgoingMessage::send_and_forget`].
    pub forgotten_failed: u64,
}

#[derive(Default)]
struct Stats {
    clients_created: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    forgotten_failed: AtomicU64,
}

/// Partition, offset and timestamp of a delivered message.
pub(super) type Delivered = Result<(i32, i64, Option<i64>), KafkaError>;

/// Who waits for a message's delivery report: a sender, or nobody (fire and forget). Passed
/// to librdkafka as a pointer, null for nobody, so forgetting allocates nothing.
pub(super) struct DeliveryWaiter(pub(super) Option<Box<oneshot::Sender<Delivered>>>);

impl IntoOpaque for DeliveryWaiter {
    fn into_ptr(self) -> *mut c_void {
        self.0.map_or(std::ptr::null_mut(), |sender| Box::into_raw(sender).cast())
    }

    unsafe fn from_ptr(ptr: *mut c_void) -> Self {
        // SAFETY: the pointer comes from `into_ptr`: null, or a box librdkafka hands back once.
        DeliveryWaiter((!ptr.is_null()).then(|| unsafe { Box::from_raw(ptr.cast()) }))
    }
}

pub(super) struct SharedContext {
    stats: Arc<Stats>,
    /// Tasks waiting for room in a full queue, woken as deliveries free it.
    pub(super) room: Notify,
    /// How many tasks wait for room: deliveries notify only while some do.
    pub(super) waiting: AtomicUsize,
    brokers: String,
    reachability: Reachability,
}

impl ClientContext for SharedContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match failed_attempts_in_log(level, facility, message) {
            Some(attempts) => self.reachability.failed("producer", &self.brokers, message, attempts),
            None => crate::logging::librdkafka("producer", level, facility, message),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(problem) = connection_problem(&error, reason) {
            self.reachability.failed("producer", &self.brokers, &problem, 0);
        } else {
            crate::logging::client_error("producer", &error, reason);
        }
    }
}

impl ProducerContext for SharedContext {
    type DeliveryOpaque = DeliveryWaiter;

    fn delivery(&self, result: &DeliveryResult<'_>, waiter: DeliveryWaiter) {
        let outcome = match result {
            Ok(message) => {
                self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                self.reachability.connected("producer");
                Ok((message.partition(), message.offset(), message.timestamp().to_millis()))
            }
            Err((err, message)) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                if waiter.0.is_none() {
                    self.stats.forgotten_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::error!("producer: a message to {} was not delivered: {err}", message.topic());
                }
                Err(err.clone())
            }
        };
        if let Some(sender) = waiter.0 {
            let _ = sender.send(outcome);
        }
        if self.waiting.load(Ordering::Relaxed) > 0 {
            self.room.notify_waiters();
        }
    }
}

impl Producer {
    pub(super) fn new() -> Self {
        Self {
            client: OnceLock::new(),
            creating: tokio::sync::Mutex::new(()),
            defaults: RwLock::new(Defaults::default()),
            stats: Arc::default(),
        }
    }

    /// Creates the client, once. Later calls, and calls racing with the first, change
    /// nothing and return `Ok`.
    pub async fn setup(&self, setup: ProducerSetup) -> Result<(), SendError> {
        if self.client.get().is_some() {
            return Ok(());
        }
        let _creating = self.creating.lock().await;
        if self.client.get().is_some() {
            return Ok(());
        }
        // The app's configured settings (config.json's `kafka.connection_settings`, then
        // `kafka.producer`), then the setup's own on top.
        let (brokers, mut settings) = {
            let defaults = self.read_defaults();
            (setup.brokers.clone().or_else(|| defaults.brokers.clone()), defaults.settings.clone())
        };
        let Some(brokers) = brokers else {
            return Err(SendError::NotConfigured);
        };
        settings.extend(setup.settings.iter().map(|(k, v)| (k.clone(), v.clone())));
        let config = client_config(&brokers, settings.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let context = SharedContext {
            stats: Arc::clone(&self.stats),
            room: Notify::new(),
            waiting: AtomicUsize::new(0),
            brokers: brokers.clone(),
            reachability: Reachability::default(),
        };
        let inner: ThreadedProducer<SharedContext> = config.create_with_context(context).map_err(SendError::Kafka)?;
        self.stats.clients_created.fetch_add(1, Ordering::Relaxed);
        tracing::debug!("producer connected to {brokers}");
        let client = Client {
            inner: Arc::new(inner),
            serializer: setup.serializer,
            queue_timeout: setup.queue_timeout,
            topic_prefix: setup.topic_prefix,
        };
        let _ = self.client.set(client);
        Ok(())
    }

    /// Records what the app's configuration says, for a producer nobody set up.
    pub(crate) fn configure_defaults(
        &self,
        brokers: Option<String>,
        settings: BTreeMap<String, String>,
        prefix: String,
    ) {
        let mut defaults = self.defaults.write().unwrap_or_else(|e| e.into_inner());
        *defaults = Defaults { brokers, settings, topic_prefix: prefix };
    }

    pub(super) fn read_defaults(&self) -> std::sync::RwLockReadGuard<'_, Defaults> {
        self.defaults.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) async fn client(&self) -> Result<&Client, SendError> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        self.setup(ProducerSetup::new()).await?;
        self.client.get().ok_or(SendError::NotConfigured)
    }

    /// Serializes `value`, sends it to `topic` and waits for the delivery report.
    pub async fn send<'a, T: Serialize + ?Sized>(
        &'a self,
        topic: impl Into<Topic<'a>>,
        value: &'a T,
    ) -> Result<DeliveryReport, SendError> {
        self.message(topic, value).send().await
    }

    /// A message to build with a key, headers or a partition before sending it.
    pub fn message<'a, T: Serialize + ?Sized>(
        &'a self,
        topic: impl Into<Topic<'a>>,
        value: &'a T,
    ) -> OutgoingMessage<'a, T> {
        OutgoingMessage::new(self, topic.into(), Payload::Value(value))
    }

    /// A message whose payload is these bytes, as they are, whatever the serializer.
    pub fn message_bytes<'a>(&'a self, topic: impl Into<Topic<'a>>, payload: &'a [u8]) -> OutgoingMessage<'a, [u8]> {
        OutgoingMessage::new(self, topic.into(), Payload::Bytes(payload))
    }

    /// Waits until every accepted message is delivered or `timeout` passes; then gives up
    /// on the rest, which are reported as failed. Returns how many were not delivered.
    pub async fn flush(&self, timeout: Duration) -> u64 {
        self.finish(Some(timeout)).await
    }

    /// Gives up at once on every message not delivered yet: they are reported as failed.
    /// Returns how many were not delivered.
    pub(crate) async fn give_up(&self) -> u64 {
        self.finish(None).await
    }

    /// Waits up to `wait` for the deliveries (not at all for `None`), then purges the rest.
    async fn finish(&self, wait: Option<Duration>) -> u64 {
        let Some(client) = self.client.get() else {
            return 0;
        };
        let failed_before = self.stats.failed.load(Ordering::Relaxed);
        let producer = Arc::clone(&client.inner);
        // Flushing blocks until the broker answers: keep it off the async threads.
        let flushed = tokio::task::spawn_blocking(move || {
            if let Some(timeout) = wait {
                if flush_now(&producer, timeout) {
                    return true;
                }
            }
            let left = producer.in_flight_count();
            if left == 0 {
                return true;
            }
            match wait {
                Some(timeout) => tracing::error!(
                    "producer: {left} messages were not delivered within {} ms; giving up on them",
                    timeout.as_millis()
                ),
                None => tracing::error!("producer: giving up on {left} messages not delivered yet"),
            }
            producer.purge(PurgeConfig::default().queue().inflight());
            // Purged messages get their (failed) delivery reports on the next poll.
            flush_now(&producer, Duration::from_secs(5));
            false
        })
        .await
        .unwrap_or(false);
        let failed = self.stats.failed.load(Ordering::Relaxed) - failed_before;
        if !flushed && failed == 0 {
            tracing::error!("producer: the flush did not finish; some messages may not have been delivered");
        }
        failed
    }

    /// Counters since the process started.
    pub fn stats(&self) -> ProducerStats {
        let stats = &self.stats;
        ProducerStats {
            clients_created: stats.clients_created.load(Ordering::Relaxed),
            delivered: stats.delivered.load(Ordering::Relaxed),
            failed: stats.failed.load(Ordering::Relaxed),
            forgotten_failed: stats.forgotten_failed.load(Ordering::Relaxed),
        }
    }

    /// Messages accepted and not yet delivered or failed (librdkafka's queue and in flight).
    pub fn queued(&self) -> usize {
        self.client.get().map_or(0, |client| usize::try_from(client.inner.in_flight_count()).unwrap_or(0))
    }

    /// True once the client exists.
    pub fn is_set_up(&self) -> bool {
        self.client.get().is_some()
    }
}

/// librdkafka's own flush: it returns as soon as the last delivery report has been served by
/// the client's polling thread, where rdkafka's `Producer::flush` polls in 100 ms steps.
/// True when everything was delivered or failed.
fn flush_now(producer: &ThreadedProducer<SharedContext>, timeout: Duration) -> bool {
    let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: the pointer is the live client's; rd_kafka_flush is safe to call from any thread.
    let code = unsafe { rdkafka_sys::rd_kafka_flush(producer.client().native_ptr(), millis) };
    code == rdkafka_sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
}
