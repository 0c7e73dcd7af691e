//! Logs: the process's subscriber, and librdkafka's log lines forwarded into it.

use rdkafka::config::RDKafkaLogLevel;

/// Logs to stderr at `RUST_LOG`'s level (default `info`), in colour only on a terminal.
pub(crate) fn init() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
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
