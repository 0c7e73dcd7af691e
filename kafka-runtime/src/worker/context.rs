//! [`WorkerContext`]: what a worker gets besides its messages, as the original handlers got
//! `arguments` and `settings`.

use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::app::cli::Arguments;
use crate::config::WorkerConfig;

/// The worker's effective settings, the command-line options and the app's whole merged
/// configuration. Cheap to clone.
#[derive(Clone)]
pub struct WorkerContext {
    inner: Arc<ContextInner>,
}

struct ContextInner {
    config: Arc<WorkerConfig>,
    group: String,
    topics: Vec<String>,
    arguments: Arc<Arguments>,
    settings: Arc<serde_json::Value>,
}

impl WorkerContext {
    pub(crate) fn new(
        config: Arc<WorkerConfig>,
        group: String,
        topics: Vec<String>,
        arguments: Arc<Arguments>,
        settings: Arc<serde_json::Value>,
    ) -> Self {
        Self { inner: Arc::new(ContextInner { config, group, topics, arguments, settings }) }
    }

    /// The worker's name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// The consumer group this consumer joined (with `{topic}` filled in).
    pub fn group(&self) -> &str {
        &self.inner.group
    }

    /// What this consumer subscribed to: prefixed topic names, or one `^pattern`.
    pub fn topics(&self) -> &[String] {
        &self.inner.topics
    }

    /// The worker's merged settings, each with where it came from.
    pub fn worker(&self) -> &WorkerConfig {
        &self.inner.config
    }

    /// The command-line options the process was started with.
    pub fn arguments(&self) -> &Arguments {
        &self.inner.arguments
    }

    /// The app's whole configuration: config.json, with `kafka.brokers` and
    /// `kafka.topic_prefix` replaced by their effective values.
    pub fn settings(&self) -> &serde_json::Value {
        &self.inner.settings
    }

    /// One top-level key of the app's configuration, decoded into `T`.
    pub fn setting<T: DeserializeOwned>(&self, key: &str) -> Option<Result<T, serde_json::Error>> {
        self.inner.settings.get(key).map(|value| T::deserialize(value))
    }
}

impl std::fmt::Debug for WorkerContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerContext").field("worker", &self.name()).field("group", &self.group()).finish()
    }
}
