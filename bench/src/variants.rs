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
}

impl Variant {
    pub const RUST: [Variant; 3] = [Variant::PerMessage, Variant::Stream, Variant::Raw];

    pub fn key(self) -> &'static str {
        match self {
            Variant::PerMessage => "framework_per_message",
            Variant::Stream => "framework_stream",
            Variant::Raw => "raw_rdkafka",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::RUST.into_iter().find(|v| v.key() == s)
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
    /// How long the whole consume may take before it is reported as failed.
    pub timeout: Duration,
}

/// Runs `variant` until the probe reached its target, then stops it (commit and close).
pub async fn consume(variant: Variant, run: &Consume<'_>) -> Result<(), String> {
    match variant {
        Variant::PerMessage => framework("bench_per_message", run).await,
        Variant::Stream => framework("bench_stream", run).await,
        Variant::Raw => raw(run).await,
    }
}

async fn framework(worker: &str, run: &Consume<'_>) -> Result<(), String> {
    let args = [
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
    let shutdown = Shutdown::new();
    let mut task = tokio::spawn(kafka_runtime::run_with_args(args.map(str::to_owned), shutdown.clone()));
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

async fn raw(run: &Consume<'_>) -> Result<(), String> {
    let mut config = ClientConfig::new();
    for (key, value) in CONSUMER_SETTINGS.iter().chain(run.extra) {
        config.set(*key, *value);
    }
    config.set("bootstrap.servers", run.brokers).set("group.id", run.group);
    let consumer: StreamConsumer = config.create().map_err(|e| format!("raw consumer: {e}"))?;
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
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(rdkafka::error::KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
            Err(err) => eprintln!("raw consumer: final commit failed: {err}"),
        }
        drop(consumer);
    })
    .await
    .map_err(|e| e.to_string())?;
    if !reached {
        return Err(format!("raw: timed out after {} of the messages", probe::count()));
    }
    Ok(())
}
