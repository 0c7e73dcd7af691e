//! The producer shared by the whole process: one librdkafka client, created once, used by
//! workers, the `start-producer` command and the app's own code.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ffi::c_void;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _, ProducerContext, PurgeConfig, ThreadedProducer};
use rdkafka::util::IntoOpaque;
use rdkafka::Message as _;
use serde::Serialize;
use tokio::sync::{oneshot, Notify};

use crate::serialize::Serializer;

/// The process's producer. The first call configures nothing; the client is created by
/// [`Producer::setup`] or, failing that, from config.json on the first send.
pub fn producer() -> &'static Producer {
    static PRODUCER: OnceLock<Producer> = OnceLock::new();
    PRODUCER.get_or_init(Producer::new)
}

/// A producer shared by every task. See [`producer`].
pub struct Producer {
    client: OnceLock<Client>,
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

    /// A librdkafka setting, passed through as it is.
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
struct Defaults {
    brokers: Option<String>,
    settings: BTreeMap<String, String>,
    topic_prefix: String,
}

struct Client {
    inner: Arc<ThreadedProducer<SharedContext>>,
    serializer: Serializer,
    queue_timeout: Duration,
    topic_prefix: Option<String>,
}

/// Where a message goes. A `&str` gets the topic prefix; [`Topic::exact`] does not.
#[derive(Clone, Copy, Debug)]
pub struct Topic<'a> {
    name: &'a str,
    exact: bool,
}

impl<'a> Topic<'a> {
    /// A topic named exactly so, without the prefix.
    pub fn exact(name: &'a str) -> Self {
        Self { name, exact: true }
    }
}

impl<'a> From<&'a str> for Topic<'a> {
    fn from(name: &'a str) -> Self {
        Self { name, exact: false }
    }
}

impl<'a> From<&'a String> for Topic<'a> {
    fn from(name: &'a String) -> Self {
        Self { name, exact: false }
    }
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
type Delivered = Result<(i32, i64, Option<i64>), KafkaError>;

/// Who waits for a message's delivery report: a sender, or nobody (fire and forget). Passed
/// to librdkafka as a pointer, null for nobody, so forgetting allocates nothing.
struct Pending(Option<Box<oneshot::Sender<Delivered>>>);

impl IntoOpaque for Pending {
    fn into_ptr(self) -> *mut c_void {
        self.0.map_or(std::ptr::null_mut(), |sender| Box::into_raw(sender).cast())
    }

    unsafe fn from_ptr(ptr: *mut c_void) -> Self {
        // SAFETY: the pointer comes from `into_ptr`: null, or a box librdkafka hands back once.
        Pending((!ptr.is_null()).then(|| unsafe { Box::from_raw(ptr.cast()) }))
    }
}

struct SharedContext {
    stats: Arc<Stats>,
    /// Tasks waiting for room in a full queue, woken as deliveries free it.
    room: Notify,
    waiting: AtomicUsize,
}

impl ClientContext for SharedContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", "producer: {fac}: {message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", "producer: {fac}: {message}"),
            _ => tracing::debug!(target: "librdkafka", "producer: {fac}: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!("producer: {error}: {reason}");
    }
}

impl ProducerContext for SharedContext {
    type DeliveryOpaque = Pending;

    fn delivery(&self, result: &DeliveryResult<'_>, pending: Pending) {
        let outcome = match result {
            Ok(message) => {
                self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                Ok((message.partition(), message.offset(), message.timestamp().to_millis()))
            }
            Err((err, message)) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                if pending.0.is_none() {
                    self.stats.forgotten_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::error!("producer: a message to {} was not delivered: {err}", message.topic());
                }
                Err(err.clone())
            }
        };
        if let Some(sender) = pending.0 {
            let _ = sender.send(outcome);
        }
        if self.waiting.load(Ordering::Relaxed) > 0 {
            self.room.notify_waiters();
        }
    }
}

impl Producer {
    fn new() -> Self {
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
        let brokers = setup.brokers.clone().or_else(|| self.read_defaults().brokers.clone());
        let Some(brokers) = brokers else {
            return Err(SendError::NotConfigured);
        };
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &brokers);
        for (key, value) in &setup.settings {
            config.set(key, value);
        }
        let context =
            SharedContext { stats: Arc::clone(&self.stats), room: Notify::new(), waiting: AtomicUsize::new(0) };
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

    fn read_defaults(&self) -> std::sync::RwLockReadGuard<'_, Defaults> {
        self.defaults.read().unwrap_or_else(|e| e.into_inner())
    }

    async fn client(&self) -> Result<&Client, SendError> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let settings = self.read_defaults().settings.clone();
        let mut setup = ProducerSetup::new();
        for (key, value) in settings {
            setup = setup.set(key, value);
        }
        self.setup(setup).await?;
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
        let Some(client) = self.client.get() else {
            return 0;
        };
        let failed_before = self.stats.failed.load(Ordering::Relaxed);
        let producer = Arc::clone(&client.inner);
        // Flushing blocks until the broker answers: keep it off the async threads.
        let flushed = tokio::task::spawn_blocking(move || {
            if flush_now(&producer, timeout) {
                return true;
            }
            let left = producer.in_flight_count();
            tracing::error!(
                "producer: {left} messages were not delivered within {} ms; giving up on them",
                timeout.as_millis()
            );
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

    /// True once the client exists.
    pub fn is_set_up(&self) -> bool {
        self.client.get().is_some()
    }
}

enum Payload<'a, T: ?Sized> {
    /// Serialized by the producer's serializer.
    Value(&'a T),
    /// Sent as it is.
    Bytes(&'a [u8]),
}

/// A message being built. Send it with [`send`](Self::send) (waits for the delivery
/// report) or [`send_and_forget`](Self::send_and_forget) (returns once queued).
#[must_use = "a message is sent only by .send() or .send_and_forget()"]
pub struct OutgoingMessage<'a, T: ?Sized> {
    producer: &'a Producer,
    topic: Topic<'a>,
    payload: Payload<'a, T>,
    key: Option<&'a [u8]>,
    headers: Option<OwnedHeaders>,
    partition: Option<i32>,
}

impl<'a, T: Serialize + ?Sized> OutgoingMessage<'a, T> {
    fn new(producer: &'a Producer, topic: Topic<'a>, payload: Payload<'a, T>) -> Self {
        Self { producer, topic, payload, key: None, headers: None, partition: None }
    }

    pub fn key(mut self, key: &'a (impl AsRef<[u8]> + ?Sized)) -> Self {
        self.key = Some(key.as_ref());
        self
    }

    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        let headers = self.headers.take().unwrap_or_default();
        self.headers = Some(headers.insert(Header { key: name, value: Some(value.as_ref()) }));
        self
    }

    /// An explicit partition instead of the partitioner's choice.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Sends and waits for the delivery report.
    pub async fn send(self) -> Result<DeliveryReport, SendError> {
        let (sender, receiver) = oneshot::channel();
        let topic = self.enqueue(Pending(Some(Box::new(sender)))).await?.into_owned();
        match receiver.await {
            Ok(Ok((partition, offset, timestamp))) => Ok(DeliveryReport { topic, partition, offset, timestamp }),
            Ok(Err(err)) => Err(SendError::Kafka(err)),
            Err(_) => Err(SendError::Kafka(KafkaError::Canceled)),
        }
    }

    /// Queues the message and returns. A failed delivery is logged and counted in
    /// [`Producer::stats`]; [`Producer::flush`] waits for it.
    pub async fn send_and_forget(self) -> Result<(), SendError> {
        self.enqueue(Pending(None)).await.map(drop)
    }

    /// Hands the message to librdkafka, waiting for room while its queue is full. Returns
    /// the full topic name. The common path (client ready, room in the queue) never
    /// suspends; the rare ones live in their own boxed futures, so this one stays small.
    async fn enqueue(self, pending: Pending) -> Result<Cow<'a, str>, SendError> {
        let client = match self.producer.client.get() {
            Some(client) => client,
            None => Box::pin(self.producer.client()).await?,
        };
        let mut record = self.prepare(client)?;
        match record.try_send(client, pending) {
            Ok(()) => {}
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), pending)) => {
                Box::pin(wait_for_room(client, &mut record, pending)).await?
            }
            Err((err, _)) => return Err(SendError::Kafka(err)),
        }
        Ok(record.topic)
    }

    /// The topic with its prefix and the serialized payload.
    fn prepare(self, client: &Client) -> Result<Prepared<'a>, SendError> {
        let name = self.topic.name;
        let topic = match (self.topic.exact, &client.topic_prefix) {
            (true, _) => Cow::Borrowed(name),
            (false, Some(prefix)) => prefixed(prefix, name),
            (false, None) => prefixed(&self.producer.read_defaults().topic_prefix, name),
        };
        let payload = match self.payload {
            Payload::Bytes(bytes) => Cow::Borrowed(bytes),
            Payload::Value(value) => {
                Cow::Owned(client.serializer.serialize(value).map_err(|err| SendError::Serialize(err.to_string()))?)
            }
        };
        Ok(Prepared { topic, payload, key: self.key, partition: self.partition, headers: self.headers })
    }
}

/// A message ready for librdkafka, kept whole while it waits for room in a full queue.
struct Prepared<'a> {
    topic: Cow<'a, str>,
    payload: Cow<'a, [u8]>,
    key: Option<&'a [u8]>,
    partition: Option<i32>,
    headers: Option<OwnedHeaders>,
}

impl Prepared<'_> {
    /// One attempt. On failure, the headers stay here and the pending report comes back.
    fn try_send(&mut self, client: &Client, pending: Pending) -> Result<(), (KafkaError, Pending)> {
        let mut record = BaseRecord::with_opaque_to(&self.topic, pending).payload(&*self.payload);
        record.key = self.key;
        record.partition = self.partition;
        record.headers = self.headers.take();
        client.inner.send(record).map_err(|(err, record)| {
            self.headers = record.headers;
            (err, record.delivery_opaque)
        })
    }
}

/// librdkafka's own flush: it returns as soon as the last delivery report has been served by
/// the client's polling thread. (rdkafka's `Producer::flush` polls in 100 ms steps, and with
/// a `ThreadedProducer` the last report usually goes to the other poller, so every flush
/// took up to 100 ms more than needed.) True when everything was delivered or failed.
fn flush_now(producer: &ThreadedProducer<SharedContext>, timeout: Duration) -> bool {
    let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: the pointer is the live client's; rd_kafka_flush is safe to call from any thread.
    let code = unsafe { rdkafka_sys::rd_kafka_flush(producer.client().native_ptr(), millis) };
    code == rdkafka_sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
}

/// `prefix` + `name`, borrowing `name` when there is no prefix.
fn prefixed<'a>(prefix: &str, name: &'a str) -> Cow<'a, str> {
    if prefix.is_empty() {
        Cow::Borrowed(name)
    } else {
        let mut topic = String::with_capacity(prefix.len() + name.len());
        topic.push_str(prefix);
        topic.push_str(name);
        Cow::Owned(topic)
    }
}

/// Retries a message refused with a full queue, woken by deliveries, until the queue timeout.
async fn wait_for_room(client: &Client, record: &mut Prepared<'_>, mut pending: Pending) -> Result<(), SendError> {
    let context = client.inner.context();
    let started = Instant::now();
    // Counted before the retry, so a delivery landing in between still wakes us.
    context.waiting.fetch_add(1, Ordering::Relaxed);
    let outcome = loop {
        let left = client.queue_timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            break Err(SendError::QueueFull(client.queue_timeout));
        }
        // Created before the attempt: a delivery between the attempt and the wait wakes it.
        let room = context.room.notified();
        match record.try_send(client, pending) {
            Ok(()) => break Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                pending = returned;
                // Deliveries wake us; the short sleep is a backstop, never the pacing.
                let _ = tokio::time::timeout(left.min(Duration::from_millis(100)), room).await;
            }
            Err((err, _)) => break Err(SendError::Kafka(err)),
        }
    };
    context.waiting.fetch_sub(1, Ordering::Relaxed);
    outcome
}
