//! How messages reach handlers: the per-message loop (`per_message`), the same under a
//! failure policy with retries and dead letters (`failure`), several messages at once in
//! lanes (`concurrent`, over `slots`), the batch loop (`batch`), batches of several
//! partitions at once (`partition_batches`), both following the failure policy through
//! `batch_failure`, and the runner that starts, drains and closes
//! every consumer of a command (`runner`).

pub(crate) mod batch;
mod batch_failure;
pub(crate) mod concurrent;
pub(crate) mod failure;
pub(crate) mod partition_batches;
pub(crate) mod per_message;
pub(crate) mod runner;
pub(crate) mod slots;
