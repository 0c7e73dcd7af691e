//! Consuming, in the order a message travels: the client and its subscription (`client`),
//! how far it fetches ahead (`prefetch`), the group's rebalances (`rebalance`), told to a
//! stream worker that asks (`rebalance_events`), one queue per assigned partition
//! (`partitions`), fetching in batches (`fetch`), yielding to the scheduler on the way
//! (`yield_pace`), the [`Message`] handed out, its offset stored once done (`offsets`), with
//! the done offsets above the committed one carried in the commit's metadata (`completed`),
//! and [`TopicStream`], the public API over them, with [`Ack`] for a message a stream worker
//! finishes elsewhere (`ack`); a batch worker gets them grouped in a [`Batch`] (`batch`).

pub(crate) mod ack;
pub(crate) mod batch;
pub(crate) mod client;
pub(crate) mod coarse_clock;
pub(crate) mod completed;
pub(crate) mod fetch;
pub(crate) mod message;
pub(crate) mod offsets;
pub(crate) mod partitions;
pub(crate) mod prefetch;
pub(crate) mod rebalance;
pub(crate) mod rebalance_events;
pub(crate) mod stream;
pub(crate) mod yield_pace;

pub use ack::Ack;
pub use batch::Batch;
pub use message::Message;
pub use rebalance_events::{Partition, StreamEvent};
pub use stream::TopicStream;
