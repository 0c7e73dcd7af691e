//! [`TopicStream`]: the messages of one consumer, in order, with their offsets stored as the
//! worker moves on.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::StreamExt as _;
use rdkafka::consumer::MessageStream;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::consumer::{OffsetStore, Receipt, WorkerConsumer, WorkerConsumerContext};
use crate::message::Message;
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
    // Field order matters: the store's topic handles and the message stream borrow from the
    // consumer, so they must be dropped before it.
    offsets: OffsetStore,
    pending: Option<Receipt>,
    /// Kept across messages: `StreamConsumer::recv` would register a waker slot (two lock
    /// round trips) for every message.
    messages: MessageStream<'static, WorkerConsumerContext>,
    consumer: Arc<WorkerConsumer>,
    shutdown: Shutdown,
    /// Registered once and kept, so waiting costs nothing per message.
    stopping: Pin<Box<WaitForCancellationFutureOwned>>,
    failure: Arc<Mutex<Option<String>>>,
    label: Arc<str>,
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
        Self { offsets: OffsetStore::new(), pending: None, messages, consumer, shutdown, stopping, failure, label }
    }

    /// Stores the offset of the previous message, then waits for the next one. `None` means
    /// the process is shutting down, or the consumer hit an error it cannot recover from.
    pub async fn next(&mut self) -> Option<Message> {
        self.ack();
        std::future::poll_fn(|cx| self.poll_receive(cx)).await
    }

    /// A waiting message comes first; the shutdown future is polled only when none is.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        loop {
            if self.shutdown.is_begun() {
                return Poll::Ready(None);
            }
            let received = match self.messages.poll_next_unpin(cx) {
                Poll::Ready(Some(received)) => received,
                // rdkafka's message stream never ends; `None` would only mean there is nothing more.
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => {
                    return match self.stopping.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(None),
                        Poll::Pending => Poll::Pending,
                    }
                }
            };
            match received {
                Ok(raw) => {
                    self.pending = Some(self.offsets.receipt(&self.consumer, &raw));
                    return Poll::Ready(Some(Message::new(raw, Arc::clone(&self.consumer))));
                }
                Err(KafkaError::MessageConsumptionFatal(code)) => {
                    let reason = format!("the consumer hit a fatal error: {code}");
                    tracing::error!(worker = &*self.label, "{reason}");
                    *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
                    return Poll::Ready(None);
                }
                Err(err) => self.report(err),
            }
        }
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
