//! How many messages a per-message worker handles at once, and which must wait for which:
//! `ordering` (`partition`, `key` or `none`) and `max_in_flight`. Merged like every setting:
//! the attribute, then config.json (`kafka.consumer`, then the worker's entry), then the
//! command line.

use std::fmt;

use serde::Serialize;

use super::layers::{pick, Source, Sourced};
use super::policy::Layer;
use crate::error::Error;
use crate::worker::handler::WorkerStyle;
use crate::worker::registry::ConcurrencyAttrs;

/// Which messages of a consumer may be in a handler at the same time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Ordering {
    /// Each partition in offset order, one message at a time; partitions in parallel.
    Partition,
    /// Messages with the same key in offset order, one at a time; different keys in
    /// parallel, also within one partition. Messages without a key are ordered by partition.
    Key,
    /// Any message in parallel with any other.
    None,
}

impl fmt::Display for Ordering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ordering::Partition => "partition",
            Ordering::Key => "key",
            Ordering::None => "none",
        })
    }
}

/// A per-message worker's concurrency, each value with the layer it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Concurrency {
    pub ordering: Sourced<Ordering>,
    /// How many messages may be in the handler at once, per consumer.
    pub max_in_flight: Sourced<usize>,
}

/// See the README ("Concurrency") for why.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;
const MAX_MAX_IN_FLIGHT: i64 = 100_000;

/// The concurrency keys of one layer, as given there (config.json values unchecked).
#[derive(Clone, Debug, Default)]
pub struct ConcurrencyKeys {
    pub ordering: Option<String>,
    pub max_in_flight: Option<i64>,
}

impl ConcurrencyKeys {
    fn is_empty(&self) -> bool {
        self.ordering.is_none() && self.max_in_flight.is_none()
    }
}

impl From<&ConcurrencyAttrs> for ConcurrencyKeys {
    fn from(attrs: &ConcurrencyAttrs) -> Self {
        Self {
            ordering: attrs.ordering.map(str::to_owned),
            max_in_flight: attrs.max_in_flight.map(|n| n.try_into().unwrap_or(i64::MAX)),
        }
    }
}

impl Concurrency {
    /// Sequential: one message at a time, as a stream worker reads them.
    pub fn sequential() -> Self {
        Self {
            ordering: Sourced::new(Ordering::Partition, Source::Default),
            max_in_flight: Sourced::new(1, Source::Default),
        }
    }

    /// Merges the layers, lowest first, for a worker of `style`. Only per-message workers run
    /// messages concurrently: given to one other worker, the keys are an error; as defaults
    /// for every worker (`kafka.consumer`, `defaults` true) they apply to per-message workers
    /// only.
    pub(crate) fn merge(
        worker: &str,
        style: WorkerStyle,
        layers: &[(Layer<'_, ConcurrencyKeys>, bool)],
    ) -> Result<Self, Error> {
        if style == WorkerStyle::Stream {
            return match layers.iter().find(|(layer, defaults)| !defaults && !layer.keys.is_empty()) {
                None => Ok(Self::sequential()),
                Some((layer, _)) => {
                    let key = if layer.keys.ordering.is_some() { "ordering" } else { "max_in_flight" };
                    Err(Error::Config(format!(
                        "worker `{worker}`: {}: `{key}` applies only to per-message and batch workers, and \
                         `{worker}` is a {style} worker; a stream worker runs its own tasks and acknowledges with \
                         `TopicStream::ack_later`",
                        layer.at,
                    )))
                }
            };
        }
        let batch = style == WorkerStyle::Batch;
        let mut ordering = Vec::new();
        let mut max_in_flight = Vec::new();
        // The `kafka.consumer` defaults are for per-message workers.
        for (layer, _) in layers.iter().filter(|(_, defaults)| !(batch && *defaults)) {
            let keys = &layer.keys;
            let bad = |key: &str, value: &dyn fmt::Display, expected: &str| {
                Error::Config(format!("worker `{worker}`: {}: `{key}` = {value}: {expected}", layer.at))
            };
            let order = match keys.ordering.as_deref() {
                None => None,
                Some("partition") => Some(Ordering::Partition),
                Some("key") => Some(Ordering::Key),
                Some("none") => Some(Ordering::None),
                Some(other) => {
                    return Err(bad("ordering", &format!("{other:?}"), "expected \"partition\", \"key\" or \"none\""))
                }
            };
            if batch && order.is_some_and(|order| order != Ordering::Partition) {
                return Err(bad(
                    "ordering",
                    &format!("{:?}", keys.ordering.as_deref().unwrap_or_default()),
                    "a batch worker's batches each hold one partition's messages: only \"partition\" applies",
                ));
            }
            if let Some(n) = keys.max_in_flight {
                if !(1..=MAX_MAX_IN_FLIGHT).contains(&n) {
                    return Err(bad("max_in_flight", &n, &format!("must be between 1 and {MAX_MAX_IN_FLIGHT}")));
                }
            }
            ordering.push((order, layer.source));
            max_in_flight.push((keys.max_in_flight.map(|n| n as usize), layer.source));
        }
        Ok(Self {
            ordering: pick(ordering).unwrap_or_else(|| Sourced::new(Ordering::Partition, Source::Default)),
            // A batch worker runs one batch at a time unless told otherwise, as before.
            max_in_flight: pick(max_in_flight)
                .unwrap_or_else(|| Sourced::new(if batch { 1 } else { DEFAULT_MAX_IN_FLIGHT }, Source::Default)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(keys: ConcurrencyKeys, source: Source, at: &'static str) -> Layer<'static, ConcurrencyKeys> {
        Layer { keys, source, at }
    }

    #[test]
    fn per_message_workers_default_to_partitions_in_parallel() {
        let merged = Concurrency::merge("es", WorkerStyle::PerMessage, &[]).unwrap();
        assert_eq!(merged.ordering, Sourced::new(Ordering::Partition, Source::Default));
        assert_eq!(merged.max_in_flight, Sourced::new(DEFAULT_MAX_IN_FLIGHT, Source::Default));
        let attrs = ConcurrencyKeys { ordering: Some("key".into()), max_in_flight: Some(8) };
        let cli = ConcurrencyKeys { ordering: None, max_in_flight: Some(256) };
        let merged = Concurrency::merge(
            "es",
            WorkerStyle::PerMessage,
            &[(layer(attrs, Source::Macro, "#[kafka_worker]"), false), (layer(cli, Source::Cli, "cli"), false)],
        )
        .unwrap();
        assert_eq!(merged.ordering, Sourced::new(Ordering::Key, Source::Macro));
        assert_eq!(merged.max_in_flight, Sourced::new(256, Source::Cli));
    }

    #[test]
    fn bad_values_and_misplaced_keys_name_the_key_and_where() {
        let zero = ConcurrencyKeys { ordering: None, max_in_flight: Some(0) };
        let err =
            Concurrency::merge("es", WorkerStyle::PerMessage, &[(layer(zero, Source::File, "config.json"), false)])
                .unwrap_err()
                .to_string();
        assert!(err.contains("worker `es`: config.json: `max_in_flight` = 0: must be between 1 and 100000"), "{err}");
        let unknown = ConcurrencyKeys { ordering: Some("offset".into()), max_in_flight: None };
        let err = Concurrency::merge("es", WorkerStyle::PerMessage, &[(layer(unknown, Source::Cli, "cli"), false)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`ordering` = \"offset\": expected \"partition\", \"key\" or \"none\""), "{err}");
        let given = ConcurrencyKeys { ordering: Some("key".into()), max_in_flight: None };
        let err =
            Concurrency::merge("es", WorkerStyle::Stream, &[(layer(given.clone(), Source::File, "entry"), false)])
                .unwrap_err()
                .to_string();
        assert!(err.contains("`ordering` applies only to per-message and batch workers"), "{err}");
        let defaults = layer(given.clone(), Source::File, "kafka.consumer");
        assert_eq!(
            Concurrency::merge("es", WorkerStyle::Batch, &[(defaults, true)]).unwrap(),
            Concurrency::sequential(),
            "the kafka.consumer defaults are for per-message workers"
        );
        let err = Concurrency::merge("b", WorkerStyle::Batch, &[(layer(given, Source::File, "entry"), false)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("worker `b`: entry: `ordering` = \"key\": a batch worker's batches"), "{err}");
    }

    #[test]
    fn a_batch_worker_runs_one_batch_at_a_time_unless_told_otherwise() {
        let given = ConcurrencyKeys { ordering: None, max_in_flight: Some(4) };
        let merged = Concurrency::merge("b", WorkerStyle::Batch, &[(layer(given, Source::Cli, "cli"), false)]).unwrap();
        assert_eq!(merged.max_in_flight, Sourced::new(4, Source::Cli));
        assert_eq!(merged.ordering, Sourced::new(Ordering::Partition, Source::Default));
        assert_eq!(Concurrency::merge("b", WorkerStyle::Batch, &[]).unwrap(), Concurrency::sequential());
    }
}
