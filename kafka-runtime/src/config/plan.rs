//! One worker's configuration: which startable workers exist (registered functions, and
//! config.json entries naming one by `path`), and each one's layers merged into a
//! [`WorkerConfig`], with the consumers it runs ([`ConsumerSpec`]).

use std::collections::BTreeMap;

use serde::Serialize;

use super::batch::{BatchKeys, BatchSettings};
use super::client::ClientSettings;
use super::concurrency::{Concurrency, ConcurrencyKeys};
use super::file::{ConfigFile, WorkerEntry};
use super::layers::{pick, GlobalSettings, Source, Sourced};
use super::policy::{FailureKeys, FailurePolicy, Layer};
use super::topic_names::{pattern_problem, topic_name_problem};
use crate::error::Error;
use crate::worker::handler::WorkerStyle;
use crate::worker::registry::WorkerRegistration;

/// `start-consumer`'s per-worker options.
#[derive(Debug, Default, Clone)]
pub struct WorkerOverrides {
    pub topics: Option<Vec<String>>,
    pub regex_topic: Option<String>,
    pub group: Option<String>,
    /// The failure policy given on the command line.
    pub failure: FailureKeys,
    /// `--take` and `--within` (batch workers only).
    pub batch: BatchKeys,
    /// `--ordering` and `--max-in-flight`.
    pub concurrency: ConcurrencyKeys,
    /// The options are given to every worker of the command (`start-consumers`): those that
    /// apply to some styles only are defaults, not an error for the others.
    pub for_every_worker: bool,
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
pub struct WorkerConfig {
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
    /// What happens when its handler fails.
    pub failure: FailurePolicy,
    /// How its batches are cut; `None` unless it is a batch worker.
    pub batch: Option<BatchSettings>,
    /// How many messages it handles at once, and in which order (sequential unless it is a
    /// per-message worker).
    pub concurrency: Concurrency,
}

/// One consumer of a worker: `{topic}` groups give one per topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSpec {
    pub group: String,
    /// Prefixed topic names, or one `^pattern`.
    pub subscription: Vec<String>,
}

impl WorkerConfig {
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

    /// Every topic name and the pattern as Kafka would take them, each error naming the
    /// value and where it came from.
    fn check_subscription(&self) -> Result<(), Error> {
        let prefix = &self.topic_prefix.value;
        let (own, source) = match &self.subscription {
            Some(Sourced { value: Subscription::Regex(pattern), source }) => {
                return match pattern_problem(pattern) {
                    None => Ok(()),
                    Some(problem) => Err(Error::Config(format!(
                        "worker `{}`: regex_topic {pattern:?} (from {}) is {problem}",
                        self.name,
                        where_from(*source, "--regex-topic")
                    ))),
                };
            }
            Some(Sourced { value: Subscription::Topics(topics), source }) => (topics.as_slice(), *source),
            None => (&[][..], Source::Default),
        };
        let own = own.iter().map(|topic| (topic, where_from(source, "--topics")));
        let defaults = self.default_topics.iter().map(|topic| (topic, "kafka.consumer.topics in config.json".into()));
        for (topic, from) in own.chain(defaults) {
            if let Some(problem) = topic_name_problem(&format!("{prefix}{topic}")) {
                let with_prefix =
                    if prefix.is_empty() { String::new() } else { format!(" with the prefix {prefix:?}") };
                return Err(Error::Config(format!(
                    "worker `{}`: topic {topic:?}{with_prefix} (from {from}): {problem}",
                    self.name
                )));
            }
        }
        Ok(())
    }

    /// The consumers to start for this worker.
    pub fn consumers(&self) -> Result<Vec<ConsumerSpec>, Error> {
        self.check_subscription()?;
        let subscription = self.subscription_with_prefix();
        if subscription.is_empty() {
            return Err(Error::Config(format!(
                "worker `{}` has no topics: set `topics` or `regex_topic` in #[kafka_worker] or in \
                 its config.json entry, add kafka.consumer.topics, or pass --topics",
                self.name
            )));
        }
        if let Some(dead_letter) = &self.failure.dead_letter_topic {
            let prefix = &self.topic_prefix.value;
            for topic in subscription.iter().filter(|t| !t.starts_with('^')) {
                let target = self.failure.dead_letter_for(topic, prefix).map(|name| format!("{prefix}{name}"));
                if target.as_deref() == Some(topic) {
                    return Err(Error::Config(format!(
                        "worker `{}`: dead_letter_topic `{}` ({}) is its own source topic `{topic}`: a \
                         failed message would come back to the worker; name another topic",
                        self.name, dead_letter.value, dead_letter.source
                    )));
                }
            }
        }
        let group = &self.group.value;
        if !group.contains("{topic}") {
            return Ok(vec![ConsumerSpec { group: group.clone(), subscription }]);
        }
        if matches!(self.subscription.as_ref().map(|s| &s.value), Some(Subscription::Regex(_))) {
            return Err(Error::Config(format!(
                "worker `{}`: a group with `{{topic}}` needs a list of topics, not `regex_topic`",
                self.name
            )));
        }
        Ok(subscription
            .into_iter()
            .map(|topic| ConsumerSpec { group: group.replace("{topic}", &topic), subscription: vec![topic] })
            .collect())
    }
}

/// Which topics a consumer's subscription (prefixed names, or `^patterns`) covers, as
/// librdkafka reads it.
pub(crate) struct TopicMatcher<'a> {
    names: Vec<&'a str>,
    patterns: Vec<regex::Regex>,
}

impl<'a> TopicMatcher<'a> {
    /// A pattern that is not a valid regex matches nothing (librdkafka refuses it at subscribe).
    pub(crate) fn new(subscription: &'a [String]) -> Self {
        let (patterns, names): (Vec<&String>, Vec<&String>) = subscription.iter().partition(|s| s.starts_with('^'));
        Self {
            names: names.into_iter().map(String::as_str).collect(),
            patterns: patterns.into_iter().filter_map(|p| regex::Regex::new(p).ok()).collect(),
        }
    }

    pub(crate) fn matches(&self, topic: &str) -> bool {
        self.names.contains(&topic) || self.patterns.iter().any(|p| p.is_match(topic))
    }

    /// The topics named one by one, not by a pattern.
    pub(crate) fn names(&self) -> &[&'a str] {
        &self.names
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

/// Where a worker's topics or pattern came from, for an error about them; `option` is the
/// command-line option that sets them.
fn where_from(source: Source, option: &str) -> String {
    match source {
        Source::Cli => format!("{option} on the command line"),
        Source::Macro => "#[kafka_worker]".to_owned(),
        Source::File | Source::FileSection(_) => "its entry in kafka.consumer.workers of config.json".to_owned(),
        other => other.to_string(),
    }
}

const METADATA_REFRESH: &str = "topic.metadata.refresh.interval.ms";

/// A regex worker's metadata refresh unless its settings give one: a new topic that matches
/// is read within 30 s.
const REGEX_METADATA_REFRESH_MS: &str = "30000";

/// Merges one worker's layers.
pub fn merge_worker_config(
    worker: &CatalogEntry<'_>,
    style: WorkerStyle,
    file: &ConfigFile,
    global: &GlobalSettings,
    overrides: &WorkerOverrides,
) -> Result<WorkerConfig, Error> {
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

    let who = format!("worker `{}`", worker.name);
    let mut client_settings = ClientSettings::consumer(global.brokers.is_none(), &file.kafka, entry, &who).into_map();
    if matches!(subscription, Some(Sourced { value: Subscription::Regex(_), .. })) {
        // librdkafka looks for new topics that match only when it refreshes its metadata:
        // every 5 minutes by its default.
        client_settings
            .entry(METADATA_REFRESH.to_owned())
            .or_insert_with(|| Sourced::new(REGEX_METADATA_REFRESH_MS.to_owned(), Source::Default));
    }

    let file_name = file.display_name();
    let defaults_at = format!("{file_name}: kafka.consumer");
    let entry_at = format!("{file_name}: the entry of `{}` in kafka.consumer.workers", worker.name);
    let mut failure_layers = vec![
        Layer { keys: FailureKeys::from(&registration.failure), source: Source::Macro, at: "#[kafka_worker]" },
        Layer { keys: file.kafka.consumer.failure_keys(), source: Source::File, at: &defaults_at },
    ];
    if let Some(entry) = entry {
        failure_layers.push(Layer { keys: entry.failure_keys(), source: Source::File, at: &entry_at });
    }
    failure_layers.push(Layer { keys: overrides.failure.clone(), source: Source::Cli, at: "the command line" });
    let failure = FailurePolicy::merge(worker.name, &failure_layers)?;

    let mut batch_layers = vec![
        (Layer { keys: BatchKeys::from(&registration.batch), source: Source::Macro, at: "#[kafka_worker]" }, false),
        (Layer { keys: file.kafka.consumer.batch_keys(), source: Source::File, at: &defaults_at }, true),
    ];
    if let Some(entry) = entry {
        batch_layers.push((Layer { keys: entry.batch_keys(), source: Source::File, at: &entry_at }, false));
    }
    let cli_is_default = overrides.for_every_worker;
    let cli = "the command line";
    batch_layers.push((Layer { keys: overrides.batch.clone(), source: Source::Cli, at: cli }, cli_is_default));
    let batch = BatchSettings::merge(worker.name, style, &batch_layers)?;

    let at = "#[kafka_worker]";
    let mut concurrency_layers = vec![
        (Layer { keys: ConcurrencyKeys::from(&registration.concurrency), source: Source::Macro, at }, false),
        (Layer { keys: file.kafka.consumer.concurrency_keys(), source: Source::File, at: &defaults_at }, true),
    ];
    if let Some(entry) = entry {
        concurrency_layers.push((Layer { keys: entry.concurrency_keys(), source: Source::File, at: &entry_at }, false));
    }
    let keys = overrides.concurrency.clone();
    concurrency_layers.push((Layer { keys, source: Source::Cli, at: cli }, cli_is_default));
    let concurrency = Concurrency::merge(worker.name, style, &concurrency_layers)?;

    Ok(WorkerConfig {
        name: worker.name.to_owned(),
        rust_path: registration.rust_path,
        style,
        group,
        subscription,
        default_topics: file.kafka.consumer.topics.clone().unwrap_or_default(),
        topic_prefix: global.topic_prefix.clone(),
        client_settings,
        failure,
        batch,
        concurrency,
    })
}

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
    use crate::config::{CliLayer, EnvLayer};
    use crate::test_support::registration;
    use std::path::Path;
    use std::time::Duration;

    fn file(text: &str) -> ConfigFile {
        ConfigFile::parse(text, Path::new("config.json")).unwrap().0
    }

    fn plan(file: &ConfigFile, env: &EnvLayer, cli: &CliLayer, overrides: &WorkerOverrides) -> WorkerConfig {
        let registered = [registration("es", &["macro-topic"], Some("macro-group"))];
        let (catalog, _) = catalog(&registered, file);
        let global = GlobalSettings::merge(file, env, cli).unwrap();
        merge_worker_config(&catalog[0], WorkerStyle::PerMessage, file, &global, overrides).unwrap()
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
            give_up_after_ms: Some(9),
        };
        let global = GlobalSettings::merge(&file, &env, &cli).unwrap();
        assert_eq!(global.give_up_after, Some(Sourced::new(Duration::from_millis(9), Source::Cli)));
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
        let overrides = WorkerOverrides {
            regex_topic: Some("cli-.*".into()),
            group: Some("cli-group".into()),
            ..Default::default()
        };
        let plan = plan(&file, &EnvLayer::default(), &CliLayer::default(), &overrides);
        assert_eq!(plan.group, Sourced::new("cli-group".to_owned(), Source::Cli));
        assert_eq!(plan.subscription, Some(Sourced::new(Subscription::Regex("cli-.*".into()), Source::Cli)));
        assert_eq!(
            plan.client_settings["session.timeout.ms"],
            Sourced::new("6000".to_owned(), Source::FileSection("the worker's connection_settings"))
        );
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
        assert_eq!(
            plan.client_settings["auto.offset.reset"],
            Sourced::new("latest".to_owned(), Source::FileSection("kafka.consumer_connection_settings"))
        );
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
    fn a_regex_worker_refreshes_metadata_every_30_s_unless_set() {
        let regex = file(r#"{"kafka": {"consumer": {"workers": [{"name": "es", "regex_topic": "^events-.*"}]}}}"#);
        let merged = plan(&regex, &EnvLayer::default(), &CliLayer::default(), &WorkerOverrides::default());
        assert_eq!(merged.client_settings[METADATA_REFRESH], Sourced::new("30000".to_owned(), Source::Default));

        let set = file(
            r#"{"kafka": {"consumer_connection_settings": {"topic.metadata.refresh.interval.ms": 1000},
            "consumer": {"workers": [{"name": "es", "regex_topic": "^events-.*"}]}}}"#,
        );
        let merged = plan(&set, &EnvLayer::default(), &CliLayer::default(), &WorkerOverrides::default());
        assert_eq!(merged.client_settings[METADATA_REFRESH].value, "1000");

        let topics = file(r#"{"kafka": {"consumer": {"workers": [{"name": "es", "topics": ["t"]}]}}}"#);
        let merged = plan(&topics, &EnvLayer::default(), &CliLayer::default(), &WorkerOverrides::default());
        assert!(!merged.client_settings.contains_key(METADATA_REFRESH));
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
                ConsumerSpec { group: "g-p-a".into(), subscription: vec!["p-a".into()] },
                ConsumerSpec { group: "g-p-b".into(), subscription: vec!["p-b".into()] },
                ConsumerSpec { group: "g-p-d".into(), subscription: vec!["p-d".into()] },
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
        let alias =
            merge_worker_config(&catalog[0], WorkerStyle::PerMessage, &file, &global, &WorkerOverrides::default())
                .unwrap();
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
    fn the_failure_policy_merges_attribute_file_defaults_entry_and_command_line() {
        let registration: &'static WorkerRegistration = Box::leak(Box::new(WorkerRegistration {
            name: "es",
            rust_path: "app::es",
            group: None,
            topics: &["orders"],
            regex_topic: None,
            failure: crate::worker::registry::FailureAttrs {
                retries: Some(1),
                retry_backoff_ms: Some(50),
                retry_backoff_max_ms: Some(5000),
                dead_letter_topic: Some("attr-dlq"),
                on_decode_error: None,
            },
            batch: Default::default(),
            concurrency: Default::default(),
            build: || unreachable!("not built in these tests"),
        }));
        let layered = file(
            r#"{"kafka": {"consumer": {"retries": 2, "retry_backoff_ms": 70,
            "workers": [{"name": "es", "retries": 3, "dead_letter_topic": "{topic}-dlq"}]}}}"#,
        );
        let (entries, _) = catalog(&[registration], &layered);
        let global = GlobalSettings::merge(&layered, &EnvLayer::default(), &CliLayer::default()).unwrap();
        let cli = WorkerOverrides {
            failure: FailureKeys { on_decode_error: Some("stop".into()), ..Default::default() },
            ..Default::default()
        };
        let config = merge_worker_config(&entries[0], WorkerStyle::PerMessage, &layered, &global, &cli).unwrap();
        let failure = &config.failure;
        assert_eq!(failure.retries, Sourced::new(3, Source::File));
        assert_eq!(failure.retry_backoff, Sourced::new(Duration::from_millis(70), Source::File));
        assert_eq!(failure.retry_backoff_max, Sourced::new(Duration::from_millis(5000), Source::Macro));
        assert_eq!(failure.dead_letter_topic, Some(Sourced::new("{topic}-dlq".to_owned(), Source::File)));
        assert_eq!(failure.on_decode_error.source, Source::Cli);

        // A dead-letter topic that is the worker's own topic is refused when it starts.
        let own = file(r#"{"kafka": {"consumer": {"workers": [{"name": "es", "dead_letter_topic": "{topic}"}]}}}"#);
        let (entries, _) = catalog(&[registration], &own);
        let global = GlobalSettings::merge(&own, &EnvLayer::default(), &CliLayer::default()).unwrap();
        let config =
            merge_worker_config(&entries[0], WorkerStyle::PerMessage, &own, &global, &WorkerOverrides::default())
                .unwrap();
        let err = config.consumers().unwrap_err().to_string();
        assert!(err.contains("is its own source topic `orders`"), "{err}");
    }
}
