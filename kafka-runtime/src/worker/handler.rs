//! How a function becomes a worker: its signature picks the style, through the traits here.
//!
//! - A *per-message handler* takes the message (or a decoded view of it) first, then any
//!   number of extractors: `async fn(Message, WorkerContext)`, `async fn(Json<Order>)`.
//! - A *stream worker* takes the [`TopicStream`] and loops itself:
//!   `async fn(TopicStream, WorkerContext)`.
//! - A *batch worker* takes many messages at once: `async fn(Batch)`,
//!   `async fn(Vec<Message>, WorkerContext)`, `async fn(Vec<Json<Order>>)`.
//!
//! All return `()` or `Result<(), E>` for any error `E`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::context::WorkerContext;
use super::error::WorkerError;
use crate::consume::{Batch, Message, TopicStream};
use crate::dispatch::{batch, per_message};

/// Builds a value from the message, by reference. Implemented by [`WorkerContext`] and by
/// the extractors in [`crate::extract`]; usable in any argument position but the first
/// when the first is [`Message`].
pub trait FromMessageParts: Sized {
    fn from_message_parts(message: &Message, ctx: &WorkerContext) -> Result<Self, WorkerError>;
}

/// Builds a handler's first argument from the message, taking it by value. Implemented by
/// [`Message`] itself and by every [`FromMessageParts`] type.
pub trait FromMessage: Sized {
    fn from_message(message: Message, ctx: &WorkerContext) -> Result<Self, WorkerError>;
}

impl FromMessage for Message {
    fn from_message(message: Message, _ctx: &WorkerContext) -> Result<Self, WorkerError> {
        Ok(message)
    }
}

impl<T: FromMessageParts> FromMessage for T {
    fn from_message(message: Message, ctx: &WorkerContext) -> Result<Self, WorkerError> {
        T::from_message_parts(&message, ctx)
    }
}

/// What a worker function may return.
pub trait IntoWorkerResult {
    fn into_worker_result(self) -> Result<(), WorkerError>;
}

impl IntoWorkerResult for () {
    fn into_worker_result(self) -> Result<(), WorkerError> {
        Ok(())
    }
}

impl<E: Into<WorkerError>> IntoWorkerResult for Result<(), E> {
    fn into_worker_result(self) -> Result<(), WorkerError> {
        self.map_err(Into::into)
    }
}

/// A per-message handler. `Args` is a marker (the argument types) that keeps the
/// implementations for different signatures apart.
pub trait MessageHandler<Args>: Send + Sync + 'static {
    fn call(&self, message: Message, ctx: &WorkerContext) -> impl Future<Output = Result<(), WorkerError>> + Send;
}

macro_rules! impl_message_handler {
    ($($part:ident),*) => {
        impl<F, Fut, R, First, $($part,)*> MessageHandler<(First, $($part,)*)> for F
        where
            F: Fn(First, $($part,)*) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = R> + Send,
            R: IntoWorkerResult,
            First: FromMessage,
            $($part: FromMessageParts,)*
        {
            #[allow(non_snake_case)]
            fn call(&self, message: Message, ctx: &WorkerContext) -> impl Future<Output = Result<(), WorkerError>> + Send {
                // Extract before the future starts, so it borrows neither the message nor ctx.
                let call = (|| {
                    $(let $part = $part::from_message_parts(&message, ctx)?;)*
                    let first = First::from_message(message, ctx)?;
                    Ok::<_, WorkerError>(self(first, $($part,)*))
                })();
                async move { call?.await.into_worker_result() }
            }
        }
    };
}

impl_message_handler!();
impl_message_handler!(T2);
impl_message_handler!(T2, T3);
impl_message_handler!(T2, T3, T4);
impl_message_handler!(T2, T3, T4, T5);
impl_message_handler!(T2, T3, T4, T5, T6);

/// Builds a batch worker's first argument from its batch. Implemented by [`Batch`],
/// `Vec<Message>`, and `Vec<T>` for every [`FromMessageParts`] type (`Vec<Json<T>>`,
/// `Vec<Text>`, ...).
pub trait FromBatch: Sized {
    /// On a message that cannot be converted, hands the batch back with the message's index
    /// and the error.
    fn from_batch(batch: Batch, ctx: &WorkerContext) -> Result<Self, (Batch, usize, WorkerError)>;
}

impl FromBatch for Batch {
    fn from_batch(batch: Batch, _ctx: &WorkerContext) -> Result<Self, (Batch, usize, WorkerError)> {
        Ok(batch)
    }
}

impl FromBatch for Vec<Message> {
    fn from_batch(batch: Batch, _ctx: &WorkerContext) -> Result<Self, (Batch, usize, WorkerError)> {
        Ok(batch.into_messages())
    }
}

impl<T: FromMessageParts> FromBatch for Vec<T> {
    fn from_batch(batch: Batch, ctx: &WorkerContext) -> Result<Self, (Batch, usize, WorkerError)> {
        let mut all = Vec::with_capacity(batch.len());
        for (index, message) in batch.iter().enumerate() {
            match T::from_message_parts(message, ctx) {
                Ok(value) => all.push(value),
                Err(err) => return Err((batch, index, err)),
            }
        }
        Ok(all)
    }
}

/// A batch handler: its first argument is built from the batch ([`FromBatch`]); a
/// [`WorkerContext`] may follow.
pub trait BatchHandler<Args>: Send + Sync + 'static {
    /// What the handler takes the batch as.
    type Input: FromBatch + Send;
    fn call(&self, input: Self::Input, ctx: &WorkerContext) -> impl Future<Output = Result<(), WorkerError>> + Send;
}

impl<F, Fut, R, B> BatchHandler<(B,)> for F
where
    F: Fn(B) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send,
    R: IntoWorkerResult,
    B: FromBatch + Send,
{
    type Input = B;
    fn call(&self, input: B, _ctx: &WorkerContext) -> impl Future<Output = Result<(), WorkerError>> + Send {
        let running = self(input);
        async move { running.await.into_worker_result() }
    }
}

impl<F, Fut, R, B> BatchHandler<(B, WorkerContext)> for F
where
    F: Fn(B, WorkerContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send,
    R: IntoWorkerResult,
    B: FromBatch + Send,
{
    type Input = B;
    fn call(&self, input: B, ctx: &WorkerContext) -> impl Future<Output = Result<(), WorkerError>> + Send {
        let running = self(input, ctx.clone());
        async move { running.await.into_worker_result() }
    }
}

/// A future a worker runs to completion; one per consumer, never one per message.
pub(crate) type WorkerFuture = Pin<Box<dyn Future<Output = Result<(), WorkerError>> + Send>>;

/// Which of the two styles a worker has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkerStyle {
    /// Called once per message; the runtime loops and stores offsets.
    PerMessage,
    /// Given the [`TopicStream`]; loops itself.
    Stream,
    /// Called with many messages at once; the runtime cuts the batches and stores offsets.
    Batch,
}

impl std::fmt::Display for WorkerStyle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WorkerStyle::PerMessage => "per-message",
            WorkerStyle::Stream => "stream",
            WorkerStyle::Batch => "batch",
        })
    }
}

/// A registered function, ready to run on a consumer.
pub struct Worker {
    pub(crate) style: WorkerStyle,
    pub(crate) run: Box<dyn Fn(TopicStream, WorkerContext) -> WorkerFuture + Send + Sync>,
}

/// Marker for per-message handlers in [`IntoWorker`].
pub struct PerMessageStyle<Args>(std::marker::PhantomData<Args>);
/// Marker for stream workers in [`IntoWorker`].
pub struct StreamStyle<Args>(std::marker::PhantomData<Args>);
/// Marker for batch workers in [`IntoWorker`].
pub struct BatchStyle<Args>(std::marker::PhantomData<Args>);

/// Turns a function into a [`Worker`]; implemented for every accepted signature.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a valid Kafka worker function",
    label = "this function's signature fits no worker style",
    note = "a per-message handler: `async fn(Message | Json<T> | Text | ..., [WorkerContext | Key | Headers | ...]) -> Result<(), E>`",
    note = "a stream worker: `async fn(TopicStream, WorkerContext) -> Result<(), E>` or `async fn(TopicStream) -> Result<(), E>`",
    note = "a batch worker: `async fn(Batch | Vec<Message> | Vec<Json<T>> | ..., [WorkerContext]) -> Result<(), E>`",
    note = "the return type may also be `()`; `E` is any error type, `String` or `&str`"
)]
pub trait IntoWorker<Style> {
    fn into_worker(self) -> Worker;
}

impl<H, Args> IntoWorker<PerMessageStyle<Args>> for H
where
    H: MessageHandler<Args>,
    Args: Send + 'static,
{
    fn into_worker(self) -> Worker {
        let handler = Arc::new(self);
        Worker {
            style: WorkerStyle::PerMessage,
            run: Box::new(move |stream, ctx| Box::pin(per_message::run(Arc::clone(&handler), stream, ctx))),
        }
    }
}

impl<H, Args> IntoWorker<BatchStyle<Args>> for H
where
    H: BatchHandler<Args>,
    Args: Send + 'static,
{
    fn into_worker(self) -> Worker {
        let handler = Arc::new(self);
        Worker {
            style: WorkerStyle::Batch,
            run: Box::new(move |stream, ctx| Box::pin(batch::run(Arc::clone(&handler), stream, ctx))),
        }
    }
}

macro_rules! impl_stream_worker {
    ($($arg:ident),*) => {
        impl<F, Fut, R> IntoWorker<StreamStyle<(TopicStream, $($arg,)*)>> for F
        where
            F: Fn(TopicStream, $($arg,)*) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = R> + Send + 'static,
            R: IntoWorkerResult,
        {
            fn into_worker(self) -> Worker {
                Worker {
                    style: WorkerStyle::Stream,
                    #[allow(unused_variables)]
                    run: Box::new(move |mut stream, ctx| {
                        // What its acks finished out of order is not handed to it again.
                        stream.skip_completed_offsets();
                        let running = self(stream, $(<$arg>::clone(&ctx),)*);
                        Box::pin(async move { running.await.into_worker_result() })
                    }),
                }
            }
        }
    };
}

impl_stream_worker!();
impl_stream_worker!(WorkerContext);

/// Called by the code `#[kafka_worker]` generates.
#[doc(hidden)]
pub fn into_worker<Style, F: IntoWorker<Style>>(function: F) -> Worker {
    function.into_worker()
}
