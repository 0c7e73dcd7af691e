//! The consumers under test: the framework's two worker styles, run in-process through
//! `kafka_runtime::run_with_args`, and a plain rdkafka `StreamConsumer` loop with the same
//! client settings and the same at-least-once offset handling.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kafka_runtime::prelude::*;
use kafka_runtime::Shutdown;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::ClientConfig;

use crate::probe;

/// Librdkafka settings every Rust consumer gets. The framework gets the first two from its
/// own defaults, `session.timeout.ms` from the config file the benchmark writes, and
/// enforces `enable.auto.offset.store=false`; the raw loop sets all of them itself.
pub const CONSUMER_SETTINGS: &[(&str, &str)] = &[
    ("auto.offset.reset", "earliest"),
    ("fetch.queue.backoff.ms", "10"),
    ("session.timeout.ms", "6000"),
    ("enable.auto.offset.store", "false"),
    ("enable.auto.commit", "true"),
];

/// (a) The framework's per-message handler: reads the payload length.
#[kafka_worker(name = "bench_per_message")]
async fn per_message(msg: Message) -> Result<(), WorkerError> {
    probe::record(msg.payload());
    Ok(())
}

/// (b) The framework's stream worker: loops itself.
#[kafka_worker(name = "bench_stream")]
async fn stream(mut topic: TopicStream) -> Result<(), WorkerError> {
    while let Some(msg) = topic.next().await {
        probe::record(msg.payload());
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Variant {
    PerMessage,
    Stream,
    Raw,
    /// (f) librdkafka's batch API with no Rust layer and no consumer group: what any client
    /// could get out of this broker and machine. A reference point, not a competitor.
    Ceiling,
}

impl Variant {
    /// The variants measured everywhere: throughput, callgrind, RSS.
    pub const RUST: [Variant; 3] = [Variant::PerMessage, Variant::Stream, Variant::Raw];
    /// The variants of the throughput rounds.
    pub const THROUGHPUT: [Variant; 4] = [Variant::PerMessage, Variant::Stream, Variant::Raw, Variant::Ceiling];

    pub fn key(self) -> &'static str {
        match self {
            Variant::PerMessage => "framework_per_message",
            Variant::Stream => "framework_stream",
            Variant::Raw => "raw_rdkafka",
            Variant::Ceiling => "librdkafka_batch_ceiling",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::THROUGHPUT.into_iter().find(|v| v.key() == s)
    }
}

/// Writes the config file the framework variants start with; `extra` goes to both the
/// framework (through `consumer_connection_settings`) and the raw loop.
pub fn write_framework_config(path: &Path, extra: &[(&str, &str)]) -> std::io::Result<()> {
    let mut settings = serde_json::Map::new();
    settings.insert("session.timeout.ms".into(), 6000.into());
    for (key, value) in extra {
        settings.insert((*key).into(), (*value).into());
    }
    let json = serde_json::json!({ "kafka": { "consumer_connection_settings": settings } });
    std::fs::write(path, serde_json::to_vec_pretty(&json).unwrap())
}

pub struct Consume<'a> {
    pub brokers: &'a str,
    pub topic: &'a str,
    pub group: &'a str,
    pub config: &'a Path,
    /// Settings beyond [`CONSUMER_SETTINGS`], also in `config` for the framework.
    pub extra: &'a [(&'a str, &'a str)],
    /// Options added to the framework's `start-consumer` command line.
    pub worker_args: &'a [&'a str],
    /// How long the whole consume may take before it is reported as failed.
    pub timeout: Duration,
}

/// Runs `variant` until the probe reached its target, then stops it (commit and close).
pub async fn consume(variant: Variant, run: &Consume<'_>) -> Result<(), String> {
    match variant {
        Variant::PerMessage => framework("bench_per_message", run).await,
        Variant::Stream => framework("bench_stream", run).await,
        Variant::Raw => raw(run).await,
        Variant::Ceiling => ceiling(run).await,
    }
}

pub async fn framework(worker: &str, run: &Consume<'_>) -> Result<(), String> {
    let mut args = vec![
        "kafka-bench",
        "-c",
        run.config.to_str().ok_or("config path is not UTF-8")?,
        "--brokers",
        run.brokers,
        "start-consumer",
        "--consumer-worker",
        worker,
        "--topics",
        run.topic,
        "--consumer-group",
        run.group,
    ];
    args.extend(run.worker_args);
    let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
    let shutdown = Shutdown::new();
    let mut task = tokio::spawn(kafka_runtime::run_with_args(args, shutdown.clone()));
    let reached = tokio::select! {
        reached = probe::wait_done(run.timeout) => reached,
        ended = &mut task => {
            return Err(format!("{worker} ended before its messages were consumed: {:?}",
                ended.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| e.to_string()))))
        }
    };
    shutdown.begin();
    let ended = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .map_err(|_| format!("{worker} did not stop within 60 s"))?
        .map_err(|e| format!("{worker} panicked: {e}"))?;
    ended.map_err(|e| format!("{worker} failed: {e}"))?;
    if !reached {
        return Err(format!("{worker}: timed out after {} of the messages", probe::count()));
    }
    Ok(())
}

/// The client settings of the raw consumers (d) and (f): the framework's, written out.
fn raw_config(run: &Consume<'_>) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (key, value) in CONSUMER_SETTINGS.iter().chain(run.extra) {
        config.set(*key, *value);
    }
    config.set("bootstrap.servers", run.brokers).set("group.id", run.group);
    config
}

/// Commits what a raw consumer stored; nothing to commit is not an error.
fn final_commit<C: rdkafka::consumer::ConsumerContext>(consumer: &impl Consumer<C>, name: &str) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(rdkafka::error::KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
        Err(err) => eprintln!("{name}: final commit failed: {err}"),
    }
}

async fn raw(run: &Consume<'_>) -> Result<(), String> {
    let consumer: StreamConsumer = raw_config(run).create().map_err(|e| format!("raw consumer: {e}"))?;
    consumer.subscribe(&[run.topic]).map_err(|e| format!("subscribe: {e}"))?;
    let consumer = Arc::new(consumer);
    let looping = Arc::clone(&consumer);
    let task = tokio::spawn(async move {
        use rdkafka::Message as _;
        loop {
            match looping.recv().await {
                Ok(msg) => {
                    probe::record(msg.payload());
                    if let Err(err) = looping.store_offset_from_message(&msg) {
                        eprintln!("raw consumer: offset not stored: {err}");
                    }
                }
                Err(err) => eprintln!("raw consumer: {err}"),
            }
        }
    });
    let reached = probe::wait_done(run.timeout).await;
    task.abort();
    let _ = task.await;
    tokio::task::spawn_blocking(move || {
        final_commit(&*consumer, "raw consumer");
        drop(consumer);
    })
    .await
    .map_err(|e| e.to_string())?;
    if !reached {
        return Err(format!("raw: timed out after {} of the messages", probe::count()));
    }
    Ok(())
}

/// Whether (f) runs with the framework's prefetch settings (`KAFKA_BENCH_CEILING_PREFETCH=runtime`)
/// instead of librdkafka's defaults.
pub fn ceiling_has_runtime_prefetch() -> bool {
    std::env::var("KAFKA_BENCH_CEILING_PREFETCH").as_deref() == Ok("runtime")
}

/// (f): the partitions assigned directly (no group join, so no rebalance events in the
/// queue), then `rd_kafka_consume_batch_queue` for up to 1,024 queued messages at a time
/// (`rd_kafka_consume_queue` waits for one when none is), each recorded and its offset
/// stored, on a blocking thread. It skips rdkafka's per-message
/// event, `Arc` and waker, which no per-message consumer can skip; the framework's batch
/// style will build on the same API (per-partition queues, since a group's rebalance events
/// share the consumer queue).
async fn ceiling(run: &Consume<'_>) -> Result<(), String> {
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::{Offset, TopicPartitionList};
    use rdkafka_sys as rdsys;

    let mut config = raw_config(run);
    if ceiling_has_runtime_prefetch() {
        // The prefetch the framework gives itself for these partitions, instead of
        // librdkafka's defaults: what is left between (a) and (f) is then the Rust layer.
        for (key, value) in kafka_runtime::prefetch_settings(crate::broker::PARTITIONS as usize) {
            config.set(key, value);
        }
    }
    let consumer: BaseConsumer = config.create().map_err(|e| format!("ceiling consumer: {e}"))?;
    let mut partitions = TopicPartitionList::new();
    for partition in 0..crate::broker::PARTITIONS {
        partitions.add_partition_offset(run.topic, partition, Offset::Beginning).map_err(|e| e.to_string())?;
    }
    consumer.assign(&partitions).map_err(|e| format!("assign: {e}"))?;
    let deadline = std::time::Instant::now() + run.timeout;
    tokio::task::spawn_blocking(move || {
        // SAFETY: the queue and every message are destroyed before the consumer, which this
        // closure owns.
        unsafe {
            let queue = rdsys::rd_kafka_queue_get_consumer(consumer.client().native_ptr());
            let mut batch: Vec<*mut rdsys::rd_kafka_message_t> = vec![std::ptr::null_mut(); 1024];
            while !probe::is_done() && std::time::Instant::now() < deadline {
                // Whatever is queued, without waiting: with a timeout, the batch call waits
                // for a full batch, which would stall the last messages of the run.
                let mut got = rdsys::rd_kafka_consume_batch_queue(queue, 0, batch.as_mut_ptr(), batch.len());
                if got == 0 {
                    // Nothing queued: wait for one message (or 100 ms), then batch again.
                    let first = rdsys::rd_kafka_consume_queue(queue, 100);
                    if first.is_null() {
                        continue;
                    }
                    batch[0] = first;
                    got = 1;
                }
                for &message in &batch[..usize::try_from(got).unwrap_or(0)] {
                    let m = &*message;
                    if m.err == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                        let payload =
                            (!m.payload.is_null()).then(|| std::slice::from_raw_parts(m.payload.cast::<u8>(), m.len));
                        probe::record(payload);
                        rdsys::rd_kafka_offset_store(m.rkt, m.partition, m.offset);
                    }
                    rdsys::rd_kafka_message_destroy(message);
                }
            }
            rdsys::rd_kafka_queue_destroy(queue);
        }
        final_commit(&consumer, "ceiling consumer");
    })
    .await
    .map_err(|e| e.to_string())?;
    if !probe::is_done() {
        return Err(format!("ceiling: timed out after {} of the messages", probe::count()));
    }
    Ok(())
}
