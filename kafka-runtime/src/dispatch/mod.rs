//! How messages reach handlers: the per-message loop (`per_message`), the same under a
//! failure policy with retries and dead letters (`failure`), the batch loop (`batch`), and
//! the runner that starts, drains and closes every consumer of a command (`runner`).

pub(crate) mod batch;
pub(crate) mod concurrent;
pub(crate) mod failure;
pub(crate) mod per_message;
pub(crate) mod runner;
pub(crate) mod slots;
