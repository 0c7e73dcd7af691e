//! Whether a client reaches its brokers. librdkafka reports a failed connection several times
//! a second (log lines and error callbacks); [`Reachability`] tells the first in one clear
//! line that names the brokers and what to check, then at most one line every
//! [`REPEAT_EVERY`] while it lasts, with a count, and one line when the client gets through.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// How often a client that still cannot reach its brokers says so.
pub(crate) const REPEAT_EVERY: Duration = Duration::from_secs(10);

/// One client's connection trouble, from the first failure to the first sign of an answer.
#[derive(Default)]
pub(crate) struct Reachability {
    /// Set while an episode lasts: read on the hot path (each fetch, each delivery).
    down: AtomicBool,
    episode: Mutex<Option<Episode>>,
}

struct Episode {
    brokers: String,
    since: Instant,
    /// Failed connection attempts librdkafka reported, its suppressed repeats included.
    attempts: u64,
    last_told: Instant,
    reason: String,
}

impl Reachability {
    /// A failed connection: the first of an episode is logged as an error naming `brokers`;
    /// the others are counted, and summarised every [`REPEAT_EVERY`]. `client` names the
    /// worker (or `producer`).
    pub(crate) fn failed(&self, client: &str, brokers: &str, reason: &str, attempts: u64) {
        let mut episode = self.episode.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match &mut *episode {
            None => {
                tracing::error!(
                    client,
                    "cannot reach the brokers {brokers}: {reason}; check that the address is right (--brokers, \
                     KAFKA_BROKERS or kafka.brokers in config.json), that the brokers run and that this host \
                     can reach them (DNS, firewall, TLS/SASL settings); still retrying"
                );
                *episode = Some(Episode {
                    brokers: brokers.to_owned(),
                    since: now,
                    attempts,
                    last_told: now,
                    reason: reason.to_owned(),
                });
                self.down.store(true, Ordering::Release);
            }
            Some(episode) => {
                episode.attempts += attempts;
                // librdkafka's log lines say more than its error events ("1/1 brokers are down").
                if attempts > 0 {
                    episode.reason = reason.to_owned();
                }
                episode.remind(client, now);
            }
        }
    }

    /// Says again that the brokers cannot be reached, if they still cannot and it was last
    /// said [`REPEAT_EVERY`] ago: for a client whose librdkafka has gone quiet between its
    /// (backed-off) attempts.
    pub(crate) fn remind(&self, client: &str) {
        if !self.down.load(Ordering::Acquire) {
            return;
        }
        if let Some(episode) = &mut *self.episode.lock().unwrap_or_else(|e| e.into_inner()) {
            episode.remind(client, Instant::now());
        }
    }

    /// A sign that the brokers answer: ends the episode, saying so, if one was under way.
    pub(crate) fn connected(&self, client: &str) {
        if !self.down.load(Ordering::Acquire) {
            return;
        }
        let ended = self.episode.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.down.store(false, Ordering::Release);
        if let Some(episode) = ended {
            tracing::info!(
                client,
                "reached the brokers {} after {} s ({} failed attempts)",
                episode.brokers,
                episode.since.elapsed().as_secs(),
                episode.attempts
            );
        }
    }

    /// How long the brokers have not been reachable, while they are not.
    pub(crate) fn down_for(&self) -> Option<Duration> {
        if !self.down.load(Ordering::Acquire) {
            return None;
        }
        self.episode.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|e| e.since.elapsed())
    }

    /// Why the brokers cannot be reached, while they cannot.
    pub(crate) fn problem(&self) -> Option<String> {
        let episode = self.episode.lock().unwrap_or_else(|e| e.into_inner());
        episode.as_ref().map(|e| format!("cannot reach the brokers {}: {}", e.brokers, e.reason))
    }
}

impl Episode {
    fn remind(&mut self, client: &str, now: Instant) {
        if now.duration_since(self.last_told) < REPEAT_EVERY {
            return;
        }
        self.last_told = now;
        tracing::warn!(
            client,
            "still cannot reach the brokers {} after {} s ({} failed attempts): {}; still retrying",
            self.brokers,
            now.duration_since(self.since).as_secs(),
            self.attempts,
            self.reason
        );
    }
}

/// The failed connection attempts a librdkafka log line reports, if it reports any: its
/// `FAIL` lines at warning level or above, one attempt each plus the identical ones it says
/// it suppressed. (A closed idle connection is logged below that level.)
pub(crate) fn failed_attempts_in_log(level: RDKafkaLogLevel, facility: &str, message: &str) -> Option<u64> {
    let serious = matches!(
        level,
        RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning
    );
    if facility != "FAIL" || !serious {
        return None;
    }
    let suppressed = message
        .split(", ")
        .find_map(|part| part.split_once(" identical error(s) suppressed"))
        .and_then(|(count, _)| count.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap_or(0);
    Some(1 + suppressed)
}

/// For a client error that means no broker could be reached, the reason to tell (such errors
/// are counted by the log lines that go with them, so they add no attempt).
pub(crate) fn connection_problem(error: &KafkaError, reason: &str) -> Option<String> {
    match error.rdkafka_error_code()? {
        // Its reason, "N/M brokers are down", is counted after librdkafka has started
        // bootstrapping again, so it often reads "0/1 brokers are down".
        RDKafkaErrorCode::AllBrokersDown => Some("no connection to any broker is up".to_owned()),
        RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::Resolve => Some(reason.to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fail_line_counts_the_attempts_it_suppressed() {
        let line = "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused (after 0ms in \
                    state CONNECT, 4 identical error(s) suppressed)";
        assert_eq!(failed_attempts_in_log(RDKafkaLogLevel::Error, "FAIL", line), Some(5));
        assert_eq!(failed_attempts_in_log(RDKafkaLogLevel::Error, "FAIL", "Connect failed"), Some(1));
        assert_eq!(failed_attempts_in_log(RDKafkaLogLevel::Info, "FAIL", "Disconnected"), None);
        assert_eq!(failed_attempts_in_log(RDKafkaLogLevel::Error, "REQTMOUT", "Timed out"), None);
    }

    #[test]
    fn an_episode_lasts_from_the_first_failure_to_the_first_answer() {
        let reach = Reachability::default();
        assert_eq!(reach.down_for(), None);
        reach.failed("w", "127.0.0.1:1", "refused", 1);
        reach.failed("w", "127.0.0.1:1", "refused", 2);
        assert!(reach.down_for().is_some());
        let all_down = KafkaError::Global(RDKafkaErrorCode::AllBrokersDown);
        assert_eq!(
            connection_problem(&all_down, "0/1 brokers are down").as_deref(),
            Some("no connection to any broker is up")
        );
        assert_eq!(connection_problem(&KafkaError::Global(RDKafkaErrorCode::SSL), "handshake"), None);
        assert_eq!(reach.problem().as_deref(), Some("cannot reach the brokers 127.0.0.1:1: refused"));
        reach.connected("w");
        assert_eq!(reach.down_for(), None);
        assert_eq!(reach.problem(), None);
    }
}
