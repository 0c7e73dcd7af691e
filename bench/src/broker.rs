//! Topics and producing: the pre-produced backlogs (a fast raw `BaseProducer`) and the paced
//! producer of the latency test.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientConfig;

use crate::probe;

pub const PARTITIONS: i32 = 3;

pub async fn create_topic(brokers: &str, topic: &str) -> Result<(), String> {
    create_topic_with(brokers, topic, PARTITIONS).await
}

/// Creates a topic of `partitions` partitions.
pub async fn create_topic_with(brokers: &str, topic: &str, partitions: i32) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create().map_err(|e| format!("admin client: {e}"))?;
    let new = [NewTopic::new(topic, partitions, TopicReplication::Fixed(1))];
    let results = admin
        .create_topics(&new, &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))))
        .await
        .map_err(|e| format!("create topic {topic}: {e}"))?;
    for result in results {
        if let Err((topic, code)) = result {
            return Err(format!("cannot create topic {topic}: {code}"));
        }
    }
    Ok(())
}

/// Deletes a topic, best effort (Tansu's memory store keeps every message until then).
pub async fn delete_topic(brokers: &str, topic: &str) {
    let admin: Result<AdminClient<DefaultClientContext>, _> =
        ClientConfig::new().set("bootstrap.servers", brokers).create();
    let deleted = match admin {
        Ok(admin) => admin
            .delete_topics(&[topic], &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))))
            .await
            .map_err(|e| e.to_string())
            .and_then(|results| {
                results.into_iter().try_for_each(|r| r.map(drop).map_err(|(_, code)| code.to_string()))
            }),
        Err(err) => Err(err.to_string()),
    };
    if let Err(err) = deleted {
        crate::log(format!("could not delete topic {topic}: {err}"));
    }
}

/// Counts delivery reports.
#[derive(Default)]
pub struct Deliveries {
    ok: AtomicU64,
    failed: AtomicU64,
    /// Send -> delivery report, for messages sent with a send time as their opaque.
    acked_ns: std::sync::Mutex<Vec<u64>>,
}

pub struct CountingContext(Arc<Deliveries>);

impl ClientContext for CountingContext {}

impl ProducerContext for CountingContext {
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &DeliveryResult<'_>, sent_ns: usize) {
        match result {
            Ok(_) => self.0.ok.fetch_add(1, Relaxed),
            Err(_) => self.0.failed.fetch_add(1, Relaxed),
        };
        if sent_ns != 0 {
            let took = probe::now_ns().saturating_sub(sent_ns as u64);
            self.0.acked_ns.lock().unwrap().push(took);
        }
    }
}

fn producer(
    brokers: &str,
    settings: &[(&str, &str)],
) -> Result<(BaseProducer<CountingContext>, Arc<Deliveries>), String> {
    let deliveries = Arc::new(Deliveries::default());
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (key, value) in settings {
        config.set(*key, *value);
    }
    let producer =
        config.create_with_context(CountingContext(Arc::clone(&deliveries))).map_err(|e| format!("producer: {e}"))?;
    Ok((producer, deliveries))
}

fn send(
    producer: &BaseProducer<CountingContext>,
    topic: &str,
    partition: i32,
    payload: &[u8],
    sent_ns: usize,
) -> Result<(), String> {
    let mut record =
        BaseRecord::<(), [u8], usize>::with_opaque_to(topic, sent_ns).partition(partition).payload(payload);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(Duration::from_millis(5));
            }
            Err((err, _)) => return Err(format!("send: {err}")),
        }
    }
}

/// Produces `count` messages of `size` bytes, round-robin over the partitions, and waits for
/// every delivery report. Returns the seconds it took. Blocking: call from a blocking thread.
pub fn produce_backlog(brokers: &str, topic: &str, count: u64, size: usize) -> Result<f64, String> {
    let (producer, deliveries) = producer(
        brokers,
        &[
            // librdkafka's default batch limits (10,000 messages, 1 MB): batches larger than
            // the consumer's max.partition.fetch.bytes (1 MB) make it re-read them.
            ("linger.ms", "20"),
            ("queue.buffering.max.messages", "1000000"),
            ("queue.buffering.max.kbytes", "2097151"),
            ("compression.type", "none"),
        ],
    )?;
    let mut payload = vec![b'x'; size];
    let started = Instant::now();
    for i in 0..count {
        let stamp = i.to_le_bytes();
        let n = stamp.len().min(size);
        payload[..n].copy_from_slice(&stamp[..n]);
        send(&producer, topic, (i % PARTITIONS as u64) as i32, &payload, 0)?;
        if i % 4096 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(120)).map_err(|e| format!("flush: {e}"))?;
    let (ok, failed) = (deliveries.ok.load(Relaxed), deliveries.failed.load(Relaxed));
    if ok != count || failed != 0 {
        return Err(format!("backlog {topic}: {ok} of {count} delivered, {failed} failed"));
    }
    Ok(started.elapsed().as_secs_f64())
}

/// The latency producer: sends warm-up messages until a consumer has seen one (so the group
/// has joined), then `count` timed messages at `rate` per second, each stamped with
/// [`probe::now_ns`] at the moment it is handed to librdkafka. Blocking. Returns the
/// send -> delivery report times of the timed messages, in nanoseconds.
pub fn produce_paced(
    brokers: &str,
    topic: &str,
    rate: u64,
    count: u64,
    size: usize,
    linger_ms: u64,
) -> Result<Vec<u64>, String> {
    // linger.ms=0 sends 10,000 one-message requests a second, which Tansu acks ~1 s late.
    let linger = linger_ms.to_string();
    let (producer, deliveries) = producer(brokers, &[("linger.ms", &linger), ("compression.type", "none")])?;
    let mut payload = vec![b'x'; size.max(9)];
    let warm_deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0u64;
    while !probe::warm_seen() {
        if Instant::now() > warm_deadline {
            return Err("no consumer saw a warm-up message within 60 s".into());
        }
        payload[..8].copy_from_slice(&probe::now_ns().to_le_bytes());
        payload[8] = 0;
        send(&producer, topic, (i % PARTITIONS as u64) as i32, &payload, 0)?;
        i += 1;
        producer.poll(Duration::from_millis(20));
    }
    // Let the consumer catch up with the warm-up messages before timing.
    let settle = Instant::now() + Duration::from_millis(500);
    while Instant::now() < settle {
        producer.poll(Duration::from_millis(10));
    }
    // Every millisecond, send the messages that are due: no spinning, so the producer
    // leaves the (2) cores to the consumer and the broker.
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < count {
        let due = ((start.elapsed().as_nanos() as u64).saturating_mul(rate) / 1_000_000_000 + 1).min(count);
        while sent < due {
            let now = probe::now_ns();
            payload[..8].copy_from_slice(&now.to_le_bytes());
            payload[8] = 1;
            send(&producer, topic, (sent % PARTITIONS as u64) as i32, &payload, now.max(1) as usize)?;
            sent += 1;
        }
        producer.poll(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(1));
    }
    producer.flush(Duration::from_secs(30)).map_err(|e| format!("flush: {e}"))?;
    let acked = std::mem::take(&mut *deliveries.acked_ns.lock().unwrap());
    Ok(acked)
}
