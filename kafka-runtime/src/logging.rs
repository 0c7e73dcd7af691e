//! Logs: the process's subscriber, which masks secrets in every line it writes, and
//! librdkafka's log lines and client errors forwarded into it.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::config::redact;

/// Logs to stderr at `RUST_LOG`'s level (default `info`), in colour only on a terminal, with
/// every configured secret value masked.
pub(crate) fn init() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_writer(|| RedactedLine(Vec::new()))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}

/// One log line, collected whole and written to stderr with secrets masked when dropped
/// (the subscriber makes one writer per event).
struct RedactedLine(Vec<u8>);

impl std::io::Write for RedactedLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RedactedLine {
    fn drop(&mut self) {
        let line = String::from_utf8_lossy(&self.0);
        let line = redact(&line);
        // The lock first, then the check: a line either precedes the final outcome or is
        // dropped (see `last_words`).
        let mut stderr = std::io::stderr().lock();
        if !ENDED.load(Ordering::Acquire) {
            let _ = stderr.write_all(line.as_bytes());
        }
    }
}

/// Set once the process has printed its outcome: log lines from librdkafka's threads, still
/// running while the process exits, would follow it.
static ENDED: AtomicBool = AtomicBool::new(false);

/// Writes the process's outcome as the last line on stderr: no log line follows it.
pub(crate) fn last_words(line: &str) {
    let mut stderr = std::io::stderr().lock();
    ENDED.store(true, Ordering::Release);
    let _ = writeln!(stderr, "{line}");
}

/// Forwards one librdkafka log line, at the matching level, naming the client it came from
/// (a worker's label, or `producer`).
pub(crate) fn librdkafka(client: &str, level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", client, "{facility}: {message}")
        }
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", client, "{facility}: {message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", client, "{facility}: {message}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", client, "{facility}: {message}"),
    }
}

/// Logs an error librdkafka reports for a client (`client`: a worker's label, or
/// `producer`); connection failures go to `reachability` instead. TLS and SASL failures are errors that say which settings to check; librdkafka
/// keeps retrying.
pub(crate) fn client_error(client: &str, error: &KafkaError, reason: &str) {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::SSL) => tracing::error!(
            client,
            "TLS with the broker failed: {reason}; check ssl.ca.location (the CA that signed the \
             broker's certificate) and the other ssl.* settings in kafka.connection_settings"
        ),
        Some(RDKafkaErrorCode::Authentication) => tracing::error!(
            client,
            "SASL authentication with the broker failed: {reason}; check security.protocol, \
             sasl.mechanisms, sasl.username and sasl.password in kafka.connection_settings"
        ),
        _ => tracing::warn!(client, "kafka client error: {error}: {reason}"),
    }
}
