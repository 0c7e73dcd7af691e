//! How far librdkafka fetches ahead of the worker, sized at start from the partitions it may
//! read, so that a slow worker with a large backlog holds a bounded part of it in memory
//! while a fast one still gets large fetches.
//!
//! librdkafka fetches a partition again while it holds fewer than `queued.min.messages`, and
//! each fetch brings up to `max.partition.fetch.bytes` of it (a broker may give the first
//! partition of a response up to `fetch.max.bytes`, as Tansu does). With its defaults
//! (100,000 messages, 1 MiB, 50 MiB) a slow worker holds most of a large backlog in memory
//! (424 MiB for 1,000,000 messages of 100 bytes, librdkafka's records included, with 12
//! partitions or 100). Here both are divided among the partitions of the subscription:
//! [`FETCH_BUDGET`] bytes per fetch round, [`MESSAGE_BUDGET`] messages waiting, down to
//! [`MIN_FETCH`] and [`MIN_MESSAGES`] per partition, so the byte budget holds up to 128
//! partitions and the message budget up to 300. Measured (`tests/tests/memory.rs`, with two
//! busy loops on the 2 cores): 121-141 MiB with 3 partitions, 91-150 MiB with 12, 98-153
//! MiB with 100. Not held with many more: 300 partitions measured 110-148 MiB with the busy
//! loops but 259 MiB once in a full test run. With a 256 KiB floor 100 partitions peaked at
//! 133-227 MiB (a fetch response stays in memory until its last message is handled, so many
//! partitions pin many of them), with a floor of 1,000 messages 300 partitions at 120-193
//! MiB. Smaller budgets starve a fast worker: 24 MiB and 30,000 gave 0.56 of raw rdkafka's
//! rate at 100 bytes in the benchmark, these 1.48.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};

use crate::config::TopicMatcher;

/// The settings sized here. A consumer whose settings give any of them keeps librdkafka's
/// defaults for the others: the user took the prefetch over.
pub(crate) const PREFETCH_SETTINGS: &[&str] = &[
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "fetch.max.bytes",
    "max.partition.fetch.bytes",
    "message.max.bytes",
];

/// Bytes one fetch round may bring, all partitions together.
const FETCH_BUDGET: usize = 16 << 20;
/// Messages waiting in librdkafka before it stops fetching, all partitions together.
const MESSAGE_BUDGET: usize = 150_000;
const MIN_FETCH: usize = 128 << 10;
const MAX_FETCH: usize = 16 << 20;
const MIN_MESSAGES: usize = 500;
/// librdkafka's own default for `message.max.bytes`; `fetch.max.bytes` may not be below it.
const LIBRDKAFKA_MESSAGE_MAX: usize = 1_000_000;

/// Partitions assumed when they cannot be counted: few fetched bytes each.
const UNKNOWN_PARTITIONS: usize = 100;
const METADATA_TIMEOUT: Duration = Duration::from_secs(3);

/// The prefetch settings the runtime gives a consumer that reads `partitions` partitions,
/// unless its settings give any of them (see "Memory: the prefetch knob" in
/// docs/configuration.md): to see what a worker gets, or to give another client the same.
///
/// ```
/// let settings = kafka_runtime::prefetch_settings(12);
/// let messages = settings.iter().find(|(key, _)| *key == "queued.min.messages").map(|(_, v)| v.as_str());
/// assert_eq!(messages, Some("12500"));
/// ```
pub fn settings(partitions: usize) -> Vec<(&'static str, String)> {
    let partitions = partitions.max(1);
    let fetch = (FETCH_BUDGET / partitions).clamp(MIN_FETCH, MAX_FETCH);
    let messages = (MESSAGE_BUDGET / partitions).max(MIN_MESSAGES);
    let mut settings = vec![
        ("queued.min.messages", messages.to_string()),
        // Large messages: at most two fetches' worth waiting per partition.
        ("queued.max.messages.kbytes", (2 * fetch / 1000).to_string()),
        ("fetch.max.bytes", fetch.to_string()),
        ("max.partition.fetch.bytes", fetch.to_string()),
    ];
    if fetch < LIBRDKAFKA_MESSAGE_MAX {
        settings.push(("message.max.bytes", fetch.to_string()));
    }
    settings
}

/// Sizes the prefetch of `config`, which subscribes to `subscription` (names, or regexes
/// starting with `^`), unless its settings give it. Asks the brokers how many partitions the
/// subscription has, off the async threads.
pub(crate) async fn size(config: &mut ClientConfig, subscription: &[String], label: &str) {
    if PREFETCH_SETTINGS.iter().any(|key| config.get(key).is_some()) {
        return;
    }
    let (lookup, wanted) = (config.clone(), subscription.to_vec());
    let counted = tokio::task::spawn_blocking(move || count_partitions(&lookup, &wanted)).await;
    let partitions = match counted {
        Ok(Ok(partitions)) => partitions,
        Ok(Err(reason)) => {
            tracing::debug!(worker = label, "cannot count the partitions to size the prefetch: {reason}");
            UNKNOWN_PARTITIONS
        }
        Err(_) => UNKNOWN_PARTITIONS,
    };
    tracing::debug!(worker = label, "prefetch sized for {partitions} partitions");
    for (key, value) in settings(partitions) {
        config.set(key, value);
    }
}

/// The partitions of the subscription's topics that exist now.
fn count_partitions(config: &ClientConfig, subscription: &[String]) -> Result<usize, String> {
    let mut lookup = config.clone();
    lookup.remove("group.id");
    let client: BaseConsumer = lookup.create().map_err(|err| err.to_string())?;
    let metadata = client.fetch_metadata(None, METADATA_TIMEOUT).map_err(|err| err.to_string())?;
    let matcher = TopicMatcher::new(subscription);
    let partitions = metadata
        .topics()
        .iter()
        .filter(|topic| matcher.matches(topic.name()))
        .map(|topic| topic.partitions().len())
        .sum();
    Ok(partitions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(settings: &[(&str, String)], key: &str) -> Option<usize> {
        settings.iter().find(|(k, _)| *k == key).map(|(_, v)| v.parse().unwrap())
    }

    #[test]
    fn few_partitions_fetch_big_many_fetch_small_and_librdkafka_accepts_both() {
        let few = settings(3);
        assert_eq!(value(&few, "fetch.max.bytes"), Some(FETCH_BUDGET / 3));
        assert_eq!(value(&few, "queued.min.messages"), Some(50_000));
        assert_eq!(value(&few, "message.max.bytes"), None, "librdkafka's default fits");
        let hundred = settings(100);
        assert_eq!(value(&hundred, "fetch.max.bytes"), Some(FETCH_BUDGET / 100));
        assert_eq!(
            value(&hundred, "message.max.bytes"),
            Some(FETCH_BUDGET / 100),
            "fetch.max.bytes may not be below it"
        );
        assert_eq!(value(&hundred, "queued.min.messages"), Some(1_500));
        assert_eq!(value(&settings(1000), "fetch.max.bytes"), Some(MIN_FETCH));
        assert_eq!(value(&settings(1000), "queued.min.messages"), Some(MIN_MESSAGES));
        assert_eq!(value(&settings(0), "fetch.max.bytes"), Some(MAX_FETCH));
        for partitions in [0, 1, 3, 12, 100, 10_000] {
            let mut config = ClientConfig::new();
            for (key, value) in settings(partitions) {
                config.set(key, value);
            }
            config.create::<BaseConsumer>().unwrap_or_else(|err| panic!("{partitions} partitions: {err}"));
        }
    }
}
