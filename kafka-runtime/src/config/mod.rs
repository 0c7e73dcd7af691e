//! Configuration: the config.json file and the merge of every layer.

mod file;
mod merge;

pub use file::{ConfigFile, ConsumerSection, KafkaSection, SettingValue, Settings, WorkerEntry};
pub use merge::{
    catalog, effective_settings, is_secret, path_matches, plan_worker, CatalogEntry, CliLayer, ConsumerUnit, EnvLayer,
    GlobalSettings, Source, Sourced, Subscription, WorkerOverrides, WorkerPlan, RESERVED_SETTINGS,
};
