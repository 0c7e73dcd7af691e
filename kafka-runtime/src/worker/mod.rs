//! Workers: how an annotated function is registered (`registry`) and becomes a worker of one
//! style (`handler`), what it receives (`extract`, `context`), what it returns on failure
//! (`error`), and how a running one is doing (`state`).

pub(crate) mod context;
pub(crate) mod error;
pub mod extract;
pub(crate) mod handler;
pub(crate) mod registry;
pub(crate) mod state;
