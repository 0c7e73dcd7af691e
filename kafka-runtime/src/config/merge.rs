//! Merges the layers, lowest first: macro attributes, config.json, environment, command
//! line. Every value keeps the layer it came from, for `config` to show.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::file::{split_list, ConfigFile, Settings, WorkerEntry};
use crate::consumer::{DEFAULT_SETTINGS, EMBEDDED_SETTINGS, ENFORCED_SETTINGS};
use crate::error::Error;
use crate::handler::WorkerStyle;
use crate::registry::WorkerRegistration;

/// Where a value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Source {
    /// The runtime's default.
    Default,
    /// The `#[kafka_worker]` attribute.
    Macro,
    /// config.json.
    File,
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
fn pick<T>(layers: impl IntoIterator<Item = (Option<T>, Source)>) -> Option<Sourced<T>> {
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
}

/// `start-consumer`'s per-worker options.
#[derive(Debug, Default, Clone)]
pub struct WorkerOverrides {
    pub topics: Option<Vec<String>>,
    pub regex_topic: Option<String>,
    pub group: Option<String>,
}

/// Settings that apply to the whole process.
#[derive(Debug, Clone)]
pub struct GlobalSettings {
    /// `None`: no broker configured anywhere, so the embedded mock cluster is used.
    pub brokers: Option<Sourced<Vec<String>>>,
    pub topic_prefix: Sourced<String>,
    pub drain_timeout: Sourced<Duration>,
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
        Ok(Self { brokers, topic_prefix, drain_timeout })
    }

    /// Adds the prefix to a topic name.
    pub fn prefixed(&self, topic: &str) -> String {
        format!("{}{topic}", self.topic_prefix.value)
    }
}

/// A worker's subscription before the prefix is added.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Subscription {
    Topics(Vec<String>),
    Regex(String),
}

/// Everything known about one worker once the layers are merged.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerPlan {
    pub name: String,
    pub rust_path: &'static str,
    pub style: WorkerStyle,
    /// The group as configured; may contain `{topic}`.
    pub group: Sourced<String>,
    /// Topics or pattern, without the prefix and without the default topics.
    pub subscription: Option<Sourced<Subscription>>,
    /// `kafka.consumer.topics`, added to a topic subscription.
    pub default_topics: Vec<String>,
    pub topic_prefix: Sourced<String>,
    /// librdkafka settings for this worker's consumer.
    pub client_settings: BTreeMap<String, Sourced<String>>,
}

/// One consumer of a worker: `{topic}` groups give one per topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerUnit {
    pub group: String,
    /// Prefixed topic names, or one `^pattern`.
    pub subscription: Vec<String>,
}

impl WorkerPlan {
    /// What the worker subscribes to: prefixed topics with the defaults added, or one
    /// `^pattern` with the (escaped) prefix in front.
    pub fn subscription_with_prefix(&self) -> Vec<String> {
        let prefix = &self.topic_prefix.value;
        match self.subscription.as_ref().map(|s| &s.value) {
            Some(Subscription::Regex(pattern)) => {
                vec![format!("^{}{}", regex::escape(prefix), pattern.strip_prefix('^').unwrap_or(pattern))]
            }
            Some(Subscription::Topics(topics)) => self.with_defaults(topics),
            None => self.with_defaults(&[]),
        }
    }

    fn with_defaults(&self, topics: &[String]) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        for topic in topics.iter().chain(&self.default_topics) {
            let topic = format!("{}{topic}", self.topic_prefix.value);
            if !all.contains(&topic) {
                all.push(topic);
            }
        }
        all
    }

    /// The consumers to start for this worker.
    pub fn consumers(&self) -> Result<Vec<ConsumerUnit>, Error> {
        let subscription = self.subscription_with_prefix();
        if subscription.is_empty() {
            return Err(Error::Config(format!(
                "worker `{}` has no topics: set `topics` or `regex_topic` in #[kafka_worker] or in \
                 its config.json entry, add kafka.consumer.topics, or pass --topics",
                self.name
            )));
        }
        let group = &self.group.value;
        if !group.contains("{topic}") {
            return Ok(vec![ConsumerUnit { group: group.clone(), subscription }]);
        }
        if matches!(self.subscription.as_ref().map(|s| &s.value), Some(Subscription::Regex(_))) {
            return Err(Error::Config(format!(
                "worker `{}`: a group with `{{topic}}` needs a list of topics, not `regex_topic`",
                self.name
            )));
        }
        Ok(subscription
            .into_iter()
            .map(|topic| ConsumerUnit { group: group.replace("{topic}", &topic), subscription: vec![topic] })
            .collect())
    }
}

/// A startable worker: a registered function, under its own name or under the name of a
/// config.json entry whose `path` points at it.
#[derive(Debug, Clone, Copy)]
pub struct CatalogEntry<'a> {
    pub name: &'a str,
    pub registration: &'static WorkerRegistration,
    pub entry: Option<&'a WorkerEntry>,
}

impl fmt::Debug for WorkerRegistration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerRegistration").field("name", &self.name).field("rust_path", &self.rust_path).finish()
    }
}

/// Does a config.json `path` name this Rust function? Accepts the full path, the path
/// without the crate name, and either with dots instead of `::`.
pub fn path_matches(rust_path: &str, path: &str) -> bool {
    let path = path.trim().replace('.', "::");
    let path = path.strip_prefix("crate::").unwrap_or(&path);
    rust_path == path || rust_path.split_once("::").is_some_and(|(_, rest)| rest == path)
}

/// Every startable worker, sorted by name, and warnings for config entries that match none.
pub fn catalog<'a>(
    registered: &[&'static WorkerRegistration],
    file: &'a ConfigFile,
) -> (Vec<CatalogEntry<'a>>, Vec<String>) {
    let entries = &file.kafka.consumer.workers;
    let mut catalog: Vec<CatalogEntry<'a>> = registered
        .iter()
        .map(|registration| CatalogEntry {
            name: registration.name,
            registration,
            entry: entries.iter().find(|e| e.name == registration.name),
        })
        .collect();
    let mut warnings = Vec::new();
    for entry in entries {
        if registered.iter().any(|r| r.name == entry.name) {
            continue;
        }
        match entry.path.as_deref().and_then(|path| registered.iter().find(|r| path_matches(r.rust_path, path))) {
            Some(registration) => catalog.push(CatalogEntry { name: &entry.name, registration, entry: Some(entry) }),
            None => warnings.push(format!(
                "{}: worker `{}` in kafka.consumer.workers matches no registered worker by name{}; \
                 it is ignored",
                file.display_name(),
                entry.name,
                entry.path.as_deref().map(|p| format!(" or by path `{p}`")).unwrap_or_default()
            )),
        }
    }
    catalog.sort_by(|a, b| a.name.cmp(b.name));
    (catalog, warnings)
}

/// Merges one worker's layers.
pub fn plan_worker(
    worker: &CatalogEntry<'_>,
    style: WorkerStyle,
    file: &ConfigFile,
    global: &GlobalSettings,
    overrides: &WorkerOverrides,
) -> WorkerPlan {
    let registration = worker.registration;
    let entry = worker.entry;
    let macro_subscription = match (registration.regex_topic, registration.topics) {
        (Some(regex), _) => Some(Subscription::Regex(regex.to_owned())),
        (None, []) => None,
        (None, topics) => Some(Subscription::Topics(topics.iter().map(|t| (*t).to_owned()).collect())),
    };
    let layer_subscription = |topics: Option<&Vec<String>>, regex: Option<&String>| match (regex, topics) {
        (Some(regex), _) => Some(Subscription::Regex(regex.clone())),
        (None, Some(topics)) => Some(Subscription::Topics(topics.clone())),
        (None, None) => None,
    };
    let subscription = pick([
        (macro_subscription, Source::Macro),
        (entry.and_then(|e| layer_subscription(e.topics.as_ref(), e.regex_topic.as_ref())), Source::File),
        (layer_subscription(overrides.topics.as_ref(), overrides.regex_topic.as_ref()), Source::Cli),
    ]);
    let group = pick([
        (registration.group.map(str::to_owned), Source::Macro),
        (entry.and_then(|e| e.group.clone()), Source::File),
        (overrides.group.clone(), Source::Cli),
    ])
    .unwrap_or_else(|| Sourced::new(worker.name.to_owned(), Source::Default));

    let mut client_settings = BTreeMap::new();
    let embedded = if global.brokers.is_none() { EMBEDDED_SETTINGS } else { &[] };
    for (key, value) in DEFAULT_SETTINGS.iter().chain(embedded) {
        client_settings.insert((*key).to_owned(), Sourced::new((*value).to_owned(), Source::Default));
    }
    let mut add_file_settings = |settings: &Settings| {
        for (key, value) in settings {
            if let Some((_, instead)) = RESERVED_SETTINGS.iter().find(|(reserved, _)| reserved == key) {
                tracing::warn!("worker `{}`: client setting `{key}` in config.json is ignored; {instead}", worker.name);
                continue;
            }
            client_settings.insert(key.clone(), Sourced::new(value.0.clone(), Source::File));
        }
    };
    add_file_settings(&file.kafka.consumer_connection_settings);
    if let Some(entry) = entry {
        add_file_settings(&entry.connection_settings);
    }
    for (key, value) in ENFORCED_SETTINGS {
        client_settings.insert((*key).to_owned(), Sourced::new((*value).to_owned(), Source::Enforced));
    }

    WorkerPlan {
        name: worker.name.to_owned(),
        rust_path: registration.rust_path,
        style,
        group,
        subscription,
        default_topics: file.kafka.consumer.topics.clone().unwrap_or_default(),
        topic_prefix: global.topic_prefix.clone(),
        client_settings,
    }
}

/// Settings whose values are never printed.
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "sasl.oauthbearer.config", "ssl.key.pem", "ssl_key", "token"]
        .iter()
        .any(|needle| key.contains(needle))
}

/// Keys the runtime sets itself; giving them in client settings has no effect.
pub const RESERVED_SETTINGS: &[(&str, &str)] = &[
    ("group.id", "set the worker's `group` instead"),
    ("bootstrap.servers", "set `kafka.brokers`, KAFKA_BROKERS or --brokers instead"),
    ("metadata.broker.list", "set `kafka.brokers`, KAFKA_BROKERS or --brokers instead"),
];

/// The app settings handed to workers: config.json with the effective kafka values.
pub fn effective_settings(file: &ConfigFile, global: &GlobalSettings) -> serde_json::Value {
    let mut raw = match &file.raw {
        serde_json::Value::Object(_) => file.raw.clone(),
        _ => serde_json::json!({}),
    };
    let kafka = raw.as_object_mut().map(|root| root.entry("kafka").or_insert_with(|| serde_json::json!({})));
    if let Some(serde_json::Value::Object(kafka)) = kafka {
        kafka.insert("brokers".into(), serde_json::json!(global.brokers.as_ref().map(|b| &b.value)));
        kafka.insert("topic_prefix".into(), serde_json::json!(global.topic_prefix.value));
    }
    raw
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn registration(
        name: &'static str,
        topics: &'static [&'static str],
        group: Option<&'static str>,
    ) -> &'static WorkerRegistration {
        Box::leak(Box::new(WorkerRegistration {
            name,
            rust_path: "app::workers::handler",
            group,
            topics,
            regex_topic: None,
            build: || unreachable!("not built in these tests"),
        }))
    }

    fn file(text: &str) -> ConfigFile {
        ConfigFile::parse(text, Path::new("config.json")).unwrap().0
    }

    fn plan(file: &ConfigFile, env: &EnvLayer, cli: &CliLayer, overrides: &WorkerOverrides) -> WorkerPlan {
        let registered = [registration("es", &["macro-topic"], Some("macro-group"))];
        let (catalog, _) = catalog(&registered, file);
        let global = GlobalSettings::merge(file, env, cli).unwrap();
        plan_worker(&catalog[0], WorkerStyle::PerMessage, file, &global, overrides)
    }

    #[test]
    fn macro_values_are_the_lowest_layer() {
        let plan =
            plan(&ConfigFile::default(), &EnvLayer::default(), &CliLayer::default(), &WorkerOverrides::default());
        assert_eq!(plan.group, Sourced::new("macro-group".to_owned(), Source::Macro));
        assert_eq!(plan.subscription_with_prefix(), vec!["macro-topic"]);
        assert_eq!(plan.subscription.unwrap().source, Source::Macro);
        assert_eq!(plan.topic_prefix.source, Source::Default);
    }

    #[test]
    fn config_file_overrides_the_macro() {
        let file = file(
            r#"{"kafka": {"topic_prefix": "p-", "consumer": {
            "topics": ["default-topic"],
            "workers": [{"name": "es", "group": "file-group", "topics": ["file-topic"]}]}}}"#,
        );
        let plan = plan(&file, &EnvLayer::default(), &CliLayer::default(), &WorkerOverrides::default());
        assert_eq!(plan.group, Sourced::new("file-group".to_owned(), Source::File));
        assert_eq!(plan.subscription_with_prefix(), vec!["p-file-topic", "p-default-topic"]);
        assert_eq!(plan.topic_prefix, Sourced::new("p-".to_owned(), Source::File));
    }

    #[test]
    fn env_overrides_the_file_and_cli_overrides_env() {
        let file = file(r#"{"kafka": {"brokers": ["file:9092"], "topic_prefix": "file-"}}"#);
        let env = EnvLayer {
            brokers: Some("env:9092".into()),
            topic_prefix: Some("env-".into()),
            drain_timeout_ms: Some("5".into()),
        };
        let global = GlobalSettings::merge(&file, &env, &CliLayer::default()).unwrap();
        assert_eq!(global.brokers, Some(Sourced::new(vec!["env:9092".to_owned()], Source::Env("KAFKA_BROKERS"))));
        assert_eq!(global.topic_prefix, Sourced::new("env-".to_owned(), Source::Env("KAFKA_TOPIC_PREFIX")));
        assert_eq!(global.drain_timeout.value, Duration::from_millis(5));

        let cli = CliLayer {
            brokers: Some(vec!["cli:9092".into()]),
            topic_prefix: Some("cli-".into()),
            drain_timeout_ms: Some(7),
        };
        let global = GlobalSettings::merge(&file, &env, &cli).unwrap();
        assert_eq!(global.brokers, Some(Sourced::new(vec!["cli:9092".to_owned()], Source::Cli)));
        assert_eq!(global.topic_prefix, Sourced::new("cli-".to_owned(), Source::Cli));
        assert_eq!(global.drain_timeout, Sourced::new(Duration::from_millis(7), Source::Cli));
    }

    #[test]
    fn cli_overrides_the_worker_entry() {
        let file = file(
            r#"{"kafka": {"consumer": {"workers": [{"name": "es", "group": "file-group", "topics": ["file-topic"],
            "connection_settings": {"group.id": "ignored-anyway", "session.timeout.ms": 6000}}]}}}"#,
        );
        let overrides =
            WorkerOverrides { topics: None, regex_topic: Some("cli-.*".into()), group: Some("cli-group".into()) };
        let plan = plan(&file, &EnvLayer::default(), &CliLayer::default(), &overrides);
        assert_eq!(plan.group, Sourced::new("cli-group".to_owned(), Source::Cli));
        assert_eq!(plan.subscription, Some(Sourced::new(Subscription::Regex("cli-.*".into()), Source::Cli)));
        assert_eq!(plan.client_settings["session.timeout.ms"], Sourced::new("6000".to_owned(), Source::File));
    }

    #[test]
    fn the_embedded_cluster_gets_its_own_defaults() {
        let embedded =
            plan(&ConfigFile::default(), &EnvLayer::default(), &CliLayer::default(), &WorkerOverrides::default());
        assert_eq!(embedded.client_settings["fetch.wait.max.ms"], Sourced::new("10".to_owned(), Source::Default));
        let cli = CliLayer { brokers: Some(vec!["b:9092".into()]), ..CliLayer::default() };
        let real = plan(&ConfigFile::default(), &EnvLayer::default(), &cli, &WorkerOverrides::default());
        assert!(!real.client_settings.contains_key("fetch.wait.max.ms"));
    }

    #[test]
    fn at_least_once_settings_cannot_be_overridden() {
        let file = file(
            r#"{"kafka": {"consumer_connection_settings": {"enable.auto.offset.store": true, "auto.offset.reset": "latest"}}}"#,
        );
        let plan = plan(&file, &EnvLayer::default(), &CliLayer::default(), &WorkerOverrides::default());
        assert_eq!(
            plan.client_settings["enable.auto.offset.store"],
            Sourced::new("false".to_owned(), Source::Enforced)
        );
        assert_eq!(plan.client_settings["auto.offset.reset"], Sourced::new("latest".to_owned(), Source::File));
        assert_eq!(plan.client_settings["fetch.queue.backoff.ms"].source, Source::Default);
    }

    #[test]
    fn default_topics_skip_regex_workers_and_prefix_goes_on_the_regex() {
        let file = file(
            r#"{"kafka": {"topic_prefix": "p.", "consumer": {"topics": ["d"],
            "workers": [{"name": "es", "regex_topic": "^events-.*"}]}}}"#,
        );
        let plan = plan(&file, &EnvLayer::default(), &CliLayer::default(), &WorkerOverrides::default());
        assert_eq!(plan.subscription_with_prefix(), vec![r"^p\.events-.*"]);
    }

    #[test]
    fn topic_groups_give_one_consumer_per_topic() {
        let file = file(
            r#"{"kafka": {"topic_prefix": "p-", "consumer": {"topics": ["d"],
            "workers": [{"name": "es", "group": "g-{topic}", "topics": ["a", "b"]}]}}}"#,
        );
        let plan = plan(&file, &EnvLayer::default(), &CliLayer::default(), &WorkerOverrides::default());
        let units = plan.consumers().unwrap();
        assert_eq!(
            units,
            vec![
                ConsumerUnit { group: "g-p-a".into(), subscription: vec!["p-a".into()] },
                ConsumerUnit { group: "g-p-b".into(), subscription: vec!["p-b".into()] },
                ConsumerUnit { group: "g-p-d".into(), subscription: vec!["p-d".into()] },
            ]
        );
    }

    #[test]
    fn config_entries_reach_functions_by_path() {
        let registered = [registration("es", &["t"], None)];
        let file = file(
            r#"{"kafka": {"consumer": {"workers": [
            {"name": "alias", "path": "workers.handler", "topics": ["other"]},
            {"name": "nobody", "path": "no::such"}]}}}"#,
        );
        let (catalog, warnings) = catalog(&registered, &file);
        let names: Vec<&str> = catalog.iter().map(|c| c.name).collect();
        assert_eq!(names, vec!["alias", "es"]);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("`nobody`"), "{warnings:?}");
        let global = GlobalSettings::merge(&file, &EnvLayer::default(), &CliLayer::default()).unwrap();
        let alias = plan_worker(&catalog[0], WorkerStyle::PerMessage, &file, &global, &WorkerOverrides::default());
        assert_eq!(alias.subscription_with_prefix(), vec!["other"]);
        assert_eq!(alias.group, Sourced::new("alias".to_owned(), Source::Default));
    }

    #[test]
    fn path_matching() {
        assert!(path_matches("app::workers::handler", "app::workers::handler"));
        assert!(path_matches("app::workers::handler", "workers::handler"));
        assert!(path_matches("app::workers::handler", "app.workers.handler"));
        assert!(path_matches("app::workers::handler", "crate::workers::handler"));
        assert!(!path_matches("app::workers::handler", "handler"));
    }

    #[test]
    fn secrets_are_recognised() {
        assert!(is_secret("sasl.password"));
        assert!(is_secret("ssl.key.password"));
        assert!(!is_secret("session.timeout.ms"));
    }
}
