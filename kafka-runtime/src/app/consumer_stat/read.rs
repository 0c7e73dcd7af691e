//! What `consumer-stat` asks the brokers about one consumer of a worker: the partitions its
//! subscription covers now, its group's committed offsets, and each partition's log start
//! and end. It reads as the worker's group without joining it (no subscribe, no assign), so
//! running workers are not disturbed. Every call blocks, so each read runs on a blocking
//! thread, every request bounded by [`REQUEST_TIMEOUT`].

use std::sync::Arc;

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use super::super::command_client::{destroy_off_async_threads, request_failed, CommandContext, REQUEST_TIMEOUT};
use crate::config::client::client_config;
use crate::config::{ConsumerSpec, TopicMatcher, WorkerConfig};
use crate::error::Error;

const COMMAND: &str = "consumer-stat";

/// One partition's offsets, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PartitionOffsets {
    pub(super) topic: String,
    pub(super) partition: i32,
    /// The group's committed offset (the next one it reads); `None` when it never committed.
    pub(super) committed: Option<i64>,
    /// The log start offset (the low watermark).
    pub(super) log_start: i64,
    /// The log end offset (the high watermark: one past the last message).
    pub(super) log_end: i64,
}

/// One consumer's reading.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct GroupOffsets {
    pub(super) partitions: Vec<PartitionOffsets>,
    /// Topics the worker names that the brokers do not know.
    pub(super) missing_topics: Vec<String>,
}

/// Reads one consumer's offsets, again at each refresh, with one client kept between reads.
pub(super) struct GroupReader {
    pub(super) worker: String,
    pub(super) group: String,
    subscription: Arc<[String]>,
    brokers: Arc<str>,
    consumer: Option<Arc<BaseConsumer<CommandContext>>>,
}

impl GroupReader {
    /// A reader with the worker's client settings and group.
    pub(super) fn new(worker: &WorkerConfig, spec: &ConsumerSpec, brokers: &str) -> Result<Self, Error> {
        let settings = worker.client_settings.iter().map(|(key, value)| (key.as_str(), value.value.as_str()));
        let mut config = client_config(brokers, settings);
        config.set("group.id", &spec.group).set("enable.auto.commit", "false");
        let consumer = config.create_with_context(CommandContext::new(COMMAND)).map_err(|err| {
            Error::Config(format!(
                "{COMMAND}: worker `{}`: cannot create a client from its settings: {err}",
                worker.name
            ))
        })?;
        Ok(Self {
            worker: worker.name.clone(),
            group: spec.group.clone(),
            subscription: spec.subscription.clone().into(),
            brokers: brokers.into(),
            consumer: Some(Arc::new(consumer)),
        })
    }

    /// Reads the committed offsets first and the log ends after, so that a running worker's
    /// commit is not newer than the end it is compared with.
    pub(super) async fn read(&self) -> Result<GroupOffsets, Error> {
        let Some(consumer) = self.consumer.clone() else { return Ok(GroupOffsets::default()) };
        let subscription = Arc::clone(&self.subscription);
        let read = tokio::task::spawn_blocking(move || read_blocking(&consumer, &subscription)).await;
        let failed = |request: String, err: KafkaError| {
            let request = format!("worker `{}`, group `{}`: {request}", self.worker, self.group);
            request_failed(COMMAND, &request, &self.brokers, &err)
        };
        match read {
            Ok(Ok(offsets)) => Ok(offsets),
            Ok(Err((request, err))) => Err(failed(request, err)),
            Err(join) => Err(Error::Broker(format!("{COMMAND}: the read of group `{}` stopped: {join}", self.group))),
        }
    }
}

impl Drop for GroupReader {
    fn drop(&mut self) {
        if let Some(consumer) = self.consumer.take() {
            destroy_off_async_threads(consumer);
        }
    }
}

/// The reading, or the request that failed and why.
fn read_blocking(
    consumer: &BaseConsumer<CommandContext>,
    subscription: &[String],
) -> Result<GroupOffsets, (String, KafkaError)> {
    let metadata = consumer
        .fetch_metadata(None, REQUEST_TIMEOUT)
        .map_err(|err| ("reading the topics' metadata".to_owned(), err))?;
    let matcher = TopicMatcher::new(subscription);
    let mut partitions = TopicPartitionList::new();
    let mut known = Vec::new();
    for topic in metadata.topics().iter().filter(|t| t.error().is_none() && matcher.matches(t.name())) {
        known.push(topic.name().to_owned());
        for partition in topic.partitions() {
            partitions.add_partition(topic.name(), partition.id());
        }
    }
    let mut missing_topics: Vec<String> = matcher
        .names()
        .iter()
        .filter(|name| !known.iter().any(|k| k == *name))
        .map(|name| (*name).to_owned())
        .collect();
    missing_topics.sort();
    if partitions.count() == 0 {
        return Ok(GroupOffsets { partitions: Vec::new(), missing_topics });
    }
    let committed = consumer
        .committed_offsets(partitions, REQUEST_TIMEOUT)
        .map_err(|err| ("reading the group's committed offsets".to_owned(), err))?;
    let mut read = Vec::new();
    for element in committed.elements() {
        let (topic, partition) = (element.topic().to_owned(), element.partition());
        element.error().map_err(|err| (format!("reading the committed offset of {topic}/{partition}"), err))?;
        let committed = match element.offset() {
            Offset::Offset(offset) => Some(offset),
            _ => None,
        };
        let (log_start, log_end) = consumer
            .fetch_watermarks(&topic, partition, REQUEST_TIMEOUT)
            .map_err(|err| (format!("reading the log start and end of {topic}/{partition}"), err))?;
        read.push(PartitionOffsets { topic, partition, committed, log_start, log_end });
    }
    read.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(GroupOffsets { partitions: read, missing_topics })
}
