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
//! README for the command line, the configuration layers, the delivery guarantees and the
//! architecture: `app` (commands), `config` (layers and client settings), `worker` (what a
//! function becomes), `consume` (a message's way in), `dispatch` (its way to a handler) and
//! `produce` (the way out).

mod app;
pub mod config;
mod consume;
mod dispatch;
mod embedded;
mod error;
mod ffi;
mod logging;
mod ops;
mod produce;
mod reachability;
#[cfg(test)]
mod test_support;
mod worker;

pub use app::cli;
pub use app::shutdown::Shutdown;
pub use app::{run, run_with_args};
pub use consume::prefetch::settings as prefetch_settings;
pub use consume::{Ack, Batch, Message, Partition, StreamEvent, TopicStream};
pub use dispatch::failure::DEAD_LETTER_HEADERS;
pub use embedded::{embedded_cluster, EmbeddedInfo, EMBEDDED_PARTITIONS};
pub use error::Error;
pub use ops::hooks;
pub use produce::outgoing::{OutgoingMessage, Topic};
pub use produce::producer::{producer, DeliveryReport, Producer, ProducerSetup, ProducerStats, SendError};
pub use produce::serialize::Serializer;
pub use worker::context::WorkerContext;
pub use worker::error::{DecodeError, WorkerError};
pub use worker::extract;
pub use worker::handler::{
    BatchHandler, FromBatch, FromMessage, FromMessageParts, IntoWorker, IntoWorkerResult, MessageHandler, WorkerStyle,
};
pub use worker::registry::registered as registered_workers;
pub use worker::state::{running_workers, WorkerStatus};

/// Re-exported so apps can use the same client version without adding it.
pub use rdkafka;

/// Registers an async function as a Kafka worker.
///
/// `#[kafka_worker(name = "...", group = "...", topics = ["..."], regex_topic = "...", crate = "...")]`,
/// plus the failure policy keys `retries`, `retry_backoff_ms`, `retry_backoff_max_ms`,
/// `dead_letter_topic` and `on_decode_error`, a batch worker's `take` and `within_ms`, and a
/// per-message worker's `ordering` and `max_in_flight` (see the README); every argument is optional and
/// `name` defaults to the function's name. `crate` names this
/// crate when the app renamed the dependency (default `::kafka_runtime`). The function's signature
/// picks the style: a per-message handler takes the message first, a stream worker takes a
/// [`TopicStream`], a batch worker takes a [`Batch`] (or a `Vec` of messages or extractors).
#[doc(inline)]
pub use kafka_macros::kafka_worker;

/// Turns `async fn main` into the command-line entry point. Its body runs first, as the
/// app's setup; then the command given on the command line runs. Its one argument,
/// `crate = "..."`, names this crate when the app renamed the dependency.
#[doc(inline)]
pub use kafka_macros::kafka_main;

/// What a worker module needs.
pub mod prelude {
    pub use crate::extract::{Headers, Json, Key, Text};
    pub use crate::{
        kafka_main, kafka_worker, producer, Ack, Batch, Message, Partition, StreamEvent, Topic, TopicStream,
        WorkerContext, WorkerError,
    };
}

/// What the macros' generated code calls. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::__submit_worker as submit_worker;
    pub use crate::app::entry::run_main;
    pub use crate::worker::handler::{into_worker, Worker};
    #[cfg(feature = "linkme")]
    pub use crate::worker::registry::WORKERS;
    pub use crate::worker::registry::{BatchAttrs, ConcurrencyAttrs, FailureAttrs, WorkerRegistration};
    pub use inventory;
    #[cfg(feature = "linkme")]
    pub use linkme;
}
