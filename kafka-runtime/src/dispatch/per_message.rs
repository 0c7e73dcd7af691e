//! The per-message loop: one message at a time, each handed to the handler, its offset stored
//! once the handler returns `Ok`. With `max_in_flight` above 1, the first handler call that
//! waits hands the worker over to `concurrent::run`, which runs several at once; a handler
//! that never waits stays here, at the cost of one loop. Under a failure policy (retries, a
//! dead-letter topic), `concurrent::run_with_policy` runs them, or `failure::run` with
//! `max_in_flight = 1`.

use std::future::Future as _;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Poll;

use futures_util::FutureExt as _;

use super::concurrent;
use crate::config::Ordering;
use crate::consume::TopicStream;
use crate::error::panic_message;
use crate::ops::observe::Observer;
use crate::worker::context::WorkerContext;
use crate::worker::error::WorkerError;
use crate::worker::handler::MessageHandler;

/// Runs `handler` on every message of `stream` until shutdown or the first failure, which
/// names the message and leaves it uncommitted; under a failure policy, what the policy says.
pub(crate) async fn run<H: MessageHandler<Args>, Args>(
    handler: Arc<H>,
    mut stream: TopicStream,
    ctx: WorkerContext,
) -> Result<(), WorkerError> {
    let worker = ctx.worker();
    let concurrent = worker.concurrency.max_in_flight.value > 1;
    let by_key = worker.concurrency.ordering.value == Ordering::Key;
    // Messages of a partition finish out of order: those done above the committed offset go
    // in the commit's metadata, and are skipped when read again.
    let out_of_order = concurrent && worker.concurrency.ordering.value != Ordering::Partition;
    if out_of_order {
        stream.keep_completed_offsets();
    }
    let observer = Observer::new(Arc::clone(stream.state()));
    if worker.failure.is_active() {
        if concurrent {
            return concurrent::run_with_policy(&*handler, &mut stream, &ctx, &observer).await;
        }
        return super::failure::run(handler, stream, ctx, observer).await;
    }
    // One unwind guard around the whole loop, not one per message: it costs nothing until a
    // handler panics, and the stream, outside it, still names the message handed out.
    let handled = AssertUnwindSafe(async {
        while let Some(message) = stream.next().await {
            if out_of_order && stream.last_was_done() {
                // Done before a restart or a rebalance; `next` stores it.
                continue;
            }
            let key = if concurrent && by_key { concurrent::key_hash(&message) } else { None };
            let mut call = std::pin::pin!(observer.observe(message, |message| handler.call(message, &ctx)));
            if !concurrent {
                call.await?;
                continue;
            }
            // Polled once by hand: while the handler never waits, one message at a time is
            // the fastest there is. The first call that waits hands the worker over to the
            // concurrent loop, this call still running, for good.
            if let Poll::Ready(done) = std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await {
                done?;
                continue;
            }
            let Some(receipt) = stream.defer() else {
                // (Every message `next` returns is handed out; without a receipt, stay here.)
                call.await?;
                continue;
            };
            let first = concurrent::FirstCall { call, receipt, key };
            // Its failures name their messages already.
            return Ok(Some(concurrent::run(&*handler, &mut stream, &ctx, &observer, first).await));
        }
        Ok::<_, WorkerError>(None)
    })
    .catch_unwind()
    .await;
    let failure = match handled {
        Ok(Ok(None)) => return Ok(()),
        Ok(Ok(Some(concurrent))) => return concurrent,
        Ok(Err(err)) => format!("handler failed{}: {err}", at(&stream)),
        Err(panic) => format!("handler panicked{}: {}", at(&stream), panic_message(&*panic)),
    };
    Err(WorkerError::msg(format_args!("{failure}; the message was not committed and will be delivered again")))
}

fn at(stream: &TopicStream) -> String {
    stream.handed_out().map(|p| format!(" at {p}")).unwrap_or_default()
}
