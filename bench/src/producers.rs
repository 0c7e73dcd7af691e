//! The producers under test: kafka-runtime's shared producer (`kafka_runtime::producer()`),
//! awaited and batched, against raw rdkafka `FutureProducer` and `BaseProducer` clients with
//! the same librdkafka settings.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use kafka_runtime::{producer, ProducerSetup};
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::ProducerContext;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, FutureProducer, FutureRecord, Producer as _};
use rdkafka::ClientConfig;

use crate::probe;

/// librdkafka settings of every producer here, the shared one and the raw ones alike, set
/// explicitly on each: librdkafka's own defaults, written out. `linger.ms=5` is librdkafka's
/// default since 2.0; the queue limits (100,000 messages, 1 GiB) are what the batched
/// variants push against.
pub const PRODUCER_SETTINGS: &[(&str, &str)] = &[
    ("linger.ms", "5"),
    ("queue.buffering.max.messages", "100000"),
    ("queue.buffering.max.kbytes", "1048576"),
    ("batch.num.messages", "10000"),
    ("batch.size", "1000000"),
    ("compression.type", "none"),
    ("acks", "-1"),
    ("enable.idempotence", "false"),
];

/// How long a queued message may wait for room, and a flush for everything.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(30);
const FLUSH_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PVariant {
    /// (p-a) `producer().message_bytes(&topic, &payload).send()`, a bounded window in flight.
    FrameworkAwait,
    /// (p-raw-a) `FutureProducer::send(FutureRecord::to(..).payload(..), 30 s)`, same window.
    RawFuture,
    /// (p-b) `send_and_forget()` for every message, then `producer().flush(..)`.
    FrameworkBatch,
    /// (p-raw-b) `BaseProducer::send` in a loop, `poll` on QueueFull and every 1,000, `flush`.
    RawBase,
}

impl PVariant {
    /// In the order every round runs them.
    pub const ALL: [PVariant; 4] =
        [PVariant::FrameworkAwait, PVariant::RawFuture, PVariant::FrameworkBatch, PVariant::RawBase];

    pub fn key(self) -> &'static str {
        match self {
            PVariant::FrameworkAwait => "framework_send_awaited",
            PVariant::RawFuture => "raw_future_producer",
            PVariant::FrameworkBatch => "framework_send_and_forget_flush",
            PVariant::RawBase => "raw_base_producer",
        }
    }

    pub fn parse(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.key() == key)
    }

    pub fn label(self) -> &'static str {
        match self {
            PVariant::FrameworkAwait => "(p-a) framework .send() awaited",
            PVariant::RawFuture => "(p-raw-a) raw FutureProducer::send",
            PVariant::FrameworkBatch => "(p-b) framework send_and_forget+flush",
            PVariant::RawBase => "(p-raw-b) raw BaseProducer+flush",
        }
    }

    /// The raw variant a framework variant is compared with.
    pub fn baseline(self) -> Option<PVariant> {
        match self {
            PVariant::FrameworkAwait => Some(PVariant::RawFuture),
            PVariant::FrameworkBatch => Some(PVariant::RawBase),
            PVariant::RawFuture | PVariant::RawBase => None,
        }
    }
}

/// One producer run: `messages` sent into a fresh topic, first send -> last delivery.
#[derive(Clone, Copy, Debug)]
pub struct PRun {
    pub round: usize,
    pub messages: u64,
    pub size: usize,
    pub seconds: f64,
    /// First send -> the last message handed to librdkafka (the rest is waiting for the
    /// broker's acknowledgements, and for p-b/p-raw-b the flush).
    pub queued_seconds: f64,
    /// Rust heap allocations (the counting allocator, all threads) per message.
    pub allocs_per_msg: f64,
}

impl PRun {
    pub fn msgs_per_sec(&self) -> f64 {
        self.messages as f64 / self.seconds
    }
    pub fn mb_per_sec(&self) -> f64 {
        self.messages as f64 * self.size as f64 / 1e6 / self.seconds
    }
    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({"round": self.round, "messages": self.messages, "seconds": self.seconds, "queued_seconds": self.queued_seconds,
            "msgs_per_sec": self.msgs_per_sec(), "mb_per_sec": self.mb_per_sec(),
            "allocs_per_msg": self.allocs_per_msg})
    }
}

/// Everything the producer part measured.
pub struct ProducerResults {
    pub rounds: usize,
    pub window: usize,
    /// Messages per run, per payload size.
    pub messages: std::collections::BTreeMap<usize, u64>,
    pub runs: std::collections::BTreeMap<(usize, PVariant), Vec<PRun>>,
    /// `producer().stats()` at the end: one client, every message delivered.
    pub shared_stats: serde_json::Value,
}

/// Counts the raw `BaseProducer`'s delivery reports.
#[derive(Default)]
pub struct Counting {
    ok: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err((err, _)) => {
                self.first_error.lock().unwrap().get_or_insert_with(|| err.to_string());
                self.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// The clients, created once per process and reused by every run, as an app would.
pub struct Clients {
    future: FutureProducer,
    base: Arc<BaseProducer<Counting>>,
}

impl Clients {
    /// Sets up the shared producer and creates the raw ones, all with [`PRODUCER_SETTINGS`].
    pub async fn new(brokers: &str) -> Result<Self, String> {
        if producer().is_set_up() {
            return Err("the shared producer was already set up by someone else: its settings are unknown".into());
        }
        let mut setup = ProducerSetup::new().brokers(brokers).queue_timeout(QUEUE_TIMEOUT);
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", brokers);
        for (key, value) in PRODUCER_SETTINGS {
            setup = setup.set(*key, *value);
            config.set(*key, *value);
        }
        producer().setup(setup).await.map_err(|e| format!("shared producer: {e}"))?;
        let future: FutureProducer = config.create().map_err(|e| format!("raw FutureProducer: {e}"))?;
        let base: BaseProducer<Counting> =
            config.create_with_context(Counting::default()).map_err(|e| format!("raw BaseProducer: {e}"))?;
        Ok(Self { future, base: Arc::new(base) })
    }
}

/// Runs one variant: `messages` of `size` bytes into `topic` (already created). Returns the
/// run, timed from the first send to the last delivery report.
pub async fn run(
    variant: PVariant,
    clients: &Clients,
    topic: &str,
    messages: u64,
    size: usize,
    window: usize,
    round: usize,
) -> Result<PRun, String> {
    let payload = vec![b'x'; size];
    let timed = match variant {
        PVariant::FrameworkAwait => framework_awaited(topic, &payload, messages, window).await?,
        PVariant::RawFuture => raw_future(&clients.future, topic, &payload, messages, window).await?,
        PVariant::FrameworkBatch => framework_batch(topic, &payload, messages).await?,
        PVariant::RawBase => {
            let (base, topic) = (Arc::clone(&clients.base), topic.to_owned());
            tokio::task::spawn_blocking(move || raw_base(&base, &topic, &payload, messages))
                .await
                .map_err(|e| e.to_string())??
        }
    };
    Ok(PRun {
        round,
        messages,
        size,
        seconds: timed.seconds,
        queued_seconds: timed.queued,
        allocs_per_msg: timed.allocs as f64 / messages as f64,
    })
}

/// What one run measured: seconds to the last delivery and to the last message queued,
/// and the allocations made from the first send to the end (not the window's set-up).
struct Timed {
    seconds: f64,
    queued: f64,
    allocs: u64,
}

/// (p-a): `.send()` awaited, `window` in flight at once.
async fn framework_awaited(topic: &str, payload: &[u8], messages: u64, window: usize) -> Result<Timed, String> {
    let topic_name = topic.to_owned();
    let topic = &topic_name;
    let mut first = true;
    let check = |result: Result<kafka_runtime::DeliveryReport, kafka_runtime::SendError>| {
        let report = result.map_err(|err| format!("framework send: {err}"))?;
        // Checked once: the topic is not prefixed, so the right topic is measured.
        if std::mem::take(&mut first) && report.topic != *topic {
            return Err(format!("delivered to {}, not {topic}", report.topic));
        }
        Ok(())
    };
    awaited("framework awaited", messages, window, || producer().message_bytes(topic, payload).send(), check).await
}

/// (p-raw-a): `FutureProducer::send`, awaited, the same window.
async fn raw_future(
    producer: &FutureProducer,
    topic: &str,
    payload: &[u8],
    messages: u64,
    window: usize,
) -> Result<Timed, String> {
    let send = || producer.send(FutureRecord::<(), [u8]>::to(topic).payload(payload), QUEUE_TIMEOUT);
    let check = |result: rdkafka::producer::future_producer::OwnedDeliveryResult| {
        result.map(drop).map_err(|(err, _)| format!("raw FutureProducer send: {err}"))
    };
    awaited("raw FutureProducer", messages, window, send, check).await
}

/// Sends `messages` with `send`, `window` awaited at once, and checks every delivery.
async fn awaited<F: Future>(
    name: &str,
    messages: u64,
    window: usize,
    mut send: impl FnMut() -> F,
    mut check: impl FnMut(F::Output) -> Result<(), String>,
) -> Result<Timed, String> {
    let mut in_flight = Window::new(window);
    let (mut sent, mut done, mut queued) = (0u64, 0u64, 0.0);
    let allocs = probe::allocations();
    let started = Instant::now();
    while sent < messages || in_flight.len() > 0 {
        while sent < messages && in_flight.len() < window {
            sent += 1;
            if let Some(result) = in_flight.push(send()) {
                check(result)?;
                done += 1;
            }
            if sent == messages {
                queued = started.elapsed().as_secs_f64();
            }
        }
        if let Some(result) = in_flight.next().await {
            check(result)?;
            done += 1;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if done != messages {
        return Err(format!("{name}: {done} of {messages} delivered"));
    }
    Ok(Timed { seconds, queued, allocs: probe::allocations() - allocs })
}

/// (p-b): `send_and_forget()` every message, then `flush`.
async fn framework_batch(topic: &str, payload: &[u8], messages: u64) -> Result<Timed, String> {
    let topic = &topic.to_owned();
    let before = producer().stats();
    let allocs = probe::allocations();
    let started = Instant::now();
    for _ in 0..messages {
        producer()
            .message_bytes(topic, payload)
            .send_and_forget()
            .await
            .map_err(|e| format!("send_and_forget: {e}"))?;
    }
    let queued = started.elapsed().as_secs_f64();
    let failed = producer().flush(FLUSH_TIMEOUT).await;
    let seconds = started.elapsed().as_secs_f64();
    let after = producer().stats();
    let delivered = after.delivered - before.delivered;
    if failed != 0 || delivered != messages {
        return Err(format!("framework send_and_forget: {delivered} of {messages} delivered, {failed} failed"));
    }
    Ok(Timed { seconds, queued, allocs: probe::allocations() - allocs })
}

/// (p-raw-b): `BaseProducer::send` in a loop, `poll(1 ms)` and retry on QueueFull, `poll(0)`
/// every 1,000 messages, then `flush`. Blocking: runs on a blocking thread.
fn raw_base(producer: &BaseProducer<Counting>, topic: &str, payload: &[u8], messages: u64) -> Result<Timed, String> {
    let context = producer.context();
    let (ok_before, failed_before) = (context.ok.load(Ordering::Relaxed), context.failed.load(Ordering::Relaxed));
    let allocs = probe::allocations();
    let started = Instant::now();
    for i in 0..messages {
        let mut record = BaseRecord::<(), [u8], ()>::to(topic).payload(payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(1));
                }
                Err((err, _)) => return Err(format!("raw BaseProducer send: {err}")),
            }
        }
        if i % 1000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    let queued = started.elapsed().as_secs_f64();
    producer.flush(FLUSH_TIMEOUT).map_err(|e| format!("raw BaseProducer flush: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let ok = context.ok.load(Ordering::Relaxed) - ok_before;
    let failed = context.failed.load(Ordering::Relaxed) - failed_before;
    if ok != messages || failed != 0 {
        let first = context.first_error.lock().unwrap().clone().unwrap_or_default();
        return Err(format!("raw BaseProducer: {ok} of {messages} delivered, {failed} failed (first: {first})"));
    }
    Ok(Timed { seconds, queued, allocs: probe::allocations() - allocs })
}

/// A bounded set of futures polled by one task, like `futures::stream::FuturesUnordered`
/// but with fixed slots: no allocation per future, so the allocation counts above are the
/// producers' own. Each slot has its own waker, which queues the slot's index and wakes the
/// task. Like `FuturesUnordered`, it yields to the runtime after polling every future once
/// or when futures keep waking themselves (tokio's cooperative budget).
pub struct Window<F: Future> {
    /// Allocated once, never resized: a future stays at its address until it is dropped in
    /// place, which is what pinning needs.
    slots: Box<[Option<F>]>,
    wakers: Box<[Waker]>,
    free: Vec<usize>,
    ready: Vec<usize>,
    spare: Vec<usize>,
    shared: Arc<Shared>,
    len: usize,
}

struct Shared {
    queued: Box<[AtomicBool]>,
    inner: Mutex<Inner>,
}

struct Inner {
    ready: Vec<usize>,
    task: Option<Waker>,
}

struct SlotWaker {
    shared: Arc<Shared>,
    index: usize,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if self.shared.queued[self.index].swap(true, Ordering::AcqRel) {
            return;
        }
        let task = {
            let mut inner = self.shared.inner.lock().unwrap();
            inner.ready.push(self.index);
            inner.task.take()
        };
        if let Some(task) = task {
            task.wake();
        }
    }
}

impl<F: Future> Window<F> {
    pub fn new(capacity: usize) -> Self {
        let shared = Arc::new(Shared {
            queued: (0..capacity).map(|_| AtomicBool::new(false)).collect(),
            inner: Mutex::new(Inner { ready: Vec::with_capacity(capacity), task: None }),
        });
        Self {
            slots: (0..capacity).map(|_| None).collect(),
            wakers: (0..capacity)
                .map(|index| Waker::from(Arc::new(SlotWaker { shared: Arc::clone(&shared), index })))
                .collect(),
            free: (0..capacity).rev().collect(),
            ready: Vec::with_capacity(capacity),
            spare: Vec::with_capacity(capacity),
            shared,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Adds a future and polls it once; its output if it is already done.
    pub fn push(&mut self, future: F) -> Option<F::Output> {
        let index = self.free.pop().expect("push into a full window");
        self.slots[index] = Some(future);
        self.len += 1;
        match self.poll_slot(index) {
            Poll::Ready(output) => Some(output),
            Poll::Pending => None,
        }
    }

    /// The next output of any future; `None` when the window is empty.
    pub async fn next(&mut self) -> Option<F::Output> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    fn poll_slot(&mut self, index: usize) -> Poll<F::Output> {
        self.shared.queued[index].store(false, Ordering::Release);
        let slot = &mut self.slots[index];
        let Some(future) = slot.as_mut() else { return Poll::Pending };
        // SAFETY: `slots` is a boxed slice that is never resized or moved out of; the future
        // stays at this address until `*slot = None` drops it in place.
        let future = unsafe { Pin::new_unchecked(future) };
        match future.poll(&mut Context::from_waker(&self.wakers[index])) {
            Poll::Ready(output) => {
                *slot = None;
                self.free.push(index);
                self.len -= 1;
                Poll::Ready(output)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<F::Output>> {
        let (mut polled, mut woke_itself) = (0usize, 0usize);
        loop {
            while let Some(index) = self.ready.pop() {
                if let Poll::Ready(output) = self.poll_slot(index) {
                    return Poll::Ready(Some(output));
                }
                polled += 1;
                if self.shared.queued[index].load(Ordering::Acquire) {
                    woke_itself += 1;
                }
                if woke_itself >= 2 || polled >= self.len {
                    // Let the runtime run something else (and refill tokio's budget).
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
            if self.len == 0 {
                return Poll::Ready(None);
            }
            {
                let mut inner = self.shared.inner.lock().unwrap();
                if inner.ready.is_empty() {
                    if !inner.task.as_ref().is_some_and(|task| task.will_wake(cx.waker())) {
                        inner.task = Some(cx.waker().clone());
                    }
                    return Poll::Pending;
                }
                std::mem::swap(&mut inner.ready, &mut self.spare);
            }
            std::mem::swap(&mut self.ready, &mut self.spare);
        }
    }
}
