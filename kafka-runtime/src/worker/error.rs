//! What a worker or handler returns when a message fails: [`WorkerError`], which says whether
//! trying again could help, and [`DecodeError`], a payload that can never be decoded.

use std::error::Error as StdError;
use std::fmt;

/// The error a worker or handler returns. Any error type converts into it with `?`, and so do
/// `String` and `&str`.
///
/// A failure is *transient* (trying the message again might succeed) unless it is a
/// [`DecodeError`], which extractors return for a payload they cannot decode, or was made
/// with [`WorkerError::permanent`]: such a message can never succeed.
pub struct WorkerError {
    inner: Box<dyn StdError + Send + Sync + 'static>,
    permanent: bool,
    /// For a batch worker: the index in the batch of the one message that failed.
    index: Option<usize>,
}

impl WorkerError {
    /// An error with just a message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self { inner: message.to_string().into(), permanent: false, index: None }
    }

    /// An error for a message that can never succeed, however often it is tried.
    pub fn permanent(err: impl Into<Box<dyn StdError + Send + Sync + 'static>>) -> Self {
        Self { inner: err.into(), permanent: true, index: None }
    }

    /// A batch worker's failure of one message, the `index`-th of its batch: the other
    /// messages of the batch count as done, and only this one follows the failure policy
    /// (tried again alone, then sent to the dead-letter topic or stopping the worker).
    /// Without it, a batch worker's error fails the whole batch.
    pub fn at(index: usize, err: impl Into<WorkerError>) -> Self {
        Self { index: Some(index), ..err.into() }
    }

    /// The index given with [`WorkerError::at`].
    pub fn index(&self) -> Option<usize> {
        self.index
    }

    /// True when trying the message again cannot help: a payload that cannot be decoded, or
    /// an error made with [`WorkerError::permanent`].
    pub fn is_permanent(&self) -> bool {
        self.permanent || self.inner.is::<DecodeError>()
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
        Self { inner: err.into(), permanent: false, index: None }
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

/// A payload (or key) that could not be decoded into the type a handler asked for.
#[derive(Debug)]
pub struct DecodeError {
    pub(crate) what: &'static str,
    pub(crate) reason: String,
}

impl DecodeError {
    /// A message without the part asked for: a tombstone has no payload.
    pub(crate) fn empty(what: &'static str) -> Self {
        Self { what, reason: "the message has no payload (a tombstone)".into() }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot decode the {}: {}", self.what, self.reason)
    }
}

impl StdError for DecodeError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_errors_are_permanent_and_others_are_not() {
        let decode: WorkerError = DecodeError { what: "payload as JSON", reason: "eof".into() }.into();
        assert!(decode.is_permanent());
        assert!(!WorkerError::from("database down").is_permanent());
        assert!(!WorkerError::msg("timeout").is_permanent());
        assert!(WorkerError::permanent("unknown schema version").is_permanent());
    }

    #[test]
    fn an_index_keeps_the_error_and_whether_it_is_permanent() {
        let err = WorkerError::at(3, WorkerError::permanent("bad"));
        assert_eq!((err.index(), err.is_permanent(), err.to_string().as_str()), (Some(3), true, "bad"));
        assert_eq!(WorkerError::from("x").index(), None);
    }
}
