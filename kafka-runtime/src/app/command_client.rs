//! The librdkafka clients of the one-off commands (`consumer-stat`, `create-topics`): their
//! logs under the command's name, their requests' timeout, their destruction off the async
//! threads, and the error that names the brokers when a request fails.

use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;

use crate::error::Error;

/// How long each request of a command waits for the brokers.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Logs what a command's client reports, naming the command.
pub(crate) struct CommandContext {
    command: &'static str,
}

impl CommandContext {
    pub(crate) fn new(command: &'static str) -> Self {
        Self { command }
    }
}

impl ClientContext for CommandContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        // The workers' connection settings carry consumer keys an admin client ignores.
        let level = if facility == "CONFWARN" { RDKafkaLogLevel::Debug } else { level };
        crate::logging::librdkafka(self.command, level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // The request that fails reports it, naming the brokers.
        tracing::debug!(client = self.command, "kafka client error: {error}: {reason}");
    }
}

impl ConsumerContext for CommandContext {}

/// A command's request that failed: what it asked, of which brokers, and what to check.
pub(crate) fn request_failed(command: &str, request: &str, brokers: &str, err: &KafkaError) -> Error {
    use rdkafka::types::RDKafkaErrorCode as Code;
    let code = match err {
        KafkaError::AdminOp(code) => Some(*code),
        other => other.rdkafka_error_code(),
    };
    let unreachable = matches!(
        code,
        Some(Code::OperationTimedOut | Code::RequestTimedOut | Code::AllBrokersDown | Code::BrokerTransportFailure)
    );
    Error::Broker(if unreachable {
        format!(
            "{command}: {request}: no answer from the brokers at {brokers} within {} s ({err}); check that they \
             run and are reachable, and --brokers, KAFKA_BROKERS or kafka.brokers in config.json",
            REQUEST_TIMEOUT.as_secs()
        )
    } else {
        format!("{command}: {request}: the brokers at {brokers} answered: {err}")
    })
}

/// Destroys a client on a blocking thread: destroying one joins librdkafka's threads.
pub(crate) fn destroy_off_async_threads<T: Send + 'static>(client: T) {
    if tokio::runtime::Handle::try_current().is_ok() {
        drop(tokio::task::spawn_blocking(move || drop(client)));
    } else {
        drop(client);
    }
}
