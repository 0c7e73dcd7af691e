//! How a batch worker's batches are cut: at most `take` messages, or what arrived within
//! `within_ms` of the first one. Merged like every setting: the attribute, then config.json
//! (`kafka.consumer`, then the worker's entry), then the command line.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::layers::{pick, Source, Sourced};
use super::policy::Layer;
use crate::error::Error;
use crate::worker::handler::WorkerStyle;
use crate::worker::registry::BatchAttrs;

/// A batch worker's batch size and wait, each with the layer it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BatchSettings {
    /// The most messages in one batch.
    pub take: Sourced<usize>,
    /// How long a batch waits for more messages after its first one arrived.
    pub within: Sourced<Duration>,
}

/// The original's defaults (`--take 1000 --within 60000`).
const DEFAULT_TAKE: usize = 1000;
const DEFAULT_WITHIN: Duration = Duration::from_millis(60_000);
/// A batch holds its messages in memory: more than this is almost certainly a typo.
const MAX_TAKE: i64 = 1_000_000;

/// The batch keys of one layer, as given there (config.json values unchecked).
#[derive(Clone, Debug, Default)]
pub struct BatchKeys {
    pub take: Option<i64>,
    pub within_ms: Option<i64>,
}

impl BatchKeys {
    fn is_empty(&self) -> bool {
        self.take.is_none() && self.within_ms.is_none()
    }
}

impl From<&BatchAttrs> for BatchKeys {
    fn from(attrs: &BatchAttrs) -> Self {
        Self {
            take: attrs.take.map(|n| n.try_into().unwrap_or(i64::MAX)),
            within_ms: attrs.within_ms.map(|ms| ms.try_into().unwrap_or(i64::MAX)),
        }
    }
}

impl BatchSettings {
    /// Merges the layers, lowest first, for a worker of `style`: `None` unless it is a batch
    /// worker. `take` and `within_ms` given to one worker that is not a batch worker are an
    /// error; as defaults for every worker (`kafka.consumer`, `defaults` true) they only
    /// apply to batch workers.
    pub(crate) fn merge(
        worker: &str,
        style: WorkerStyle,
        layers: &[(Layer<'_, BatchKeys>, bool)],
    ) -> Result<Option<Self>, Error> {
        if style != WorkerStyle::Batch {
            return match layers.iter().find(|(layer, defaults)| !defaults && !layer.keys.is_empty()) {
                None => Ok(None),
                Some((layer, _)) => {
                    let key = if layer.keys.take.is_some() { "take" } else { "within_ms" };
                    Err(Error::Config(format!(
                        "worker `{worker}`: {}: `{key}` applies only to batch workers, and `{worker}` is a \
                         {style} worker; a batch worker's handler takes `Batch`, `Vec<Message>` or `Vec<Json<T>>`",
                        layer.at
                    )))
                }
            };
        }
        let bad = |layer: &Layer<'_, BatchKeys>, key: &str, value: i64, expected: &dyn fmt::Display| {
            Error::Config(format!("worker `{worker}`: {}: `{key}` = {value}: {expected}", layer.at))
        };
        let mut take = Vec::new();
        let mut within = Vec::new();
        for (layer, _) in layers {
            let keys = &layer.keys;
            if let Some(n) = keys.take {
                if !(1..=MAX_TAKE).contains(&n) {
                    return Err(bad(layer, "take", n, &format!("must be between 1 and {MAX_TAKE}")));
                }
            }
            if let Some(ms) = keys.within_ms {
                if ms < 0 {
                    return Err(bad(layer, "within_ms", ms, &"must be 0 or more milliseconds"));
                }
            }
            take.push((keys.take.map(|n| n as usize), layer.source));
            within.push((keys.within_ms.map(|ms| Duration::from_millis(ms as u64)), layer.source));
        }
        Ok(Some(Self {
            take: pick(take).unwrap_or_else(|| Sourced::new(DEFAULT_TAKE, Source::Default)),
            within: pick(within).unwrap_or_else(|| Sourced::new(DEFAULT_WITHIN, Source::Default)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(keys: BatchKeys, source: Source, at: &'static str) -> Layer<'static, BatchKeys> {
        Layer { keys, source, at }
    }

    #[test]
    fn a_batch_worker_gets_the_defaults_and_the_highest_layer_wins() {
        let defaults = BatchSettings::merge("es", WorkerStyle::Batch, &[]).unwrap().unwrap();
        assert_eq!(defaults.take, Sourced::new(1000, Source::Default));
        assert_eq!(defaults.within, Sourced::new(Duration::from_secs(60), Source::Default));
        let attrs = (layer(BatchKeys { take: Some(10), within_ms: Some(50) }, Source::Macro, "#[kafka_worker]"), false);
        let cli = (layer(BatchKeys { take: Some(20), within_ms: None }, Source::Cli, "the command line"), false);
        let merged = BatchSettings::merge("es", WorkerStyle::Batch, &[attrs, cli]).unwrap().unwrap();
        assert_eq!(merged.take, Sourced::new(20, Source::Cli));
        assert_eq!(merged.within, Sourced::new(Duration::from_millis(50), Source::Macro));
    }

    #[test]
    fn bad_values_and_misplaced_keys_name_the_key_and_where() {
        let zero = (layer(BatchKeys { take: Some(0), within_ms: None }, Source::Cli, "the command line"), false);
        let err = BatchSettings::merge("es", WorkerStyle::Batch, &[zero]).unwrap_err().to_string();
        assert!(err.contains("worker `es`: the command line: `take` = 0: must be between 1 and 1000000"), "{err}");
        let negative = (layer(BatchKeys { take: None, within_ms: Some(-5) }, Source::File, "config.json"), false);
        let err = BatchSettings::merge("es", WorkerStyle::Batch, &[negative]).unwrap_err().to_string();
        assert!(err.contains("config.json: `within_ms` = -5"), "{err}");

        let entry =
            (layer(BatchKeys { take: Some(5), within_ms: None }, Source::File, "config.json: the entry"), false);
        let err = BatchSettings::merge("es", WorkerStyle::PerMessage, &[entry]).unwrap_err().to_string();
        assert!(err.contains("config.json: the entry: `take` applies only to batch workers"), "{err}");
        assert!(err.contains("is a per-message worker"), "{err}");
        // Defaults for every worker do not make a per-message worker fail.
        let defaults = (layer(BatchKeys { take: Some(5), within_ms: None }, Source::File, "kafka.consumer"), true);
        assert_eq!(BatchSettings::merge("es", WorkerStyle::PerMessage, &[defaults]).unwrap(), None);
    }
}
