//! Errors: what a worker returns ([`WorkerError`]) and what the runtime reports ([`Error`]).

use std::error::Error as StdError;
use std::fmt;

/// The error a worker or handler returns. Any error type converts into it with `?`, and so do
/// `String` and `&str`.
pub struct WorkerError {
    inner: Box<dyn StdError + Send + Sync + 'static>,
}

impl WorkerError {
    /// An error with just a message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self { inner: message.to_string().into() }
    }

    /// The underlying error, for downcasting.
    pub fn get_ref(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.inner
    }
}

impl<E> From<E> for WorkerError
where
    E: Into<Box<dyn StdError + Send + Sync + 'static>>,
{
    fn from(err: E) -> Self {
        Self { inner: err.into() }
    }
}

impl fmt::Display for WorkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner)?;
        let mut source = self.inner.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl fmt::Debug for WorkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

/// A payload that could not be decoded into the type a handler asked for.
#[derive(Debug)]
pub struct DecodeError {
    pub(crate) what: &'static str,
    pub(crate) reason: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot decode the {}: {}", self.what, self.reason)
    }
}

impl StdError for DecodeError {}

/// What the runtime reports when a command cannot run or a worker stops with an error.
/// Its `Display` is the one-line reason the process prints before exiting non-zero.
#[derive(Debug)]
pub enum Error {
    /// The configuration is invalid; the message names the file, key or option.
    Config(String),
    /// A worker name given on the command line is not registered.
    UnknownWorker { name: String, registered: Vec<String> },
    /// A feature that is not supported yet.
    Unsupported(String),
    /// The Kafka client could not be created or used.
    Kafka { context: String, source: rdkafka::error::KafkaError },
    /// One or more workers stopped with an error.
    WorkersFailed(Vec<String>),
    /// Messages given to the producer were not delivered.
    NotDelivered(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(message) | Error::Unsupported(message) | Error::NotDelivered(message) => f.write_str(message),
            Error::UnknownWorker { name, registered } if registered.is_empty() => write!(
                f,
                "unknown worker `{name}`: no worker is registered; annotate an async fn with \
                 #[kafka_worker] in a crate that the binary links"
            ),
            Error::UnknownWorker { name, registered } => {
                write!(f, "unknown worker `{name}`; registered workers: {}", registered.join(", "))
            }
            Error::Kafka { context, source } => write!(f, "{context}: {source}"),
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
