//! The layers of configuration, lowest first: macro attributes, config.json, environment,
//! command line. Every value keeps the layer it came from, for `config` to show; this file
//! holds what applies to the whole process.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::file::{split_list, ConfigFile};
use crate::error::Error;

/// Where a value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Source {
    /// The runtime's default.
    Default,
    /// The `#[kafka_worker]` attribute.
    Macro,
    /// config.json.
    File,
    /// This settings object of config.json (`kafka.connection_settings`, ...).
    FileSection(&'static str),
    /// An environment variable.
    Env(&'static str),
    /// A command-line option.
    Cli,
    /// Forced by the runtime for at-least-once delivery.
    Enforced,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::Macro => f.write_str("macro"),
            Source::File => f.write_str("config.json"),
            Source::FileSection(section) => write!(f, "config.json {section}"),
            Source::Env(var) => write!(f, "env {var}"),
            Source::Cli => f.write_str("command line"),
            Source::Enforced => f.write_str("enforced"),
        }
    }
}

/// A value and the layer it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Sourced<T> {
    pub value: T,
    pub source: Source,
}

impl<T> Sourced<T> {
    pub fn new(value: T, source: Source) -> Self {
        Self { value, source }
    }
}

/// Folds layers given lowest first: the last one that has a value wins.
pub(super) fn pick<T>(layers: impl IntoIterator<Item = (Option<T>, Source)>) -> Option<Sourced<T>> {
    layers.into_iter().filter_map(|(value, source)| value.map(|v| Sourced::new(v, source))).last()
}

/// The environment layer.
#[derive(Debug, Default, Clone)]
pub struct EnvLayer {
    pub brokers: Option<String>,
    pub topic_prefix: Option<String>,
    pub drain_timeout_ms: Option<String>,
}

impl EnvLayer {
    pub const BROKERS: &'static str = "KAFKA_BROKERS";
    pub const TOPIC_PREFIX: &'static str = "KAFKA_TOPIC_PREFIX";
    pub const DRAIN_TIMEOUT_MS: &'static str = "KAFKA_DRAIN_TIMEOUT_MS";

    pub fn from_process() -> Self {
        let var = |name| std::env::var(name).ok();
        Self {
            brokers: var(Self::BROKERS).filter(|s| !s.trim().is_empty()),
            topic_prefix: var(Self::TOPIC_PREFIX),
            drain_timeout_ms: var(Self::DRAIN_TIMEOUT_MS).filter(|s| !s.trim().is_empty()),
        }
    }
}

/// The global command-line options.
#[derive(Debug, Default, Clone)]
pub struct CliLayer {
    pub brokers: Option<Vec<String>>,
    pub topic_prefix: Option<String>,
    pub drain_timeout_ms: Option<u64>,
    pub give_up_after_ms: Option<u64>,
}

/// Settings that apply to the whole process.
#[derive(Debug, Clone)]
pub struct GlobalSettings {
    /// `None`: no broker configured anywhere, so the embedded mock cluster is used.
    pub brokers: Option<Sourced<Vec<String>>>,
    pub topic_prefix: Sourced<String>,
    pub drain_timeout: Sourced<Duration>,
    /// How long a worker waits for unreachable brokers before it stops; `None`: as long as
    /// it runs.
    pub give_up_after: Option<Sourced<Duration>>,
}

const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

impl GlobalSettings {
    pub fn merge(file: &ConfigFile, env: &EnvLayer, cli: &CliLayer) -> Result<Self, Error> {
        let kafka = &file.kafka;
        let brokers = pick([
            (kafka.brokers.clone(), Source::File),
            (env.brokers.as_deref().map(split_list), Source::Env(EnvLayer::BROKERS)),
            (cli.brokers.clone(), Source::Cli),
        ])
        .filter(|brokers| !brokers.value.is_empty());
        let topic_prefix = pick([
            (kafka.topic_prefix.clone(), Source::File),
            (env.topic_prefix.clone(), Source::Env(EnvLayer::TOPIC_PREFIX)),
            (cli.topic_prefix.clone(), Source::Cli),
        ])
        .unwrap_or_else(|| Sourced::new(String::new(), Source::Default));
        let env_drain = match &env.drain_timeout_ms {
            None => None,
            Some(text) => Some(text.trim().parse::<u64>().map_err(|_| {
                Error::Config(format!("{}={text:?} is not a number of milliseconds", EnvLayer::DRAIN_TIMEOUT_MS))
            })?),
        };
        let drain_timeout = pick([
            (kafka.consumer.drain_timeout_ms, Source::File),
            (env_drain, Source::Env(EnvLayer::DRAIN_TIMEOUT_MS)),
            (cli.drain_timeout_ms, Source::Cli),
        ])
        .map(|ms| Sourced::new(Duration::from_millis(ms.value), ms.source))
        .unwrap_or_else(|| Sourced::new(DEFAULT_DRAIN_TIMEOUT, Source::Default));
        let give_up_after =
            pick([(kafka.consumer.give_up_after_ms, Source::File), (cli.give_up_after_ms, Source::Cli)])
                .filter(|ms| ms.value > 0)
                .map(|ms| Sourced::new(Duration::from_millis(ms.value), ms.source));
        Ok(Self { brokers, topic_prefix, drain_timeout, give_up_after })
    }

    /// Adds the prefix to a topic name.
    pub fn prefixed(&self, topic: &str) -> String {
        format!("{}{topic}", self.topic_prefix.value)
    }
}
