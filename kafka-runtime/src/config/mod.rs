//! Configuration: the config.json file (`file`), the layers merged over it with the source of
//! every value (`layers`), each worker's merged configuration (`plan`), the librdkafka
//! settings of every client the runtime creates (`client`), `${NAME}` in them (`env_refs`),
//! which of them are secrets, masked in everything printed (`secrets`), the topics
//! `create-topics` creates (`topics`) and the names and patterns Kafka accepts (`topic_names`).

mod batch;
pub(crate) mod client;
mod concurrency;
mod env_refs;
mod file;
mod layers;
mod plan;
pub(crate) mod policy;
pub(crate) mod secrets;
mod topic_names;
mod topics;

pub use batch::{BatchKeys, BatchSettings};
pub use client::{librdkafka_build, RESERVED_SETTINGS};
pub use concurrency::{Concurrency, ConcurrencyKeys, Ordering, DEFAULT_MAX_IN_FLIGHT};
pub use file::{ConfigFile, ConsumerSection, KafkaSection, SettingValue, Settings, TopicEntry, WorkerEntry};
pub use layers::{CliLayer, EnvLayer, GlobalSettings, Source, Sourced};
pub(crate) use plan::TopicMatcher;
pub use plan::{
    catalog, effective_settings, merge_worker_config, path_matches, CatalogEntry, ConsumerSpec, Subscription,
    WorkerConfig, WorkerOverrides,
};
pub use policy::{FailureKeys, FailurePolicy, OnDecodeError};
pub use secrets::{is_secret, redact, MASK};
pub use topics::{topics_to_create, TopicToCreate, TopicsPlan, DEFAULT_TOPIC_ENTRY};
