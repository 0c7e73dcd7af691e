//! The per-message loop: one message at a time, each handed to the handler, its offset stored
//! once the handler returns `Ok`. With `max_in_flight` above 1, `concurrent::run` runs
//! several at once; under a failure policy, `failure::run` runs them one at a time.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt as _;

use crate::consume::TopicStream;
use crate::error::panic_message;
use crate::worker::context::WorkerContext;
use crate::worker::error::WorkerError;
use crate::worker::handler::MessageHandler;

/// Runs `handler` on every message of `stream` until shutdown or the first failure, which
/// names the message and leaves it uncommitted; under a failure policy, `failure::run` does.
pub(crate) async fn run<H: MessageHandler<Args>, Args>(
    handler: Arc<H>,
    mut stream: TopicStream,
    ctx: WorkerContext,
) -> Result<(), WorkerError> {
    let worker = ctx.worker();
    if worker.failure.is_active() {
        if worker.concurrency.max_in_flight.value > 1 {
            tracing::info!(
                worker = ctx.name(),
                "under a failure policy (retries or a dead-letter topic) messages are handled one at a time; \
                 max_in_flight applies to workers without one"
            );
        }
        return super::failure::run(handler, stream, ctx).await;
    }
    if worker.concurrency.max_in_flight.value > 1 {
        return super::concurrent::run(handler, stream, ctx).await;
    }
    // One unwind guard around the whole loop, not one per message: it costs nothing until a
    // handler panics, and the stream, outside it, still names the message handed out.
    let handled = AssertUnwindSafe(async {
        while let Some(message) = stream.next().await {
            handler.call(message, &ctx).await?;
        }
        Ok::<_, WorkerError>(())
    })
    .catch_unwind()
    .await;
    let failure = match handled {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(err)) => format!("handler failed{}: {err}", at(&stream)),
        Err(panic) => format!("handler panicked{}: {}", at(&stream), panic_message(&*panic)),
    };
    Err(WorkerError::msg(format_args!("{failure}; the message was not committed and will be delivered again")))
}

fn at(stream: &TopicStream) -> String {
    stream.handed_out().map(|p| format!(" at {p}")).unwrap_or_default()
}
