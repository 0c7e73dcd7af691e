//! What happens when a handler fails, per worker: retries with backoff, a dead-letter topic,
//! and what to do with a payload that cannot be decoded. Merged like every setting: the
//! attribute, then config.json (`kafka.consumer`, then the worker's entry), then the command
//! line.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::layers::{pick, Source, Sourced};
use crate::error::Error;
use crate::worker::error::WorkerError;
use crate::worker::registry::FailureAttrs;

/// A worker's failure policy, each value with the layer it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FailurePolicy {
    /// How many times a failed message is tried again.
    pub retries: Sourced<u32>,
    /// The wait before the first retry; doubled for each next one, with jitter.
    pub retry_backoff: Sourced<Duration>,
    /// The longest wait before a retry.
    pub retry_backoff_max: Sourced<Duration>,
    /// Where a message goes once its tries are used up; `{topic}` is its topic (without the
    /// prefix, which goes in front of the whole name). Without it, such a message stops the
    /// worker.
    pub dead_letter_topic: Option<Sourced<String>>,
    pub on_decode_error: Sourced<OnDecodeError>,
}

/// What happens to a message whose payload cannot be decoded. It is never retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum OnDecodeError {
    /// To the dead-letter topic (the default when there is one).
    #[value(name = "dead_letter")]
    DeadLetter,
    /// Stop the worker, the message uncommitted (the default without a dead-letter topic).
    Stop,
}

impl fmt::Display for OnDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OnDecodeError::DeadLetter => "dead_letter",
            OnDecodeError::Stop => "stop",
        })
    }
}

/// What the policy says follows a failed try.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NextStep {
    /// Try again after this wait.
    Retry(Duration),
    /// Send the message to this dead-letter topic (without the prefix).
    DeadLetter(String),
    /// Stop the worker, the message uncommitted.
    Stop,
}

const DEFAULT_BACKOFF: Duration = Duration::from_millis(100);
const DEFAULT_BACKOFF_MAX: Duration = Duration::from_millis(30_000);

/// The policy keys of one layer, as given there (config.json values unchecked).
#[derive(Clone, Debug, Default)]
pub struct FailureKeys {
    pub retries: Option<i64>,
    pub retry_backoff_ms: Option<i64>,
    pub retry_backoff_max_ms: Option<i64>,
    pub dead_letter_topic: Option<String>,
    pub on_decode_error: Option<String>,
}

impl From<&FailureAttrs> for FailureKeys {
    fn from(attrs: &FailureAttrs) -> Self {
        Self {
            retries: attrs.retries.map(i64::from),
            retry_backoff_ms: attrs.retry_backoff_ms.map(|ms| ms.try_into().unwrap_or(i64::MAX)),
            retry_backoff_max_ms: attrs.retry_backoff_max_ms.map(|ms| ms.try_into().unwrap_or(i64::MAX)),
            dead_letter_topic: attrs.dead_letter_topic.map(str::to_owned),
            on_decode_error: attrs.on_decode_error.map(str::to_owned),
        }
    }
}

/// One layer's keys and where they sit, for error messages.
pub(crate) struct Layer<'a, K = FailureKeys> {
    pub(crate) keys: K,
    pub(crate) source: Source,
    /// Where, for messages: "config.json: kafka.consumer", "the command line", ...
    pub(crate) at: &'a str,
}

impl FailurePolicy {
    /// Merges the layers, lowest first, and checks the result.
    pub(crate) fn merge(worker: &str, layers: &[Layer<'_>]) -> Result<Self, Error> {
        let bad = |layer: &Layer<'_>, key: &str, value: &dyn fmt::Display, expected: &str| {
            Error::Config(format!("worker `{worker}`: {}: `{key}` = {value}: {expected}", layer.at))
        };
        let mut retries = Vec::new();
        let mut backoff = Vec::new();
        let mut backoff_max = Vec::new();
        let mut dead_letter = Vec::new();
        let mut on_decode = Vec::new();
        for layer in layers {
            let keys = &layer.keys;
            let count = |key: &str, value: Option<i64>, max: i64| match value {
                Some(v) if !(0..=max).contains(&v) => Err(bad(layer, key, &v, &format!("must be between 0 and {max}"))),
                other => Ok(other),
            };
            let tries = count("retries", keys.retries, i64::from(u32::MAX))?;
            retries.push((tries.map(|v| v as u32), layer.source));
            let millis = |key, value| count(key, value, i64::MAX).map(|v| v.map(|ms| Duration::from_millis(ms as u64)));
            backoff.push((millis("retry_backoff_ms", keys.retry_backoff_ms)?, layer.source));
            backoff_max.push((millis("retry_backoff_max_ms", keys.retry_backoff_max_ms)?, layer.source));
            if let Some(topic) = &keys.dead_letter_topic {
                if topic.trim().is_empty() {
                    return Err(bad(layer, "dead_letter_topic", &format!("{topic:?}"), "must name a topic"));
                }
            }
            dead_letter.push((keys.dead_letter_topic.clone(), layer.source));
            let action = match keys.on_decode_error.as_deref() {
                None => None,
                Some("dead_letter") => Some(OnDecodeError::DeadLetter),
                Some("stop") => Some(OnDecodeError::Stop),
                Some(other) => {
                    return Err(bad(
                        layer,
                        "on_decode_error",
                        &format!("{other:?}"),
                        "expected \"dead_letter\" or \"stop\"",
                    ))
                }
            };
            on_decode.push((action, layer.source));
        }
        let retries = pick(retries).unwrap_or_else(|| Sourced::new(0, Source::Default));
        let retry_backoff = pick(backoff).unwrap_or_else(|| Sourced::new(DEFAULT_BACKOFF, Source::Default));
        let retry_backoff_max = pick(backoff_max).unwrap_or_else(|| Sourced::new(DEFAULT_BACKOFF_MAX, Source::Default));
        let dead_letter_topic = pick(dead_letter);
        let default_action = if dead_letter_topic.is_some() { OnDecodeError::DeadLetter } else { OnDecodeError::Stop };
        let on_decode_error = pick(on_decode).unwrap_or_else(|| Sourced::new(default_action, Source::Default));
        if retry_backoff_max.value < retry_backoff.value {
            return Err(Error::Config(format!(
                "worker `{worker}`: `retry_backoff_max_ms` = {} ({}) is below `retry_backoff_ms` = {} ({}); \
                 the longest wait cannot be shorter than the first",
                retry_backoff_max.value.as_millis(),
                retry_backoff_max.source,
                retry_backoff.value.as_millis(),
                retry_backoff.source
            )));
        }
        if on_decode_error.value == OnDecodeError::DeadLetter && dead_letter_topic.is_none() {
            return Err(Error::Config(format!(
                "worker `{worker}`: `on_decode_error` = \"dead_letter\" ({}) needs a `dead_letter_topic`",
                on_decode_error.source
            )));
        }
        Ok(Self { retries, retry_backoff, retry_backoff_max, dead_letter_topic, on_decode_error })
    }

    /// True when a failure can do anything but stop the worker.
    pub fn is_active(&self) -> bool {
        self.retries.value > 0 || self.dead_letter_topic.is_some()
    }

    /// The dead-letter topic for a message of `topic` (prefixed), without the prefix, which
    /// the producer adds; `None` without a dead-letter topic.
    pub fn dead_letter_for(&self, topic: &str, prefix: &str) -> Option<String> {
        let template = &self.dead_letter_topic.as_ref()?.value;
        Some(template.replace("{topic}", topic.strip_prefix(prefix).unwrap_or(topic)))
    }

    /// What follows a failed try. `tries` counts the tries made, this one included; `topic`
    /// is the message's (prefixed) topic.
    pub(crate) fn after_failure(&self, failure: &WorkerError, tries: u32, topic: &str, prefix: &str) -> NextStep {
        if !failure.is_permanent() && tries <= self.retries.value {
            return NextStep::Retry(self.backoff(tries));
        }
        match self.dead_letter_for(topic, prefix) {
            Some(topic) if !failure.is_permanent() || self.on_decode_error.value == OnDecodeError::DeadLetter => {
                NextStep::DeadLetter(topic)
            }
            _ => NextStep::Stop,
        }
    }

    /// The wait before try number `retry` (1 for the first retry): the backoff doubled for
    /// each earlier retry, capped, less up to a fifth at random so that many waiting
    /// consumers do not all come back at once.
    pub fn backoff(&self, retry: u32) -> Duration {
        let doubled = self.retry_backoff.value.saturating_mul(1u32 << retry.saturating_sub(1).min(30));
        let capped = doubled.min(self.retry_backoff_max.value);
        capped.mul_f64(1.0 - 0.2 * jitter())
    }
}

/// A number in [0, 1), different on every call.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher
        .write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(keys: FailureKeys, source: Source) -> Layer<'static> {
        Layer { keys, source, at: "config.json: kafka.consumer.workers[0]" }
    }

    #[test]
    fn defaults_stop_on_everything() {
        let policy = FailurePolicy::merge("es", &[]).unwrap();
        assert_eq!(policy.retries, Sourced::new(0, Source::Default));
        assert_eq!(policy.on_decode_error.value, OnDecodeError::Stop);
        assert!(!policy.is_active());
    }

    #[test]
    fn higher_layers_win_and_a_dead_letter_topic_takes_decode_errors() {
        let attrs = FailureKeys { retries: Some(1), retry_backoff_ms: Some(50), ..Default::default() };
        let file =
            FailureKeys { retries: Some(3), dead_letter_topic: Some("dlq-{topic}".into()), ..Default::default() };
        let policy = FailurePolicy::merge("es", &[layer(attrs, Source::Macro), layer(file, Source::File)]).unwrap();
        assert_eq!(policy.retries, Sourced::new(3, Source::File));
        assert_eq!(policy.retry_backoff, Sourced::new(Duration::from_millis(50), Source::Macro));
        assert_eq!(policy.on_decode_error, Sourced::new(OnDecodeError::DeadLetter, Source::Default));
        assert_eq!(policy.dead_letter_for("p-orders", "p-").as_deref(), Some("dlq-orders"));
    }

    #[test]
    fn after_a_failure_retries_then_dead_letters_and_never_retries_a_permanent_one() {
        let keys = FailureKeys { retries: Some(2), dead_letter_topic: Some("dlq".into()), ..Default::default() };
        let policy = FailurePolicy::merge("es", &[layer(keys, Source::File)]).unwrap();
        let transient = WorkerError::msg("timeout");
        assert!(matches!(policy.after_failure(&transient, 1, "t", ""), NextStep::Retry(_)));
        assert!(matches!(policy.after_failure(&transient, 2, "t", ""), NextStep::Retry(_)));
        assert_eq!(policy.after_failure(&transient, 3, "t", ""), NextStep::DeadLetter("dlq".into()));
        let permanent = WorkerError::permanent("bad");
        assert_eq!(policy.after_failure(&permanent, 1, "t", ""), NextStep::DeadLetter("dlq".into()));
        let stop = FailureKeys {
            on_decode_error: Some("stop".into()),
            dead_letter_topic: Some("dlq".into()),
            ..Default::default()
        };
        let policy = FailurePolicy::merge("es", &[layer(stop, Source::File)]).unwrap();
        assert_eq!(policy.after_failure(&permanent, 1, "t", ""), NextStep::Stop);
        assert_eq!(policy.after_failure(&transient, 1, "t", ""), NextStep::DeadLetter("dlq".into()));
    }

    #[test]
    fn backoff_doubles_up_to_the_max_with_jitter_below() {
        let keys = FailureKeys {
            retries: Some(5),
            retry_backoff_ms: Some(100),
            retry_backoff_max_ms: Some(300),
            ..Default::default()
        };
        let policy = FailurePolicy::merge("es", &[layer(keys, Source::File)]).unwrap();
        for (retry, full) in [(1, 100), (2, 200), (3, 300), (4, 300)] {
            let wait = policy.backoff(retry).as_millis();
            assert!(wait <= full && wait >= full * 8 / 10, "retry {retry}: {wait} ms");
        }
    }

    #[test]
    fn bad_values_name_the_key_and_where() {
        let negative = FailureKeys { retries: Some(-1), ..Default::default() };
        let err = FailurePolicy::merge("es", &[layer(negative, Source::File)]).unwrap_err().to_string();
        assert!(err.contains("config.json: kafka.consumer.workers[0]: `retries` = -1: must be between 0"), "{err}");
        let inverted =
            FailureKeys { retry_backoff_ms: Some(500), retry_backoff_max_ms: Some(100), ..Default::default() };
        let err = FailurePolicy::merge("es", &[layer(inverted, Source::File)]).unwrap_err().to_string();
        assert!(err.contains("`retry_backoff_max_ms` = 100 (config.json) is below `retry_backoff_ms` = 500"), "{err}");
        let unknown = FailureKeys { on_decode_error: Some("skip".into()), ..Default::default() };
        let err = FailurePolicy::merge("es", &[layer(unknown, Source::File)]).unwrap_err().to_string();
        assert!(err.contains("`on_decode_error` = \"skip\": expected \"dead_letter\" or \"stop\""), "{err}");
        let no_topic = FailureKeys { on_decode_error: Some("dead_letter".into()), ..Default::default() };
        let err = FailurePolicy::merge("es", &[layer(no_topic, Source::File)]).unwrap_err().to_string();
        assert!(err.contains("needs a `dead_letter_topic`"), "{err}");
        let empty = FailureKeys { dead_letter_topic: Some(" ".into()), ..Default::default() };
        assert!(FailurePolicy::merge("es", &[layer(empty, Source::File)]).is_err());
    }
}
