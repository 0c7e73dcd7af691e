//! Which topics `create-topics` creates, and how: the topics the configuration names (the
//! workers' topics with `kafka.consumer.topics`, their dead-letter topics, and every
//! `kafka.topics` entry), prefixed, each with the partitions, replication factor and config
//! of its `kafka.topics` entry, else of the `*` entry, else the broker's defaults.

use std::collections::BTreeMap;

use super::file::{ConfigFile, TopicEntry};
use super::plan::{Subscription, WorkerConfig};

/// The `kafka.topics` entry that gives the defaults of the others.
pub const DEFAULT_TOPIC_ENTRY: &str = "*";

/// One topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicToCreate {
    /// The name with the prefix.
    pub name: String,
    /// `None`: the broker's default (`num.partitions`).
    pub partitions: Option<i32>,
    /// `None`: the broker's default (`default.replication.factor`).
    pub replication_factor: Option<i32>,
    /// Topic configuration given to the broker.
    pub config: BTreeMap<String, String>,
    /// Why it is created: `worker es`, `dead letters of es`, `kafka.consumer.topics`, `kafka.topics`.
    pub needed_by: Vec<String>,
}

/// The topics to create, by name, and the ones that cannot be named in advance.
#[derive(Debug, Default)]
pub struct TopicsPlan {
    pub topics: Vec<TopicToCreate>,
    /// Why a topic was left out, one sentence each.
    pub skipped: Vec<String>,
}

/// The plan for `workers`. With `every_worker` (no worker named on the command line),
/// `kafka.consumer.topics` and the `kafka.topics` entries are created too, whoever uses them.
pub fn topics_to_create(workers: &[&WorkerConfig], file: &ConfigFile, prefix: &str, every_worker: bool) -> TopicsPlan {
    // Names without the prefix, and who needs each.
    let mut needed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut need = |topic: &str, by: String| {
        let by_list = needed.entry(topic.to_owned()).or_default();
        if !by_list.contains(&by) {
            by_list.push(by);
        }
    };
    let mut skipped = Vec::new();
    for worker in workers {
        let regex = matches!(worker.subscription.as_ref().map(|s| &s.value), Some(Subscription::Regex(_)));
        let topics: Vec<String> = if regex {
            Vec::new()
        } else {
            worker
                .subscription_with_prefix()
                .iter()
                .map(|topic| topic.strip_prefix(prefix).unwrap_or(topic).to_owned())
                .collect()
        };
        if regex {
            skipped.push(format!(
                "worker `{}` subscribes to a regex: create the topics it should match yourself",
                worker.name
            ));
        }
        for topic in &topics {
            need(topic, format!("worker {}", worker.name));
        }
        let Some(dead_letter) = &worker.failure.dead_letter_topic else { continue };
        let by = format!("dead letters of {}", worker.name);
        if !dead_letter.value.contains("{topic}") {
            need(&dead_letter.value, by);
        } else if regex {
            skipped.push(format!(
                "worker `{}`: dead_letter_topic `{}` depends on the topics its regex matches",
                worker.name, dead_letter.value
            ));
        } else {
            for topic in &topics {
                if let Some(name) = worker.failure.dead_letter_for(topic, "") {
                    need(&name, by.clone());
                }
            }
        }
    }
    if every_worker {
        for topic in file.kafka.consumer.topics.iter().flatten() {
            need(topic, "kafka.consumer.topics".into());
        }
        // An entry that configures a topic needed anyway is not a reason of its own.
        let only_configured: Vec<&String> = file
            .kafka
            .topics
            .keys()
            .filter(|name| *name != DEFAULT_TOPIC_ENTRY && !needed.contains_key(*name))
            .collect();
        for topic in only_configured {
            needed.insert(topic.clone(), vec!["kafka.topics".into()]);
        }
    }
    let defaults = file.kafka.topics.get(DEFAULT_TOPIC_ENTRY);
    let topics = needed
        .into_iter()
        .map(|(topic, needed_by)| {
            let entry = file.kafka.topics.get(&topic);
            let pick = |key: fn(&TopicEntry) -> Option<i32>| entry.and_then(key).or_else(|| defaults.and_then(key));
            let mut config = BTreeMap::new();
            for layer in defaults.into_iter().chain(entry) {
                config.extend(layer.config.iter().map(|(key, value)| (key.clone(), value.0.clone())));
            }
            TopicToCreate {
                name: format!("{prefix}{topic}"),
                partitions: pick(|e| e.partitions),
                replication_factor: pick(|e| e.replication_factor),
                config,
                needed_by,
            }
        })
        .collect();
    TopicsPlan { topics, skipped }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{catalog, merge_worker_config, CliLayer, EnvLayer, GlobalSettings, WorkerOverrides};
    use crate::test_support::registration;
    use crate::worker::handler::WorkerStyle;

    fn plan(json: &str, every_worker: bool) -> TopicsPlan {
        let (file, _) = ConfigFile::parse(json, Path::new("config.json")).unwrap();
        let registered = [registration("a", &["orders"], None), registration("b", &["events"], None)];
        let (catalog, _) = catalog(&registered, &file);
        let global = GlobalSettings::merge(&file, &EnvLayer::default(), &CliLayer::default()).unwrap();
        let configs: Vec<WorkerConfig> = catalog
            .iter()
            .filter(|entry| every_worker || entry.name == "a")
            .map(|entry| {
                merge_worker_config(entry, WorkerStyle::PerMessage, &file, &global, &WorkerOverrides::default())
                    .unwrap()
            })
            .collect();
        let refs: Vec<&WorkerConfig> = configs.iter().collect();
        topics_to_create(&refs, &file, &global.topic_prefix.value, every_worker)
    }

    #[test]
    fn names_every_topic_once_with_the_prefix_and_its_entry_over_the_default_entry() {
        let plan = plan(
            r#"{"kafka": {"topic_prefix": "p-",
                "consumer": {"topics": ["shared"], "workers": [
                    {"name": "a", "dead_letter_topic": "{topic}-dlq"},
                    {"name": "c", "path": "app::workers::handler", "regex_topic": "x.*", "dead_letter_topic": "{topic}-dlq"}]},
                "topics": {"*": {"replication_factor": 3, "config": {"retention.ms": 1000}},
                           "orders": {"partitions": 6, "config": {"cleanup.policy": "compact"}},
                           "audit": {}}}}"#,
            true,
        );
        let names: Vec<&str> = plan.topics.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            ["p-audit", "p-events", "p-orders", "p-orders-dlq", "p-shared", "p-shared-dlq"],
            "{:?}",
            plan.topics
        );
        let orders = &plan.topics[2];
        assert_eq!((orders.partitions, orders.replication_factor), (Some(6), Some(3)));
        assert_eq!(orders.config.get("retention.ms").map(String::as_str), Some("1000"));
        assert_eq!(orders.config.get("cleanup.policy").map(String::as_str), Some("compact"));
        assert_eq!(orders.needed_by, ["worker a"]);
        let shared = &plan.topics[4];
        assert_eq!(shared.needed_by, ["worker a", "worker b", "kafka.consumer.topics"]);
        assert_eq!(shared.partitions, None, "the broker's default");
        assert_eq!(plan.topics[5].needed_by, ["dead letters of a"]);
        assert_eq!(plan.skipped.len(), 2, "{:?}", plan.skipped);
        assert!(
            plan.skipped[1].contains("`{topic}-dlq` depends on the topics its regex matches"),
            "{:?}",
            plan.skipped
        );
    }

    #[test]
    fn named_workers_get_only_their_own_topics() {
        let plan = plan(r#"{"kafka": {"topics": {"audit": {"partitions": 2}}}}"#, false);
        let names: Vec<&str> = plan.topics.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["orders"]);
    }
}
