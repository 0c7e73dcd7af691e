//! A message on its way out: where it goes ([`Topic`]), how it is built
//! ([`OutgoingMessage`]), and how it waits for room when librdkafka's queue is full.

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _};
use serde::Serialize;
use tokio::sync::oneshot;

use super::producer::{Client, DeliveryReport, DeliveryWaiter, Producer, SendError, SharedContext};

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

pub(super) enum Payload<'a, T: ?Sized> {
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
    pub(super) fn new(producer: &'a Producer, topic: Topic<'a>, payload: Payload<'a, T>) -> Self {
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
        let topic = self.enqueue(DeliveryWaiter(Some(Box::new(sender)))).await?.into_owned();
        match receiver.await {
            Ok(Ok((partition, offset, timestamp))) => Ok(DeliveryReport { topic, partition, offset, timestamp }),
            Ok(Err(err)) => Err(SendError::Kafka(err)),
            Err(_) => Err(SendError::Kafka(KafkaError::Canceled)),
        }
    }

    /// Queues the message and returns. A failed delivery is logged and counted in
    /// [`Producer::stats`]; [`Producer::flush`] waits for it.
    pub async fn send_and_forget(self) -> Result<(), SendError> {
        self.enqueue(DeliveryWaiter(None)).await.map(drop)
    }

    /// Hands the message to librdkafka, waiting for room while its queue is full. Returns
    /// the full topic name. The common path (client ready, room in the queue) never
    /// suspends; the rare ones live in their own boxed futures, so this one stays small.
    async fn enqueue(self, waiter: DeliveryWaiter) -> Result<Cow<'a, str>, SendError> {
        let client = match self.producer.client.get() {
            Some(client) => client,
            None => Box::pin(self.producer.client()).await?,
        };
        let mut record = self.prepare(client)?;
        match record.try_send(client, waiter) {
            Ok(()) => {}
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), waiter)) => {
                Box::pin(wait_for_room(client, &mut record, waiter)).await?
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
    /// One attempt. On failure, the headers stay here and the delivery waiter comes back.
    fn try_send(&mut self, client: &Client, waiter: DeliveryWaiter) -> Result<(), (KafkaError, DeliveryWaiter)> {
        let mut record = BaseRecord::with_opaque_to(&self.topic, waiter).payload(&*self.payload);
        record.key = self.key;
        record.partition = self.partition;
        record.headers = self.headers.take();
        client.inner.send(record).map_err(|(err, record)| {
            self.headers = record.headers;
            (err, record.delivery_opaque)
        })
    }
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
async fn wait_for_room(
    client: &Client,
    record: &mut Prepared<'_>,
    mut waiter: DeliveryWaiter,
) -> Result<(), SendError> {
    let context = client.inner.context();
    let started = Instant::now();
    // Counted before the retry, so a delivery landing in between still wakes us; uncounted
    // when this future ends, even when it is dropped unfinished (a cancelled `send`).
    let _waiting = Waiting::count(context);
    loop {
        let left = client.queue_timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(SendError::QueueFull(client.queue_timeout));
        }
        // Created before the attempt: a delivery between the attempt and the wait wakes it.
        let room = context.room.notified();
        match record.try_send(client, waiter) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                waiter = returned;
                // Deliveries wake us; the short sleep is a backstop, never the pacing.
                let _ = tokio::time::timeout(left.min(Duration::from_millis(100)), room).await;
            }
            Err((err, _)) => return Err(SendError::Kafka(err)),
        }
    }
}

/// One task counted as waiting for room, for as long as this lives.
struct Waiting<'a>(&'a SharedContext);

impl<'a> Waiting<'a> {
    fn count(context: &'a SharedContext) -> Self {
        context.waiting.fetch_add(1, Ordering::Relaxed);
        Self(context)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::produce::producer::ProducerSetup;

    /// A `send` dropped while it waits for room (inside `timeout` or `select!`) must not stay
    /// counted as waiting: every delivery would then wake nobody, forever.
    #[tokio::test]
    async fn a_cancelled_send_stops_waiting_for_room() {
        let producer = Producer::new();
        // Nothing listens there, so the one-message queue stays full.
        let setup = ProducerSetup::new()
            .brokers("127.0.0.1:1")
            .set("queue.buffering.max.messages", "1")
            .set("message.timeout.ms", "60000")
            .queue_timeout(Duration::from_secs(30));
        producer.setup(setup).await.expect("a client");
        producer.message_bytes("t", b"first").send_and_forget().await.expect("room for one");
        for _ in 0..5 {
            let send = producer.message_bytes("t", b"more").send();
            assert!(tokio::time::timeout(Duration::from_millis(20), send).await.is_err(), "the queue is full");
        }
        let waiting = producer.client.get().expect("set up").inner.context().waiting.load(Ordering::Relaxed);
        assert_eq!(waiting, 0, "cancelled sends are still counted as waiting for room");
    }
}
