//! config.json: the original guillotina_kafka schema, read with line and column in every
//! error and a warning for every unknown key under `kafka`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer};
use serde::Deserialize;

use super::batch::BatchKeys;
use super::concurrency::ConcurrencyKeys;
use super::env_refs;
use super::policy::FailureKeys;
use super::secrets;
use super::topic_names::{pattern_problem, topic_name_problem};
use crate::error::Error;

/// The file's contents. Top-level keys other than `applications` and `kafka` belong to the
/// app; they are kept in [`raw`](Self::raw) and handed to workers as settings.
#[derive(Debug, Default)]
pub struct ConfigFile {
    /// Where it was read from; `None` when there is no file.
    pub path: Option<PathBuf>,
    pub kafka: KafkaSection,
    /// The whole file as JSON.
    pub raw: serde_json::Value,
}

#[derive(Debug, Default, Deserialize)]
struct FileSchema {
    #[serde(default)]
    #[allow(dead_code)]
    applications: Vec<String>,
    #[serde(default)]
    kafka: KafkaSection,
}

/// The `kafka` section.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct KafkaSection {
    #[serde(deserialize_with = "broker_list")]
    pub brokers: Option<Vec<String>>,
    pub topic_prefix: Option<String>,
    pub consumer: ConsumerSection,
    /// librdkafka settings for every client: consumers, the producer, metadata lookups.
    #[serde(deserialize_with = "settings_object")]
    pub connection_settings: Settings,
    /// librdkafka settings for every worker's consumer, above `connection_settings`.
    #[serde(deserialize_with = "settings_object")]
    pub consumer_connection_settings: Settings,
    /// librdkafka settings for the producer, above `connection_settings`.
    #[serde(deserialize_with = "settings_object")]
    pub producer: Settings,
    /// The HTTP server of long-running commands.
    pub http: HttpSection,
    /// How `create-topics` creates each topic, by name without the prefix; the entry `*`
    /// is the default for topics without one.
    #[serde(deserialize_with = "topic_entries")]
    pub topics: BTreeMap<String, TopicEntry>,
}

/// The `kafka.http` section.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct HttpSection {
    /// `ADDR:PORT` to serve on; off when absent.
    pub listen: Option<String>,
    /// The bearer token `POST /topics/{topic}` requires (`KAFKA_HTTP_TOKEN` overrides it).
    pub token: Option<String>,
    /// Turns `POST /topics/{topic}` on.
    pub produce: Option<bool>,
    /// The largest body `POST /topics/{topic}` takes [default: 1 MiB].
    pub max_body_bytes: Option<usize>,
}

/// One entry of `kafka.topics`. A key left out falls back to the `*` entry, then to the
/// broker's default.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicEntry {
    pub partitions: Option<i32>,
    pub replication_factor: Option<i32>,
    /// Topic configuration (`retention.ms`, `cleanup.policy`, ...), passed to the broker.
    #[serde(default)]
    pub config: Settings,
}

/// Declares a config.json section that also takes the failure-policy, batch and concurrency keys
/// (`kafka.consumer` for every worker, and each worker's entry), and the methods that read
/// them.
macro_rules! section_with_failure_keys {
    ($(#[$attr:meta])* pub struct $name:ident { $($body:tt)* }) => {
        $(#[$attr])*
        pub struct $name {
            $($body)*
            /// How many times a failed message is tried again.
            pub retries: Option<i64>,
            /// The wait before the first retry, in milliseconds.
            pub retry_backoff_ms: Option<i64>,
            /// The longest wait before a retry, in milliseconds.
            pub retry_backoff_max_ms: Option<i64>,
            /// Where a message goes once its tries are used up.
            pub dead_letter_topic: Option<String>,
            /// `dead_letter` or `stop`.
            pub on_decode_error: Option<String>,
            /// A batch worker's most messages per batch.
            pub take: Option<i64>,
            /// How long a batch worker's batch waits for more after its first message, in ms.
            pub within_ms: Option<i64>,
            /// `partition`, `key` or `none`: which messages may be handled at the same time.
            pub ordering: Option<String>,
            /// How many messages may be in the handler at once, per consumer.
            pub max_in_flight: Option<i64>,
        }

        impl $name {
            pub(crate) fn failure_keys(&self) -> FailureKeys {
                FailureKeys {
                    retries: self.retries,
                    retry_backoff_ms: self.retry_backoff_ms,
                    retry_backoff_max_ms: self.retry_backoff_max_ms,
                    dead_letter_topic: self.dead_letter_topic.clone(),
                    on_decode_error: self.on_decode_error.clone(),
                }
            }

            pub(crate) fn batch_keys(&self) -> BatchKeys {
                BatchKeys { take: self.take, within_ms: self.within_ms }
            }

            pub(crate) fn concurrency_keys(&self) -> ConcurrencyKeys {
                ConcurrencyKeys { ordering: self.ordering.clone(), max_in_flight: self.max_in_flight }
            }
        }
    };
}

section_with_failure_keys! {
    /// `kafka.consumer`.
    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    pub struct ConsumerSection {
        pub workers: Vec<WorkerEntry>,
        /// Default topics, added to every worker without `regex_topic`.
        #[serde(deserialize_with = "string_or_list")]
        pub topics: Option<Vec<String>>,
        /// How long in-flight messages may take to finish at shutdown.
        pub drain_timeout_ms: Option<u64>,
        /// How long a worker waits for unreachable brokers before it stops with an error;
        /// 0 or absent: it waits as long as it runs.
        pub give_up_after_ms: Option<u64>,
        /// With `start-consumers`, a worker that stops stops the others too.
        pub stop_all_on_failure: Option<bool>,
    }
}

section_with_failure_keys! {
    /// One entry of `kafka.consumer.workers`.
    #[derive(Debug, Default, Deserialize)]
    pub struct WorkerEntry {
        pub name: String,
        #[serde(default)]
        pub group: Option<String>,
        /// The annotated function's Rust path, `module::function`.
        #[serde(default)]
        pub path: Option<String>,
        #[serde(default, deserialize_with = "string_or_list")]
        pub topics: Option<Vec<String>>,
        #[serde(default)]
        pub regex_topic: Option<String>,
        /// librdkafka settings for this worker's consumer.
        #[serde(default, deserialize_with = "settings_object")]
        pub connection_settings: Settings,
    }
}

/// librdkafka settings, passed through as they are. JSON numbers and booleans are accepted
/// and turned into the strings librdkafka expects; `${NAME}` in a value is replaced with the
/// environment variable when the file is loaded (see `env_refs`).
pub type Settings = BTreeMap<String, SettingValue>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingValue(pub String);

// The errors below name the JSON type of a wrong value, never the value: it may be a secret.
impl<'de> Deserialize<'de> for SettingValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::String(s) => Ok(SettingValue(s)),
            serde_json::Value::Number(n) => Ok(SettingValue(n.to_string())),
            serde_json::Value::Bool(b) => Ok(SettingValue(b.to_string())),
            other => Err(de::Error::custom(format!(
                "a librdkafka setting must be a string, a number or a boolean, not {}",
                json_type(&other)
            ))),
        }
    }
}

/// A settings object; anything else is an error that names its JSON type only.
fn settings_object<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Settings, D::Error> {
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Null => Ok(Settings::new()),
        serde_json::Value::Object(map) => map
            .into_iter()
            .map(|(key, value)| {
                let value = SettingValue::deserialize(value)
                    .map_err(|err| de::Error::custom(format!("setting \"{key}\": {err}")))?;
                Ok((key, value))
            })
            .collect(),
        other => Err(de::Error::custom(format!(
            "librdkafka settings must be an object of \"key\": value pairs, not {}",
            json_type(&other)
        ))),
    }
}

fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A list of strings, or one comma-separated string; `null` means unset.
fn string_or_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<String>>, D::Error> {
    list_of(deserializer, "strings")
}

/// [`string_or_list`] for brokers: the error says what each one looks like.
fn broker_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<String>>, D::Error> {
    list_of(deserializer, "host:port strings")
}

fn list_of<'de, D: Deserializer<'de>>(deserializer: D, items: &str) -> Result<Option<Vec<String>>, D::Error> {
    let expected = |found: &serde_json::Value| {
        de::Error::custom(format!("expected a list of {items} or one comma-separated string, not {}", json_type(found)))
    };
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => Ok(Some(split_list(&s))),
        serde_json::Value::Array(list) => list
            .into_iter()
            .map(|item| match item {
                serde_json::Value::String(s) => Ok(s),
                other => Err(expected(&other)),
            })
            .collect::<Result<_, _>>()
            .map(Some),
        other => Err(expected(&other)),
    }
}

/// `kafka.topics`, each entry read on its own so that an error names its key path (serde_json
/// adds the line and column).
fn topic_entries<'de, D: Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<String, TopicEntry>, D::Error> {
    let raw = BTreeMap::<String, serde_json::Value>::deserialize(deserializer)?;
    let mut entries = BTreeMap::new();
    for (name, value) in raw {
        let at = format!("kafka.topics.{name}");
        if name.trim().is_empty() {
            return Err(de::Error::custom(format!("{at}: a topic name cannot be empty")));
        }
        let entry = TopicEntry::deserialize(value).map_err(|err| de::Error::custom(format!("{at}: {err}")))?;
        for (key, value) in [("partitions", entry.partitions), ("replication_factor", entry.replication_factor)] {
            if let Some(value) = value.filter(|v| *v < 1) {
                return Err(de::Error::custom(format!(
                    "{at}: `{key}` = {value}: must be at least 1 (leave it out for the broker's default)"
                )));
            }
        }
        entries.insert(name, entry);
    }
    Ok(entries)
}

/// Splits `a,b, c` into its non-empty parts.
pub(crate) fn split_list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

impl ConfigFile {
    /// Reads the file given with `-c`, or `config.json` in the working directory when it
    /// exists. No file is an empty configuration.
    pub fn load(explicit: Option<&Path>) -> Result<Self, Error> {
        let path = match explicit {
            Some(path) => path.to_path_buf(),
            None => {
                let default = PathBuf::from("config.json");
                if !default.exists() {
                    return Ok(Self::default());
                }
                default
            }
        };
        let text = std::fs::read_to_string(&path).map_err(|err| {
            Error::Config(format!(
                "cannot read the configuration file {}: {err}; check the path given with -c/--config",
                path.display()
            ))
        })?;
        let (config, unknown) = Self::parse(&text, &path)?;
        for key in unknown {
            tracing::warn!("{}: unknown key `{key}` is ignored; check its spelling", path.display());
        }
        Ok(config)
    }

    /// Parses the text of `path`; returns the config and the unknown keys under `kafka`. The
    /// values of secret keys are remembered first, to be masked in any error about them, and
    /// `${NAME}` in client settings is replaced from the environment.
    pub fn parse(text: &str, path: &Path) -> Result<(Self, Vec<String>), Error> {
        Self::parse_with_env(text, path, &|name| std::env::var(name).ok())
    }

    /// [`parse`](Self::parse), with `lookup` reading environment variables.
    fn parse_with_env(
        text: &str,
        path: &Path,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(Self, Vec<String>), Error> {
        let invalid = |err: serde_json::Error| {
            let message = err.to_string();
            Error::Config(format!(
                "{}:{}:{}: not valid JSON: {}",
                path.display(),
                err.line(),
                err.column(),
                without_location(&message)
            ))
        };
        let raw: serde_json::Value = serde_json::from_str(text).map_err(invalid)?;
        if !raw.is_object() {
            return Err(Error::Config(format!(
                "{}: the configuration must be a JSON object, such as {{\"kafka\": {{\"brokers\": \
                 [\"host:9092\"]}}}}, not {}",
                path.display(),
                json_type(&raw)
            )));
        }
        secrets::remember_in_json(&raw);
        let mut unknown = Vec::new();
        let mut json = serde_json::Deserializer::from_str(text);
        let mut note_unknown = |ignored: serde_ignored::Path<'_>| {
            let key = ignored.to_string();
            // Top-level keys other than `kafka` are the app's own settings.
            if key.starts_with("kafka.") {
                unknown.push(key);
            }
        };
        let ignoring = serde_ignored::Deserializer::new(&mut json, &mut note_unknown);
        let schema: FileSchema =
            serde_path_to_error::deserialize(ignoring).map_err(|err| schema_error(path, text, &err))?;
        json.end().map_err(invalid)?;
        let mut kafka = schema.kafka;
        resolve_env_refs(&mut kafka, path, lookup)?;
        for (index, entry) in kafka.consumer.workers.iter().enumerate() {
            let at = format!("{}: kafka.consumer.workers[{index}]", path.display());
            if entry.name.trim().is_empty() {
                return Err(Error::Config(format!("{at}: `name` is missing or empty")));
            }
            check_topics(entry.topics.iter().flatten(), &format!("{at}.topics"))?;
            if let Some(problem) = entry.regex_topic.as_deref().and_then(pattern_problem) {
                return Err(Error::Config(format!(
                    "{at}.regex_topic: {:?} is {problem}",
                    entry.regex_topic.as_deref().unwrap_or_default()
                )));
            }
            if entry.topics.is_some() && entry.regex_topic.is_some() {
                return Err(Error::Config(format!(
                    "{at} (`{}`): `topics` and `regex_topic` cannot be used together; keep one",
                    entry.name
                )));
            }
        }
        check_topics(kafka.consumer.topics.iter().flatten(), &format!("{}: kafka.consumer.topics", path.display()))?;
        if let Some((first, second)) = duplicate_name(&kafka.consumer.workers) {
            return Err(Error::Config(format!(
                "{}: kafka.consumer.workers[{first}] and [{second}] are both named `{}`",
                path.display(),
                kafka.consumer.workers[first].name
            )));
        }
        Ok((Self { path: Some(path.to_path_buf()), kafka, raw }, unknown))
    }

    /// What error messages call this file.
    pub fn display_name(&self) -> String {
        self.path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "config.json".into())
    }
}

/// A value of the wrong kind: the file, line and column, the key path, and what was expected
/// in words a user knows. Values are never echoed (they may be secrets): serde's
/// `invalid type: integer `5`, expected u64` becomes `expected a whole number, not a number`.
fn schema_error(path: &Path, text: &str, err: &serde_path_to_error::Error<serde_json::Error>) -> Error {
    let inner = err.inner();
    let message = inner.to_string();
    let message = in_user_words(without_location(&message));
    let key = err.path().to_string();
    let message = if key == "." || message.starts_with(&key) { message } else { format!("{key}: {message}") };
    let (line, column) = end_of_value(text, inner.line(), inner.column());
    Error::Config(format!("{}:{line}:{column}: {message}", path.display()))
}

/// serde_json reports an error about a whole value where it stopped reading: at the `}`, `]`
/// or `,` after it, maybe lines below. This is the value's last character instead.
fn end_of_value(text: &str, line: usize, column: usize) -> (usize, usize) {
    let line_start: usize = text.split_inclusive('\n').take(line.saturating_sub(1)).map(str::len).sum();
    let at = (line_start + column.saturating_sub(1)).min(text.len());
    if !text.is_char_boundary(at) {
        return (line, column);
    }
    let past_the_value = text[at..].chars().next().is_none_or(|c| c.is_whitespace() || "}],".contains(c));
    let Some(end) = text[..at].rfind(|c: char| !c.is_whitespace()).filter(|_| past_the_value) else {
        return (line, column);
    };
    let line = text[..end].matches('\n').count() + 1;
    let column = text[..end].rfind('\n').map_or(end, |newline| end - newline - 1) + 1;
    (line, column)
}

/// serde_json's message without the location it appends, which goes in front instead.
fn without_location(message: &str) -> &str {
    message.rfind(" at line ").map_or(message, |at| &message[..at])
}

/// serde's `invalid type: X, expected Y` (and `invalid value`) in the words of JSON, without
/// the value.
fn in_user_words(message: &str) -> String {
    let Some(rest) = message.strip_prefix("invalid type: ").or_else(|| message.strip_prefix("invalid value: ")) else {
        return message.to_owned();
    };
    let Some((found, expected)) = rest.split_once(", expected ") else {
        return message.to_owned();
    };
    let found = match found.split([' ', '`']).next().unwrap_or(found) {
        "integer" | "floating" => "a number",
        "string" => "a string",
        "boolean" => "a boolean",
        "sequence" => "an array",
        "map" => "an object",
        "null" | "unit" => "null",
        _ => "another kind of value",
    };
    let expected = match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number (0 or more)",
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a boolean" => "true or false",
        "a sequence" => "an array",
        "a map" => "an object",
        other if other.starts_with("struct ") => "an object",
        other => other,
    };
    format!("expected {expected}, not {found}")
}

/// Replaces `${NAME}` in every settings object of the `kafka` section.
fn resolve_env_refs(
    kafka: &mut KafkaSection,
    path: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), Error> {
    let file = path.display();
    env_refs::resolve(&mut kafka.connection_settings, &format!("{file}: kafka.connection_settings"), lookup)?;
    let at = format!("{file}: kafka.consumer_connection_settings");
    env_refs::resolve(&mut kafka.consumer_connection_settings, &at, lookup)?;
    env_refs::resolve(&mut kafka.producer, &format!("{file}: kafka.producer"), lookup)?;
    for (index, entry) in kafka.consumer.workers.iter_mut().enumerate() {
        let at = format!("{file}: kafka.consumer.workers[{index}].connection_settings");
        env_refs::resolve(&mut entry.connection_settings, &at, lookup)?;
    }
    Ok(())
}

/// Each topic name as Kafka would take it (the prefix is checked with it when a worker starts).
fn check_topics<'a>(topics: impl IntoIterator<Item = &'a String>, at: &str) -> Result<(), Error> {
    for topic in topics {
        if let Some(problem) = topic_name_problem(topic) {
            return Err(Error::Config(format!("{at}: {topic:?}: {problem}")));
        }
    }
    Ok(())
}

fn duplicate_name(workers: &[WorkerEntry]) -> Option<(usize, usize)> {
    workers
        .iter()
        .enumerate()
        .find_map(|(i, a)| workers[i + 1..].iter().position(|b| b.name == a.name).map(|j| (i, i + 1 + j)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(ConfigFile, Vec<String>), Error> {
        ConfigFile::parse(text, Path::new("config.json"))
    }

    #[test]
    fn reads_the_original_schema() {
        let (config, unknown) = parse(
            r#"{
                "applications": ["guillotina_kafka"],
                "databases": {"db": {}},
                "kafka": {
                    "topic_prefix": "prefix-",
                    "brokers": ["a:9092", "b:9092"],
                    "consumer_connection_settings": {"session.timeout.ms": 6000, "check.crcs": true},
                    "consumer": {
                        "workers": [{"name": "my_consumer", "group": "my_group",
                                     "path": "absolut.path.to.my_consumer", "topics": ["my-topic"],
                                     "connection_settings": {"fetch.min.bytes": "1"}}],
                        "topics": ["default-topic"]
                    },
                    "producer": {"linger.ms": 5}
                }
            }"#,
        )
        .unwrap();
        assert!(unknown.is_empty(), "{unknown:?}");
        let kafka = &config.kafka;
        assert_eq!(kafka.brokers.as_deref(), Some(&["a:9092".to_string(), "b:9092".to_string()][..]));
        assert_eq!(kafka.consumer.topics.as_deref(), Some(&["default-topic".to_string()][..]));
        assert_eq!(kafka.consumer_connection_settings["session.timeout.ms"].0, "6000");
        assert_eq!(kafka.consumer_connection_settings["check.crcs"].0, "true");
        assert_eq!(kafka.producer["linger.ms"].0, "5");
        assert_eq!(kafka.consumer.workers[0].connection_settings["fetch.min.bytes"].0, "1");
        assert!(config.raw.get("databases").is_some());
    }

    #[test]
    fn names_unknown_keys_under_kafka() {
        let (_, unknown) =
            parse(r#"{"kafka": {"brokerz": "x", "consumer": {"workers": [{"name": "a", "topix": []}]}}, "app": 1}"#)
                .unwrap();
        assert_eq!(unknown, vec!["kafka.brokerz".to_string(), "kafka.consumer.workers.0.topix".to_string()]);
    }

    #[test]
    fn invalid_json_gives_file_line_and_column() {
        let err = parse("{\n  \"kafka\": {\n    \"brokers\": [\"a\",]\n  }\n}").unwrap_err().to_string();
        assert!(err.starts_with("config.json:3:"), "{err}");
        let err = parse("{\"kafka\": {\"brokers\": 5}}").unwrap_err().to_string();
        assert!(err.starts_with("config.json:1:"), "{err}");
    }

    #[test]
    fn rejects_topics_with_regex_and_duplicate_names() {
        let err =
            parse(r#"{"kafka": {"consumer": {"workers": [{"name": "a", "topics": ["t"], "regex_topic": "r"}]}}}"#)
                .unwrap_err()
                .to_string();
        assert!(err.contains("cannot be used together"), "{err}");
        let err =
            parse(r#"{"kafka": {"consumer": {"workers": [{"name": "a"}, {"name": "a"}]}}}"#).unwrap_err().to_string();
        assert!(err.contains("both named `a`"), "{err}");
    }

    #[test]
    fn reads_topic_entries_and_names_the_key_path_of_a_bad_one() {
        let (config, _) = parse(
            r#"{"kafka": {"topics": {"*": {"replication_factor": 3},
                "orders": {"partitions": 6, "config": {"retention.ms": 60000, "cleanup.policy": "delete"}}}}}"#,
        )
        .unwrap();
        let topics = &config.kafka.topics;
        assert_eq!(topics["*"], TopicEntry { replication_factor: Some(3), ..Default::default() });
        assert_eq!(topics["orders"].partitions, Some(6));
        assert_eq!(topics["orders"].config["retention.ms"].0, "60000");

        let err = parse("{\"kafka\": {\"topics\": {\n  \"orders\": {\"partitons\": 6}}}}").unwrap_err().to_string();
        assert!(err.starts_with("config.json:2:"), "{err}");
        assert!(err.contains("kafka.topics.orders: unknown field `partitons`, expected one of"), "{err}");
        let err = parse(r#"{"kafka": {"topics": {"orders": {"partitions": 0}}}}"#).unwrap_err().to_string();
        assert!(err.contains("kafka.topics.orders: `partitions` = 0: must be at least 1"), "{err}");
        let err =
            parse(r#"{"kafka": {"topics": {"orders": {"config": {"retention.ms": [1]}}}}}"#).unwrap_err().to_string();
        assert!(err.contains("kafka.topics.orders: a librdkafka setting must be"), "{err}");
    }

    #[test]
    fn a_wrong_setting_value_is_named_by_type_never_echoed() {
        let err =
            parse(r#"{"kafka": {"connection_settings": {"sasl.password": ["ARR-s3cr3t"]}}}"#).unwrap_err().to_string();
        assert!(err.contains("setting \"sasl.password\": a librdkafka setting must be a string"), "{err}");
        assert!(err.contains("not an array") && !err.contains("ARR-s3cr3t"), "{err}");
        let err = parse(r#"{"kafka": {"producer": "STR-s3cr3t"}}"#).unwrap_err().to_string();
        assert!(err.contains("must be an object") && !err.contains("STR-s3cr3t"), "{err}");
        let err = parse(r#"{"kafka": {"consumer": {"workers": [{"name": "a", "connection_settings": 5}]}}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a number"), "{err}");
    }

    #[test]
    fn every_settings_object_takes_environment_variables() {
        let lookup = |name: &str| (name == "PW").then(|| "pw".to_owned());
        let (config, _) = ConfigFile::parse_with_env(
            r#"{"kafka": {"connection_settings": {"sasl.password": "${PW}"},
                "consumer_connection_settings": {"a": "x${PW}"}, "producer": {"b": "${PW}"},
                "consumer": {"workers": [{"name": "w", "connection_settings": {"c": "$${PW}"}}]}}}"#,
            Path::new("config.json"),
            &lookup,
        )
        .unwrap();
        let kafka = &config.kafka;
        assert_eq!(kafka.connection_settings["sasl.password"].0, "pw");
        assert_eq!(kafka.consumer_connection_settings["a"].0, "xpw");
        assert_eq!(kafka.producer["b"].0, "pw");
        assert_eq!(kafka.consumer.workers[0].connection_settings["c"].0, "${PW}");
        let err = parse(
            r#"{"kafka": {"consumer": {"workers": [{"name": "w",
            "connection_settings": {"sasl.password": "${KAFKA_RUNTIME_TEST_UNSET_VARIABLE}"}}]}}}"#,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "config.json: kafka.consumer.workers[0].connection_settings.\"sasl.password\": the environment \
             variable KAFKA_RUNTIME_TEST_UNSET_VARIABLE is not set; export it, or put the value in the file"
        );
    }

    #[test]
    fn a_value_of_the_wrong_kind_names_the_key_the_line_and_what_is_expected() {
        let err = parse("{\"kafka\": {\n  \"brokers\": 5}}").unwrap_err().to_string();
        assert_eq!(
            err,
            "config.json:2:14: kafka.brokers: expected a list of host:port strings or one comma-separated \
             string, not a number"
        );
        let err = parse(r#"{"kafka": {"consumer": {"drain_timeout_ms": "30s"}}}"#).unwrap_err().to_string();
        assert!(
            err.ends_with("kafka.consumer.drain_timeout_ms: expected a whole number (0 or more), not a string"),
            "{err}"
        );
        assert!(!err.contains("30s"), "the value is not echoed: {err}");
        let err =
            parse(r#"{"kafka": {"consumer": {"workers": [{"name": "a", "topics": [1]}]}}}"#).unwrap_err().to_string();
        assert!(err.contains("kafka.consumer.workers[0].topics: expected a list of strings"), "{err}");
        let err = parse(r#"{"kafka": {"http": {"token": 12345678}}}"#).unwrap_err().to_string();
        assert!(err.ends_with("kafka.http.token: expected a string, not a number"), "{err}");
        let err = parse(r#"{"kafka": "brokers"}"#).unwrap_err().to_string();
        assert!(err.ends_with("kafka: expected an object, not a string"), "{err}");
    }

    #[test]
    fn a_file_that_is_not_an_object_says_what_it_should_be() {
        let err = parse(r#"[{"kafka": {}}]"#).unwrap_err().to_string();
        assert!(err.starts_with("config.json: the configuration must be a JSON object"), "{err}");
        assert!(err.ends_with("not an array"), "{err}");
        let err = parse("{\"kafka\": ").unwrap_err().to_string();
        assert_eq!(err, "config.json:1:10: not valid JSON: EOF while parsing a value");
    }

    #[test]
    fn topic_names_and_patterns_are_checked_where_they_are_written() {
        let err = parse(r#"{"kafka": {"consumer": {"workers": [{"name": "a", "topics": ["ok", "not ok"]}]}}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("config.json: kafka.consumer.workers[0].topics: \"not ok\": a topic name may"),
            "{err}"
        );
        let err = parse(r#"{"kafka": {"consumer": {"workers": [{"name": "a", "regex_topic": "("}]}}}"#)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "config.json: kafka.consumer.workers[0].regex_topic: \"(\" is not a valid regular expression (unclosed group)"
        );
        let err = parse(r#"{"kafka": {"consumer": {"topics": ""}}}"#).unwrap();
        assert_eq!(err.0.kafka.consumer.topics, Some(vec![]), "an empty string is no topic");
        let err = parse(r#"{"kafka": {"consumer": {"topics": [".."]}}}"#).unwrap_err().to_string();
        assert!(err.starts_with("config.json: kafka.consumer.topics: \"..\": a topic cannot be named"), "{err}");
    }

    #[test]
    fn null_prefix_is_no_prefix() {
        let (config, _) = parse(r#"{"kafka": {"topic_prefix": null, "brokers": "a:1, b:2"}}"#).unwrap();
        assert_eq!(config.kafka.topic_prefix, None);
        assert_eq!(config.kafka.brokers.unwrap(), vec!["a:1", "b:2"]);
    }
}
