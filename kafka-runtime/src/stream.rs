//! [`TopicStream`]: the messages of one consumer, in order, with their offsets stored as the
//! worker moves on.

use std::collections::VecDeque;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::StreamExt as _;
use rdkafka::consumer::Consumer as _;
use rdkafka::consumer::MessageStream;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka_sys as rdsys;
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::consumer::{OffsetStore, PartitionQueue, Receipt, WorkerConsumer, WorkerConsumerContext};
use crate::message::{Message, NativeMessage};
use crate::shutdown::Shutdown;

/// The stream a worker reads its messages from.
///
/// Offsets follow at-least-once delivery: the offset of a message is stored (and then
/// committed in the background, on rebalance and at shutdown) only when the worker asks for
/// the next message or calls [`ack`](Self::ack). A message the worker was still holding when
/// it failed or the process died is delivered again.
///
/// [`next`](Self::next) returns `None` once the process is shutting down: finish the current
/// message, then return from the worker.
pub struct TopicStream {
    // Field order matters: the buffered messages, the store's topic handles, the shared
    // queue's handle and the message stream belong to the consumer, so they are dropped
    // before it.
    /// Messages taken in a batch from the partition queues, handed out one at a time.
    buffered: VecDeque<NativeMessage>,
    /// Where the next batch starts, so that no partition waits behind the others.
    next_partition: usize,
    /// Scratch for `refill`: where each queue's share sits in the batch (first, taken, full).
    runs: Vec<(usize, usize, bool)>,
    offsets: OffsetStore,
    pending: Option<Receipt>,
    /// The consumer's shared queue (rebalances, errors), to see cheaply whether it has events.
    shared_queue: SharedQueue,
    /// Polls the shared queue through rdkafka, which runs the rebalance callbacks. Kept
    /// across messages: `StreamConsumer::recv` would register a waker slot every time.
    messages: MessageStream<'static, WorkerConsumerContext>,
    consumer: Arc<WorkerConsumer>,
    shutdown: Shutdown,
    /// Registered once and kept, so waiting costs nothing per message.
    stopping: Pin<Box<WaitForCancellationFutureOwned>>,
    failure: Arc<Mutex<Option<String>>>,
    label: Arc<str>,
}

/// How many messages one batch takes from the partition queues at most. Rebalance events are
/// still seen before every message (see `poll_receive`).
const BATCH: usize = 1024;

/// Moves up to `into.len()` queued messages of `queue` into `into`, without waiting; returns
/// how many. The caller owns them from then on.
fn take_from(queue: &PartitionQueue, into: &mut [*mut rdsys::rd_kafka_message_t]) -> usize {
    // SAFETY: a live queue; librdkafka fills at most `into.len()` slots and waits for nothing
    // (timeout 0).
    let taken = unsafe { rdsys::rd_kafka_consume_batch_queue(queue.native, 0, into.as_mut_ptr(), into.len()) };
    usize::try_from(taken).unwrap_or(0)
}

/// An owned handle to the consumer's shared queue (null if librdkafka gave none: a consumer
/// without a group, which the runtime never creates).
struct SharedQueue(*mut rdsys::rd_kafka_queue_t);

// SAFETY: librdkafka queues are thread-safe; the handle is owned and destroyed once.
unsafe impl Send for SharedQueue {}
unsafe impl Sync for SharedQueue {}

impl SharedQueue {
    fn has_events(&self) -> bool {
        // SAFETY: a live handle when not null.
        !self.0.is_null() && unsafe { rdsys::rd_kafka_queue_length(self.0) > 0 }
    }
}

impl Drop for SharedQueue {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: from `rd_kafka_queue_get_consumer`, destroyed once.
            unsafe { rdsys::rd_kafka_queue_destroy(self.0) }
        }
    }
}

/// Where the worker stands, for error messages.
pub(crate) struct Position {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "topic {}, partition {}, offset {}", self.topic, self.partition, self.offset)
    }
}

impl TopicStream {
    pub(crate) fn new(
        consumer: Arc<WorkerConsumer>,
        shutdown: Shutdown,
        failure: Arc<Mutex<Option<String>>>,
        label: Arc<str>,
    ) -> Self {
        let stopping = Box::pin(shutdown.drain_token().cancelled_owned());
        // SAFETY: the stream borrows the consumer only to keep it alive; this struct holds
        // the consumer's `Arc` and drops the stream first (fields drop in declaration order).
        let messages = unsafe {
            std::mem::transmute::<MessageStream<'_, WorkerConsumerContext>, MessageStream<'static, WorkerConsumerContext>>(
                consumer.stream(),
            )
        };
        // SAFETY: a live client; the handle is destroyed before the consumer (field order).
        let shared_queue = SharedQueue(unsafe { rdsys::rd_kafka_queue_get_consumer(consumer.client().native_ptr()) });
        Self {
            buffered: VecDeque::with_capacity(BATCH),
            next_partition: 0,
            runs: Vec::new(),
            offsets: OffsetStore::new(),
            pending: None,
            shared_queue,
            messages,
            consumer,
            shutdown,
            stopping,
            failure,
            label,
        }
    }

    /// Stores the offset of the previous message, then waits for the next one. `None` means
    /// the process is shutting down, or the consumer hit an error it cannot recover from.
    pub async fn next(&mut self) -> Option<Message> {
        self.ack();
        std::future::poll_fn(|cx| self.poll_receive(cx)).await
    }

    /// A buffered message is handed out at once, unless the shared queue has events: those
    /// (a rebalance above all) are served first, as a per-message poll would. An empty buffer
    /// is refilled from the partition queues; the shutdown future is polled only when there
    /// is nothing to hand out.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        loop {
            if self.shutdown.is_begun() {
                return Poll::Ready(None);
            }
            if self.buffered.is_empty() || self.shared_queue.has_events() {
                // Registered before looking, so a message arriving in between wakes us.
                self.consumer.context().partitions.waker.register(cx.waker());
                match self.messages.poll_next_unpin(cx) {
                    // A partition whose queue could not be split off.
                    Poll::Ready(Some(Ok(raw))) => {
                        // SAFETY: the message is live while `raw` is.
                        self.pending = Some(self.offsets.receipt(&self.consumer, unsafe { &*raw.ptr() }));
                        return Poll::Ready(Some(Message::polled(raw, Arc::clone(&self.consumer))));
                    }
                    Poll::Ready(Some(Err(KafkaError::MessageConsumptionFatal(code)))) => {
                        let reason = format!("the consumer hit a fatal error: {code}");
                        tracing::error!(worker = &*self.label, "{reason}");
                        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
                        return Poll::Ready(None);
                    }
                    Poll::Ready(Some(Err(err))) => {
                        self.report(err);
                        continue;
                    }
                    // rdkafka's message stream never ends; `None` would only mean there is nothing more.
                    Poll::Ready(None) => return Poll::Ready(None),
                    Poll::Pending => {}
                }
                self.forget_revoked();
                if self.buffered.is_empty() && !self.refill() {
                    return match self.stopping.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(None),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
            let Some(raw) = self.buffered.pop_front() else { continue };
            let fields = raw.fields();
            if fields.err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                self.report_partition_error(&raw);
                continue;
            }
            self.pending = Some(self.offsets.receipt(&self.consumer, fields));
            return Poll::Ready(Some(Message::native(raw, Arc::clone(&self.consumer))));
        }
    }

    /// Takes up to [`BATCH`] messages from the partition queues, each queue's in order. Every
    /// partition gets an equal share first, handed out interleaved (one message of each in
    /// turn), so that none waits behind another's backlog; what is left of the batch goes to
    /// whoever has more. The first partition changes every time. False if every queue was
    /// empty.
    fn refill(&mut self) -> bool {
        let assigned = self.consumer.context().partitions.lock();
        let queues = &assigned.queues;
        if queues.is_empty() {
            return false;
        }
        let mut batch = [std::ptr::null_mut::<rdsys::rd_kafka_message_t>(); BATCH];
        let start = self.next_partition % queues.len();
        self.next_partition = start + 1;
        let share = (BATCH / queues.len()).max(1);
        let rotation = || queues[start..].iter().chain(&queues[..start]);
        // First pass: each queue's share lands in its own run of `batch`.
        self.runs.clear();
        let mut used = 0;
        for queue in rotation() {
            let room = share.min(BATCH - used);
            if room == 0 {
                break;
            }
            let taken = take_from(queue, &mut batch[used..used + room]);
            self.runs.push((used, taken, taken == room));
            used += taken;
        }
        let longest = self.runs.iter().map(|&(_, taken, _)| taken).max().unwrap_or(0);
        for index in 0..longest {
            for &(first, taken, _) in &self.runs {
                if index < taken {
                    // SAFETY: each message is owned by us from here on.
                    self.buffered.extend(unsafe { NativeMessage::from_ptr(batch[first + index]) });
                }
            }
        }
        // Second pass: the rest of the batch to the queues that filled their share.
        if queues.len() > 1 && self.runs.iter().any(|&(_, _, full)| full) {
            for queue in rotation() {
                let room = BATCH - self.buffered.len();
                if room == 0 {
                    break;
                }
                let taken = take_from(queue, &mut batch[..room]);
                for &message in &batch[..taken] {
                    // SAFETY: each message is owned by us from here on.
                    self.buffered.extend(unsafe { NativeMessage::from_ptr(message) });
                }
            }
        }
        !self.buffered.is_empty()
    }

    /// After a rebalance took partitions away, drops what was buffered of them: whoever owns
    /// them now (this worker too, if they came back) reads them again from the last commit.
    /// The other partitions' buffered messages stay: librdkafka has moved past them.
    fn forget_revoked(&mut self) {
        let Some(revoked) = self.consumer.context().partitions.take_revoked() else { return };
        self.buffered.retain(|message| {
            let fields = message.fields();
            // SAFETY: the message, and so its topic handle, is live.
            let topic = unsafe { crate::message::topic_name(fields.rkt) };
            !revoked.iter().any(|(t, p)| *p == fields.partition && t == topic)
        });
    }

    /// Marks the last message returned by [`next`](Self::next) as done now, instead of when
    /// the next one is asked for. Call it before returning from a worker that stops on its
    /// own, or its last message is delivered again.
    pub fn ack(&mut self) {
        if let Some(receipt) = self.pending.take() {
            if let Err(code) = self.offsets.store(&receipt) {
                // The partition was revoked while the message was handled: its new owner
                // reads it again, which at-least-once allows.
                tracing::warn!(
                    worker = &*self.label,
                    "offset not stored for {}: {code}; the message will be delivered again",
                    self.position_of(&receipt)
                );
            }
        }
    }

    /// True once shutdown has begun; `next` then returns `None`.
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_begun()
    }

    /// The message handed out last and not yet acknowledged.
    pub(crate) fn pending_position(&self) -> Option<Position> {
        self.pending.as_ref().map(|receipt| self.position_of(receipt))
    }

    fn position_of(&self, receipt: &Receipt) -> Position {
        Position { topic: self.offsets.topic(receipt).to_owned(), partition: receipt.partition, offset: receipt.offset }
    }

    fn report_partition_error(&self, message: &NativeMessage) {
        let fields = message.fields();
        let code: RDKafkaErrorCode = fields.err.into();
        // SAFETY: the message, and so its topic handle, is live.
        let topic = unsafe { crate::message::topic_name(fields.rkt) };
        match code {
            RDKafkaErrorCode::PartitionEOF => {}
            RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => tracing::warn!(
                worker = &*self.label,
                "{topic} partition {}: {code}; the worker waits for the topic to be created",
                fields.partition
            ),
            _ => tracing::warn!(
                worker = &*self.label,
                "consumer error on {topic} partition {}: {code}",
                fields.partition
            ),
        }
    }

    fn report(&self, err: KafkaError) {
        let label = &*self.label;
        match err.rdkafka_error_code() {
            Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
                tracing::warn!(worker = label, "{err}; the worker waits for the topic to be created")
            }
            _ => tracing::warn!(worker = label, "consumer error: {err}"),
        }
    }
}

impl Drop for TopicStream {
    fn drop(&mut self) {
        // Nobody reads the partition queues any more: they go now, before the client.
        self.consumer.context().partitions.close();
    }
}
