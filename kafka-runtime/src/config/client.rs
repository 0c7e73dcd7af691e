//! librdkafka client settings, built one way for every client the runtime creates: the
//! runtime's defaults (and the embedded cluster's), the config.json layers with reserved keys
//! refused, the enforced settings on top; and which keys are secrets, never printed.

use std::collections::BTreeMap;

use rdkafka::config::ClientConfig;

use super::file::Settings;
use super::layers::{Source, Sourced};

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
    /// A worker's consumer: defaults, then each config.json layer in order (lowest first),
    /// then the enforced settings. `who` names the client in warnings.
    pub(crate) fn consumer(embedded: bool, layers: &[&Settings], who: &str) -> Self {
        let mut settings = Self::default();
        let embedded = if embedded { EMBEDDED_CONSUMER_DEFAULTS } else { &[] };
        settings.add(CONSUMER_DEFAULTS.iter().chain(embedded), Source::Default);
        for layer in layers {
            settings.add_file_layer(layer, who);
        }
        settings.add(CONSUMER_ENFORCED, Source::Enforced);
        settings
    }

    /// `create-topics`' admin client: `kafka.consumer_connection_settings`, so it reaches the
    /// brokers the way the workers do. (Consumer-only keys there are ignored by librdkafka.)
    pub(crate) fn admin(layer: &Settings) -> Self {
        let mut settings = Self::default();
        settings.add_file_layer(layer, "create-topics");
        settings
    }

    /// The shared producer: config.json's `kafka.producer`.
    pub(crate) fn producer(layer: &Settings) -> Self {
        let mut settings = Self::default();
        settings.add_file_layer(layer, "the producer");
        settings
    }

    fn add<'a>(&mut self, pairs: impl IntoIterator<Item = &'a (&'a str, &'a str)>, source: Source) {
        for (key, value) in pairs {
            self.0.insert((*key).to_owned(), Sourced::new((*value).to_owned(), source));
        }
    }

    fn add_file_layer(&mut self, layer: &Settings, who: &str) {
        for (key, value) in layer {
            if let Some((_, instead)) = RESERVED_SETTINGS.iter().find(|(reserved, _)| reserved == key) {
                tracing::warn!("{who}: client setting `{key}` in config.json is ignored; {instead}");
                continue;
            }
            self.0.insert(key.clone(), Sourced::new(value.0.clone(), Source::File));
        }
    }

    pub(crate) fn into_map(self) -> BTreeMap<String, Sourced<String>> {
        self.0
    }
}

/// The librdkafka configuration of a client: its brokers, then its settings.
pub(crate) fn client_config<'a>(brokers: &str, settings: impl IntoIterator<Item = (&'a str, &'a str)>) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (key, value) in settings {
        config.set(key, value);
    }
    config
}

/// Settings whose values are never printed.
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "sasl.oauthbearer.config", "ssl.key.pem", "ssl_key", "token"]
        .iter()
        .any(|needle| key.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_recognised() {
        assert!(is_secret("sasl.password"));
        assert!(is_secret("ssl.key.password"));
        assert!(!is_secret("session.timeout.ms"));
    }
}
