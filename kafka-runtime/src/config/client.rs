//! librdkafka client settings, built one way for every client the runtime creates: the
//! runtime's defaults (and the embedded cluster's), the config.json layers with reserved keys
//! refused, the enforced settings on top; and what this librdkafka build supports.

use std::collections::BTreeMap;

use rdkafka::config::ClientConfig;

use super::file::{KafkaSection, Settings, WorkerEntry};
use super::layers::{Source, Sourced};
use super::secrets;

/// Consumer defaults below every layer. `fetch.queue.backoff.ms` is lowered from librdkafka's
/// 1000 ms, which stalls fetching for a second whenever the local queue fills up. (How far a
/// consumer fetches ahead is sized at start, from its partitions: see `consume::prefetch`.)
const CONSUMER_DEFAULTS: &[(&str, &str)] = &[("auto.offset.reset", "earliest"), ("fetch.queue.backoff.ms", "10")];

/// Extra consumer defaults on the embedded mock cluster. It answers an empty fetch only after
/// `fetch.wait.max.ms` (new data does not wake it), and it keeps 5 MiB per partition: a
/// consumer that waits too long can find its position deleted. A rebalance there waits
/// `session.timeout.ms` less a second.
const EMBEDDED_CONSUMER_DEFAULTS: &[(&str, &str)] = &[("fetch.wait.max.ms", "10"), ("session.timeout.ms", "6000")];

/// Consumer settings the runtime always applies, whatever the layers say: offsets are stored
/// only after a message is done. (With librdkafka's default `enable.auto.commit=true`, stored
/// offsets are committed in the background; they are also committed on revoke and at close.)
const CONSUMER_ENFORCED: &[(&str, &str)] = &[("enable.auto.offset.store", "false")];

/// Keys the runtime sets itself; giving them in client settings has no effect.
pub const RESERVED_SETTINGS: &[(&str, &str)] = &[
    ("group.id", "set the worker's `group` instead"),
    ("bootstrap.servers", "set `kafka.brokers`, KAFKA_BROKERS or --brokers instead"),
    ("metadata.broker.list", "set `kafka.brokers`, KAFKA_BROKERS or --brokers instead"),
];

/// One client's librdkafka settings, each with the layer it came from.
#[derive(Clone, Debug, Default)]
pub(crate) struct ClientSettings(BTreeMap<String, Sourced<String>>);

impl ClientSettings {
    /// A worker's consumer: defaults, then config.json's `kafka.connection_settings`,
    /// `kafka.consumer_connection_settings` and the worker's `connection_settings` (lowest
    /// first), then the enforced settings. `who` names the client in warnings.
    pub(crate) fn consumer(embedded: bool, kafka: &KafkaSection, entry: Option<&WorkerEntry>, who: &str) -> Self {
        let mut settings = Self::default();
        let embedded = if embedded { EMBEDDED_CONSUMER_DEFAULTS } else { &[] };
        settings.add(CONSUMER_DEFAULTS.iter().chain(embedded), Source::Default);
        settings.add_file_layer(&kafka.connection_settings, "kafka.connection_settings", who);
        settings.add_file_layer(&kafka.consumer_connection_settings, "kafka.consumer_connection_settings", who);
        if let Some(entry) = entry {
            settings.add_file_layer(&entry.connection_settings, "the worker's connection_settings", who);
        }
        settings.add(CONSUMER_ENFORCED, Source::Enforced);
        settings
    }

    /// `create-topics`' admin client: `kafka.connection_settings`, then
    /// `kafka.consumer_connection_settings`, so it reaches the brokers the way the workers do.
    /// (Consumer-only keys there are ignored by librdkafka.)
    pub(crate) fn admin(kafka: &KafkaSection) -> Self {
        let mut settings = Self::default();
        settings.add_file_layer(&kafka.connection_settings, "kafka.connection_settings", "create-topics");
        settings.add_file_layer(
            &kafka.consumer_connection_settings,
            "kafka.consumer_connection_settings",
            "create-topics",
        );
        settings
    }

    /// The shared producer: config.json's `kafka.connection_settings`, then `kafka.producer`.
    pub(crate) fn producer(kafka: &KafkaSection) -> Self {
        let mut settings = Self::default();
        settings.add_file_layer(&kafka.connection_settings, "kafka.connection_settings", "the producer");
        settings.add_file_layer(&kafka.producer, "kafka.producer", "the producer");
        settings
    }

    fn add<'a>(&mut self, pairs: impl IntoIterator<Item = &'a (&'a str, &'a str)>, source: Source) {
        for (key, value) in pairs {
            self.0.insert((*key).to_owned(), Sourced::new((*value).to_owned(), source));
        }
    }

    /// `section` names the layer in `config`'s listing and in warnings.
    fn add_file_layer(&mut self, layer: &Settings, section: &'static str, who: &str) {
        for (key, value) in layer {
            if let Some((_, instead)) = RESERVED_SETTINGS.iter().find(|(reserved, _)| reserved == key) {
                tracing::warn!("{who}: client setting `{key}` in config.json ({section}) is ignored; {instead}");
                continue;
            }
            self.0.insert(key.clone(), Sourced::new(value.0.clone(), Source::FileSection(section)));
        }
    }

    pub(crate) fn into_map(self) -> BTreeMap<String, Sourced<String>> {
        self.0
    }
}

/// The librdkafka configuration of a client: its brokers, then its settings. Secret values
/// are remembered here, the one place every client's settings pass, so that librdkafka's
/// errors and logs that echo them are masked.
pub(crate) fn client_config<'a>(brokers: &str, settings: impl IntoIterator<Item = (&'a str, &'a str)>) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (key, value) in settings {
        secrets::remember_setting(key, value);
        config.set(key, value);
    }
    config
}

/// This librdkafka's version and `builtin.features` (`ssl`, `sasl_scram`, `zstd`, ...).
pub fn librdkafka_build() -> (String, String) {
    let (_, version) = rdkafka::util::get_rdkafka_version();
    let features = ClientConfig::new()
        .create_native_config()
        .and_then(|native| native.get("builtin.features"))
        .unwrap_or_else(|err| format!("unknown ({err})"));
    (version, features)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The build has what production clusters need (the workspace's rdkafka features).
    #[test]
    fn librdkafka_is_built_with_tls_sasl_and_zstd() {
        let (_, features) = librdkafka_build();
        let features: Vec<&str> = features.split(',').collect();
        for wanted in ["ssl", "sasl_plain", "sasl_scram", "sasl_oauthbearer", "zstd"] {
            assert!(features.contains(&wanted), "{wanted} missing from builtin.features {features:?}");
        }
        assert_eq!(features.contains(&"sasl_gssapi"), cfg!(feature = "gssapi"), "{features:?}");
    }

    #[test]
    fn every_config_json_layer_is_named_and_the_producer_gets_the_connection_settings() {
        let (file, _) = super::super::ConfigFile::parse(
            r#"{"kafka": {"connection_settings": {"security.protocol": "sasl_ssl", "sasl.username": "u"},
                "consumer_connection_settings": {"sasl.username": "consumer"},
                "producer": {"linger.ms": 5, "bootstrap.servers": "x"}}}"#,
            std::path::Path::new("config.json"),
        )
        .unwrap();
        let producer = ClientSettings::producer(&file.kafka).into_map();
        let from = |section| Source::FileSection(section);
        assert_eq!(producer["security.protocol"], Sourced::new("sasl_ssl".into(), from("kafka.connection_settings")));
        assert_eq!(producer["linger.ms"], Sourced::new("5".into(), from("kafka.producer")));
        assert!(!producer.contains_key("bootstrap.servers"));
        let consumer = ClientSettings::consumer(false, &file.kafka, None, "worker `w`").into_map();
        assert_eq!(consumer["security.protocol"].source, from("kafka.connection_settings"));
        assert_eq!(
            consumer["sasl.username"],
            Sourced::new("consumer".into(), from("kafka.consumer_connection_settings"))
        );
    }
}
