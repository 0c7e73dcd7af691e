//! Kafka workers on rdkafka and tokio: annotate an async function, start it by name.
//!
//! ```ignore
//! use kafka_runtime::prelude::*;
//!
//! // A per-message handler: called once per message; its offset is committed after Ok.
//! #[kafka_worker(name = "es", group = "my_group", topics = ["my-topic"])]
//! async fn es_consumer(msg: Message, ctx: WorkerContext) -> Result<(), WorkerError> {
//!     println!("{}: {:?}", ctx.name(), msg.payload_str()?);
//!     Ok(())
//! }
//!
//! // A stream worker: loops over its messages itself.
//! #[kafka_worker(name = "default", topics = ["default-topic"])]
//! async fn default_worker(mut topic: TopicStream, ctx: WorkerContext) -> Result<(), WorkerError> {
//!     while let Some(msg) = topic.next().await {
//!         println!("{} got offset {}", ctx.name(), msg.offset());
//!     }
//!     Ok(())
//! }
//!
//! #[kafka_main]
//! async fn main() {}
//! ```
//!
//! `cargo run -- start-consumers --consumer-worker es default` then runs both workers. See the
//! README for the command line, the configuration layers and the delivery guarantees.

mod app;
pub mod cli;
pub mod config;
mod consumer;
mod context;
mod embedded;
mod entry;
mod error;
pub mod extract;
mod handler;
mod listing;
mod message;
mod produce;
mod producer;
mod registry;
mod runner;
mod serialize;
mod shutdown;
mod stream;

pub use app::{run, run_with_args};
pub use context::WorkerContext;
pub use embedded::{embedded_cluster, EmbeddedInfo, EMBEDDED_PARTITIONS};
pub use error::{DecodeError, Error, WorkerError};
pub use handler::{FromMessage, FromMessageParts, IntoWorker, IntoWorkerResult, MessageHandler, WorkerStyle};
pub use message::Message;
pub use producer::{
    producer, DeliveryReport, OutgoingMessage, Producer, ProducerSetup, ProducerStats, SendError, Topic,
};
pub use registry::registered as registered_workers;
pub use serialize::Serializer;
pub use shutdown::Shutdown;
pub use stream::TopicStream;

/// Re-exported so apps can use the same client version without adding it.
pub use rdkafka;

/// Registers an async function as a Kafka worker.
///
/// `#[kafka_worker(name = "...", group = "...", topics = ["..."], regex_topic = "...")]`; every
/// argument is optional and `name` defaults to the function's name. The function's signature
/// picks the style: a per-message handler takes the message first, a stream worker takes a
/// [`TopicStream`].
#[doc(inline)]
pub use kafka_macros::kafka_worker;

/// Turns `async fn main` into the command-line entry point. Its body runs first, as the
/// app's setup; then the command given on the command line runs.
#[doc(inline)]
pub use kafka_macros::kafka_main;

/// What a worker module needs.
pub mod prelude {
    pub use crate::extract::{Headers, Json, Key, Text};
    pub use crate::{kafka_main, kafka_worker, producer, Message, Topic, TopicStream, WorkerContext, WorkerError};
}

/// What the macros' generated code calls. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::__submit_worker as submit_worker;
    pub use crate::entry::run_main;
    pub use crate::handler::{into_worker, Worker};
    pub use crate::registry::WorkerRegistration;
    #[cfg(feature = "linkme")]
    pub use crate::registry::WORKERS;
    pub use inventory;
    #[cfg(feature = "linkme")]
    pub use linkme;
}
