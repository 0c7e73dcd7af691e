//! How messages reach handlers: the per-message loop, and the runner that starts, drains and
//! closes every consumer of a command.

pub(crate) mod per_message;
pub(crate) mod runner;
