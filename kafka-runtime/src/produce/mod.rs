//! Producing: the producer shared by the whole process (`producer`), a message on its way
//! out with its backpressure (`outgoing`), and how values become payloads (`serialize`).

pub(crate) mod outgoing;
pub(crate) mod producer;
pub(crate) mod serialize;
