//! The per-message loop under a failure policy (`retries`, `dead_letter_topic`): a message
//! that fails waits for its next try with its partition paused, while the other partitions
//! flow; once its tries are used up it goes to the dead-letter topic, or stops the worker.
//!
//! Offsets stay exact: a waiting message's partition hands out nothing else, so storing the
//! message's offset once it is done (or dead-lettered) covers every earlier one.
//!
//! The loops that run several at once share its pieces: one try of a message
//! ([`try_once`]), the dead-letter send, and the retry waits a rebalance cuts short
//! ([`RetryWaits`]).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::policy::NextStep;
use crate::config::FailurePolicy;
use crate::consume::offsets::{Position, Receipt};
use crate::consume::{Message, TopicStream};
use crate::error::panic_message;
use crate::ops::observe::Observer;
use crate::produce::producer::{producer, DeliveryReport, SendError};
use crate::worker::context::WorkerContext;
use crate::worker::error::WorkerError;
use crate::worker::handler::MessageHandler;

/// Headers a dead-lettered message carries besides its own.
pub const DEAD_LETTER_HEADERS: [&str; 7] = [
    "dlq.original.topic",
    "dlq.original.partition",
    "dlq.original.offset",
    "dlq.original.timestamp",
    "dlq.worker",
    "dlq.error",
    "dlq.attempts",
];

/// A message waiting for its next try.
struct Waiting {
    message: Message,
    receipt: Receipt,
    /// Tries made so far.
    tries: u32,
    due: Instant,
}

/// Runs `handler` on every message of `stream` until shutdown, or until a failure the policy
/// says stops the worker. Messages still waiting at shutdown are not committed: they come
/// again after a restart.
pub(crate) async fn run<H: MessageHandler<Args>, Args>(
    handler: Arc<H>,
    mut stream: TopicStream,
    ctx: WorkerContext,
    observer: Observer,
) -> Result<(), WorkerError> {
    let worker = PolicyLoop { handler, policy: ctx.worker().failure.clone(), ctx, observer };
    let mut waiting: Vec<Waiting> = Vec::new();
    loop {
        forget_revoked(&mut stream, &mut waiting);
        let next = match waiting.iter().map(|w| w.due).min() {
            None => stream.next().await,
            Some(due) => tokio::select! {
                biased;
                () = tokio::time::sleep_until(due) => {
                    // A message taken away while it waited is dropped here: its new owner reads
                    // it again from the commit.
                    forget_revoked(&mut stream, &mut waiting);
                    if let Some(index) = waiting.iter().position(|w| w.due <= Instant::now()) {
                        let retry = waiting.swap_remove(index);
                        worker.attempt(&mut stream, &mut waiting, retry.message, retry.receipt, retry.tries).await?;
                    }
                    continue;
                }
                next = stream.next() => next,
            },
        };
        let Some(message) = next else { break };
        // This loop marks messages done itself: a failed one must not be stored by `next()`.
        let Some(receipt) = stream.defer() else { continue };
        worker.attempt(&mut stream, &mut waiting, message, receipt, 0).await?;
    }
    Ok(())
}

/// Drops the waiting messages of partitions revoked while they waited.
fn forget_revoked(stream: &mut TopicStream, waiting: &mut Vec<Waiting>) {
    let revoked = stream.take_revoked_held();
    if !revoked.is_empty() {
        waiting.retain(|w| !revoked.iter().any(|(t, p)| w.message.partition() == *p && w.message.topic() == t));
    }
}

struct PolicyLoop<H> {
    handler: Arc<H>,
    policy: FailurePolicy,
    ctx: WorkerContext,
    observer: Observer,
}

impl<H> PolicyLoop<H> {
    /// One try of a message, and what the policy says follows it.
    async fn attempt<Args>(
        &self,
        stream: &mut TopicStream,
        waiting: &mut Vec<Waiting>,
        message: Message,
        receipt: Receipt,
        tries_before: u32,
    ) -> Result<(), WorkerError>
    where
        H: MessageHandler<Args>,
    {
        match try_once(&*self.handler, &self.ctx, &self.observer, &self.policy, message, tries_before).await {
            Tried::Done => {
                stream.store(&receipt);
                if tries_before > 0 {
                    // Its partition, paused while it waited, hands out messages again.
                    stream.resume(&receipt);
                }
                Ok(())
            }
            Tried::Again { wait, message } => {
                if tries_before == 0 {
                    stream.pause(&receipt);
                }
                waiting.push(Waiting { message, receipt, tries: tries_before + 1, due: Instant::now() + wait });
                Ok(())
            }
            Tried::Stop(why) => Err(WorkerError::msg(why)),
        }
    }
}

/// What one try of a message came to, under the worker's failure policy.
pub(super) enum Tried {
    /// Handled, or sent to the dead-letter topic: its offset may be stored.
    Done,
    /// It failed and is to be tried again after `wait`.
    Again { wait: Duration, message: Message },
    /// The worker stops, the message uncommitted: why, naming the message.
    Stop(String),
}

/// Hands `message` to the handler (try number `tries_before + 1`); on a failure (an error or
/// a panic) does what the policy says: logs a retry, or sends the message to the dead-letter
/// topic, or gives up.
pub(super) async fn try_once<H: MessageHandler<Args>, Args>(
    handler: &H,
    ctx: &WorkerContext,
    observer: &Observer,
    policy: &FailurePolicy,
    message: Message,
    tries_before: u32,
) -> Tried {
    let (for_handler, kept) = message.share();
    let tries = tries_before + 1;
    let call = observer.observe(for_handler, |message| handler.call(message, ctx));
    let failure = match AssertUnwindSafe(call).catch_unwind().await {
        Ok(Ok(())) => return Tried::Done,
        Ok(Err(err)) => err,
        Err(panic) => WorkerError::msg(format_args!("the handler panicked: {}", panic_message(&*panic))),
    };
    let at = Position { topic: kept.topic().to_owned(), partition: kept.partition(), offset: kept.offset() };
    let prefix = &ctx.worker().topic_prefix.value;
    let dead_letter = match policy.after_failure(&failure, tries, kept.topic(), prefix) {
        NextStep::Retry(wait) => {
            tracing::warn!(
                worker = ctx.name(),
                "handler failed at {at} (try {tries} of {}): {failure}; trying again in {} ms",
                policy.retries.value + 1,
                wait.as_millis()
            );
            observer.retried(&kept);
            return Tried::Again { wait, message: kept };
        }
        NextStep::DeadLetter(topic) => topic,
        NextStep::Stop => {
            return Tried::Stop(format!(
                "handler failed at {at}: {failure}; the message was not committed and will be delivered again"
            ))
        }
    };
    match send_dead_letter(&kept, &dead_letter, ctx.name(), &failure, tries).await {
        Ok(report) => {
            tracing::warn!(
                worker = ctx.name(),
                "handler failed at {at} after {tries} tries: {failure}; sent to the dead-letter topic: {report}"
            );
            observer.dead_lettered(&kept);
            Tried::Done
        }
        Err(err) => Tried::Stop(format!(
            "handler failed at {at}: {failure}; sending the message to the dead-letter topic `{dead_letter}` \
             failed: {err}; the message was not committed and will be delivered again"
        )),
    }
}

/// Sends a copy of the message (key, value, headers) to `topic` with headers that say where
/// it came from and why, and waits for the broker's acknowledgement.
pub(super) async fn send_dead_letter(
    message: &Message,
    topic: &str,
    worker: &str,
    failure: &WorkerError,
    tries: u32,
) -> Result<DeliveryReport, SendError> {
    let mut out = producer().message_bytes(topic, message.payload().unwrap_or_default());
    if let Some(key) = message.key() {
        out = out.key(key);
    }
    for (name, value) in message.headers() {
        out = out.header(name, value.unwrap_or_default());
    }
    let timestamp = message.timestamp().to_millis().map(|ms| ms.to_string()).unwrap_or_default();
    let values = [
        message.topic().to_owned(),
        message.partition().to_string(),
        message.offset().to_string(),
        timestamp,
        worker.to_owned(),
        failure.to_string(),
        tries.to_string(),
    ];
    for (name, value) in DEAD_LETTER_HEADERS.iter().zip(&values) {
        out = out.header(name, value);
    }
    out.send().await
}

/// Lets the messages that wait for their next try give up their slot when a rebalance or
/// the shutdown is waiting for the running ones: a wait (up to `retry_backoff_max_ms`)
/// must not hold a rebalance back.
#[derive(Default)]
pub(super) struct RetryWaits {
    cut_short: AtomicBool,
    notify: Notify,
}

impl RetryWaits {
    /// Waits `wait`: true, or false at once when the waits are cut short.
    pub(super) async fn wait(&self, wait: Duration) -> bool {
        let cut = self.notify.notified();
        tokio::pin!(cut);
        cut.as_mut().enable();
        if self.cut_short.load(AtomicOrdering::Acquire) {
            return false;
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => true,
            () = cut => false,
        }
    }

    /// Cuts the waits short while `cut` is set (waking those under way), lets them run again
    /// once it is not.
    #[inline]
    pub(super) fn cut_short(&self, cut: bool) {
        if self.cut_short.swap(cut, AtomicOrdering::AcqRel) != cut && cut {
            self.notify.notify_waiters();
        }
    }
}
