//! [`Error`]: what the runtime reports when a command cannot run or a worker stops.

use std::error::Error as StdError;
use std::fmt;

/// What the runtime reports when a command cannot run or a worker stops with an error.
/// Its `Display` is the one-line reason the process prints before exiting non-zero.
#[derive(Debug)]
pub enum Error {
    /// The configuration is invalid; the message names the file, key or option.
    Config(String),
    /// A worker name given on the command line is not registered.
    UnknownWorker { name: String, registered: Vec<String> },
    /// One or more workers stopped with an error.
    WorkersFailed(Vec<String>),
    /// Messages given to the producer were not delivered.
    NotDelivered(String),
    /// A command's request to the brokers failed; the message names the brokers or the
    /// topic, and the broker's error.
    Broker(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(message) | Error::NotDelivered(message) | Error::Broker(message) => f.write_str(message),
            Error::UnknownWorker { name, registered } if registered.is_empty() => write!(
                f,
                "unknown worker `{name}`: no worker is registered; annotate an async fn with \
                 #[kafka_worker] in a crate that the binary links"
            ),
            Error::UnknownWorker { name, registered } => {
                write!(f, "unknown worker `{name}`; registered workers: {}", registered.join(", "))
            }
            Error::WorkersFailed(failures) => write!(f, "{}", failures.join("; ")),
        }
    }
}

impl StdError for Error {}

/// The text of a panic payload.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}
