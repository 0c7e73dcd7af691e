//! The batch loop: cuts batches of at most `take` messages, or what arrived within `within`
//! of a batch's first message, hands each to the handler, and stores the batch's offsets once
//! it returns `Ok`.
//!
//! A failed batch follows the failure policy as a unit: it waits for its next try with all
//! its partitions paused while the other partitions flow into the next batches, then goes to
//! the dead-letter topic message by message, or stops the worker. A handler that names the
//! message that failed ([`WorkerError::at`]) has the others stored, and only that one follows
//! the policy, alone. A message the handler's input cannot be built from (`Vec<Json<T>>` with
//! a payload that is not JSON) is such a named failure, found before the handler runs: once
//! it is dead-lettered, the rest of the batch goes to the handler.

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::time::{Instant, Sleep};

use super::failure::send_dead_letter;
use crate::config::policy::NextStep;
use crate::consume::offsets::Receipt;
use crate::consume::{Batch, Message, TopicStream};
use crate::error::panic_message;
use crate::ops::observe::Observer;
use crate::worker::context::WorkerContext;
use crate::worker::error::WorkerError;
use crate::worker::handler::{BatchHandler, FromBatch};

/// A message of a batch and where it sits.
struct Entry {
    message: Message,
    receipt: Receipt,
}

/// Messages waiting for their next try, their partitions paused.
struct Waiting {
    entries: Vec<Entry>,
    /// Tries made so far.
    tries: u32,
    due: Instant,
    /// Messages already done that may be stored only once these are: later messages of a
    /// failed message's partition, and dead-lettered ones.
    then_store: Vec<Receipt>,
}

/// How one call of the handler went.
enum Outcome {
    Done,
    /// The batch failed as a unit.
    Failed(WorkerError),
    /// The handler named the message that failed (`WorkerError::at`).
    FailedAt(usize, WorkerError),
    /// The handler's input could not be built from this message; the handler did not run.
    Undecodable(usize, WorkerError),
}

/// Runs `handler` on batches of `stream` until shutdown, or until a failure the policy says
/// stops the worker. The batch being cut at shutdown is handed to the handler (it is already
/// fetched); batches still waiting for a retry are not committed and come again after a
/// restart.
pub(crate) async fn run<H: BatchHandler<Args>, Args>(
    handler: Arc<H>,
    mut stream: TopicStream,
    ctx: WorkerContext,
) -> Result<(), WorkerError> {
    let Some(settings) = ctx.worker().batch.clone() else {
        return Err(WorkerError::msg("a batch worker was started without batch settings"));
    };
    let max_in_flight = ctx.worker().concurrency.max_in_flight.value;
    if max_in_flight > 1 {
        if !ctx.worker().failure.is_active() {
            let (take, within) = (settings.take.value, settings.within.value);
            return super::partition_batches::run(&*handler, &mut stream, &ctx, take, within, max_in_flight).await;
        }
        tracing::info!(
            worker = ctx.name(),
            "under a failure policy (retries or a dead-letter topic) batches run one at a time; max_in_flight \
             applies to batch workers without one"
        );
    }
    stream.report_every_revoke();
    let observer = Observer::new(Arc::clone(stream.state()));
    let mut batches = BatchLoop {
        handler,
        take: settings.take.value,
        within: settings.within.value,
        ctx,
        waiting: Vec::new(),
        observer,
    };
    loop {
        let (entries, ended) = batches.cut(&mut stream).await?;
        if !entries.is_empty() {
            batches.dispatch(&mut stream, entries, 0, Vec::new()).await?;
        }
        if ended {
            return Ok(());
        }
    }
}

struct BatchLoop<H> {
    handler: Arc<H>,
    take: usize,
    within: Duration,
    ctx: WorkerContext,
    waiting: Vec<Waiting>,
    observer: Observer,
}

impl<H> BatchLoop<H> {
    /// Collects the next batch: from its first message, until it holds `take` messages or
    /// `within` has passed. Retries that fall due meanwhile run first. Also returns whether
    /// the stream ended (shutdown).
    async fn cut<Args>(&mut self, stream: &mut TopicStream) -> Result<(Vec<Entry>, bool), WorkerError>
    where
        H: BatchHandler<Args>,
    {
        let mut entries: Vec<Entry> = Vec::new();
        let mut deadline: Option<Pin<Box<Sleep>>> = None;
        while entries.len() < self.take {
            self.forget_revoked(stream, &mut entries);
            let retry_due = self.waiting.iter().map(|w| w.due).min();
            let next = tokio::select! {
                biased;
                () = sleep_until(retry_due) => {
                    self.retry_due(stream).await?;
                    continue;
                }
                () = sleep_on(&mut deadline) => break,
                next = stream.next() => next,
            };
            let Some(message) = next else { return Ok((entries, true)) };
            // This loop stores offsets itself, once the batch is done.
            let Some(receipt) = stream.defer() else { continue };
            if entries.is_empty() {
                deadline = Some(Box::pin(tokio::time::sleep(self.within)));
            }
            entries.push(Entry { message, receipt });
        }
        self.forget_revoked(stream, &mut entries);
        Ok((entries, false))
    }

    /// Runs the first waiting batch whose time has come.
    async fn retry_due<Args>(&mut self, stream: &mut TopicStream) -> Result<(), WorkerError>
    where
        H: BatchHandler<Args>,
    {
        self.forget_revoked(stream, &mut Vec::new());
        let now = Instant::now();
        if let Some(index) = self.waiting.iter().position(|w| w.due <= now) {
            let retry = self.waiting.swap_remove(index);
            self.dispatch(stream, retry.entries, retry.tries, retry.then_store).await?;
        }
        Ok(())
    }

    /// Drops the messages of partitions taken away, from the batch being cut and from the
    /// waiting ones: whoever owns those partitions now reads them again from the last commit.
    fn forget_revoked(&mut self, stream: &mut TopicStream, entries: &mut Vec<Entry>) {
        let revoked = stream.take_revoked_held();
        if revoked.is_empty() {
            return;
        }
        let gone = |stream: &TopicStream, receipt: &Receipt| {
            revoked.iter().any(|(t, p)| receipt.partition == *p && stream.topic(receipt) == t)
        };
        entries.retain(|entry| !gone(stream, &entry.receipt));
        for waiting in &mut self.waiting {
            waiting.entries.retain(|entry| !gone(stream, &entry.receipt));
            waiting.then_store.retain(|receipt| !gone(stream, receipt));
        }
        self.waiting.retain(|waiting| !waiting.entries.is_empty());
    }

    /// One try of a batch, and what the policy says follows a failure. After a first failure
    /// (`tries_before` > 0) the batch's partitions are paused; they are resumed once it is
    /// done. `then_store` is stored with the batch.
    async fn dispatch<Args>(
        &mut self,
        stream: &mut TopicStream,
        mut entries: Vec<Entry>,
        tries_before: u32,
        mut then_store: Vec<Receipt>,
    ) -> Result<(), WorkerError>
    where
        H: BatchHandler<Args>,
    {
        let tries = tries_before + 1;
        let paused: Vec<Receipt> = if tries_before > 0 { partitions(&entries) } else { Vec::new() };
        loop {
            let receipts: Vec<Receipt> = entries.iter().map(|entry| entry.receipt).collect();
            let (outcome, kept) = self.attempt(entries).await;
            // The messages, kept for a retry or a dead-letter topic when the policy has either.
            entries = kept.into_iter().zip(&receipts).map(|(message, &receipt)| Entry { message, receipt }).collect();
            match outcome {
                Outcome::Done => {
                    then_store.extend(receipts);
                    self.finish(stream, &then_store, &paused, &[]);
                    return Ok(());
                }
                Outcome::Failed(failure) => {
                    return self.failed_as_a_unit(stream, entries, &receipts, failure, tries, then_store, &paused).await
                }
                Outcome::FailedAt(index, failure) if index < receipts.len() => {
                    return self.failed_at(stream, entries, &receipts, index, failure, tries, then_store, &paused).await
                }
                Outcome::FailedAt(index, failure) => {
                    let failure = WorkerError::msg(format_args!(
                        "{failure} (the handler named message {index} of a batch of {}, which has no such message; \
                         the whole batch counts as failed)",
                        receipts.len()
                    ));
                    return self
                        .failed_as_a_unit(stream, entries, &receipts, failure, tries, then_store, &paused)
                        .await;
                }
                Outcome::Undecodable(index, failure) => {
                    // The handler saw none of the messages: once this one is dead-lettered,
                    // the others go to the handler without it.
                    let step = self.step(stream, &failure, tries, &receipts[index]);
                    let (NextStep::DeadLetter(topic), Some(_)) = (&step, entries.get(index)) else {
                        return self
                            .failed_as_a_unit(stream, entries, &receipts, failure, tries, then_store, &paused)
                            .await;
                    };
                    let bad = entries.remove(index);
                    self.dead_letter(stream, &bad, topic, &failure, tries).await?;
                    then_store.push(bad.receipt);
                    if entries.is_empty() {
                        self.finish(stream, &then_store, &paused, &[]);
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Builds the handler's input from the batch and calls the handler. Returns how it went
    /// and, when the failure policy may need them again, the messages.
    async fn attempt<Args>(&self, entries: Vec<Entry>) -> (Outcome, Vec<Message>)
    where
        H: BatchHandler<Args>,
    {
        let keep = self.ctx.worker().failure.is_active();
        let watch = self.observer.batch(entries.iter().map(|entry| &entry.message));
        let mut kept = Vec::with_capacity(if keep { entries.len() } else { 0 });
        let messages = entries
            .into_iter()
            .map(|entry| {
                if !keep {
                    return entry.message;
                }
                let (for_handler, copy) = entry.message.share();
                kept.push(copy);
                for_handler
            })
            .collect();
        let input = match <H::Input as FromBatch>::from_batch(Batch::new(messages), &self.ctx) {
            Ok(input) => input,
            Err((_, index, err)) => return (Outcome::Undecodable(index, err), kept),
        };
        let outcome = match AssertUnwindSafe(self.handler.call(input, &self.ctx)).catch_unwind().await {
            Ok(Ok(())) => Outcome::Done,
            Ok(Err(err)) => match err.index() {
                Some(index) => Outcome::FailedAt(index, err),
                None => Outcome::Failed(err),
            },
            Err(panic) => {
                Outcome::Failed(WorkerError::msg(format_args!("the handler panicked: {}", panic_message(&*panic))))
            }
        };
        let failed = match &outcome {
            Outcome::Done => None,
            Outcome::FailedAt(index, _) => Some(Some(*index)),
            Outcome::Failed(_) | Outcome::Undecodable(..) => Some(None),
        };
        self.observer.batch_finished(watch, failed);
        (outcome, kept)
    }

    /// The whole batch failed: it waits for its next try, or goes to the dead-letter topic
    /// message by message, or stops the worker.
    #[allow(clippy::too_many_arguments)]
    async fn failed_as_a_unit(
        &mut self,
        stream: &mut TopicStream,
        entries: Vec<Entry>,
        receipts: &[Receipt],
        failure: WorkerError,
        tries: u32,
        then_store: Vec<Receipt>,
        paused: &[Receipt],
    ) -> Result<(), WorkerError> {
        let at = describe(stream, receipts);
        match self.step(stream, &failure, tries, &receipts[0]) {
            NextStep::Retry(wait) if entries.len() == receipts.len() => {
                tracing::warn!(
                    worker = self.ctx.name(),
                    "batch handler failed on {at} (try {tries} of {}): {failure}; trying the batch again in {} ms",
                    self.ctx.worker().failure.retries.value + 1,
                    wait.as_millis()
                );
                if paused.is_empty() {
                    for receipt in partitions(&entries) {
                        stream.pause(&receipt);
                    }
                }
                self.waiting.push(Waiting { entries, tries, due: Instant::now() + wait, then_store });
                Ok(())
            }
            NextStep::DeadLetter(_) if entries.len() == receipts.len() => {
                let prefix = self.ctx.worker().topic_prefix.value.clone();
                for entry in &entries {
                    let topic = self.ctx.worker().failure.dead_letter_for(entry.message.topic(), &prefix);
                    let topic = topic.unwrap_or_default();
                    self.dead_letter(stream, entry, &topic, &failure, tries).await?;
                }
                tracing::warn!(
                    worker = self.ctx.name(),
                    "batch handler failed on {at} after {tries} tries: {failure}; its {} messages were sent to the \
                     dead-letter topic",
                    entries.len()
                );
                let mut all = then_store;
                all.extend_from_slice(receipts);
                self.finish(stream, &all, paused, &[]);
                Ok(())
            }
            _ => Err(WorkerError::msg(format_args!(
                "batch handler failed on {at}: {failure}; the batch was not committed and will be delivered again"
            ))),
        }
    }

    /// The handler named the message that failed: the others are done, and that one waits
    /// for its next try alone, or goes to the dead-letter topic, or stops the worker.
    #[allow(clippy::too_many_arguments)]
    async fn failed_at(
        &mut self,
        stream: &mut TopicStream,
        mut entries: Vec<Entry>,
        receipts: &[Receipt],
        index: usize,
        failure: WorkerError,
        tries: u32,
        then_store: Vec<Receipt>,
        paused: &[Receipt],
    ) -> Result<(), WorkerError> {
        let failed = receipts[index];
        let at = format!("{} (message {index} of a batch of {})", stream.position(&failed), receipts.len());
        // Done now: everything but the failed message and what follows it in its partition.
        let after_failed = |r: &Receipt| r.same_partition(&failed) && r.offset >= failed.offset;
        let (later, now): (Vec<Receipt>, Vec<Receipt>) =
            receipts.iter().chain(&then_store).copied().partition(|r| after_failed(r));
        let later: Vec<Receipt> = later.into_iter().filter(|r| r.offset != failed.offset).collect();
        match self.step(stream, &failure, tries, &failed) {
            NextStep::Retry(wait) if entries.len() == receipts.len() => {
                tracing::warn!(
                    worker = self.ctx.name(),
                    "batch handler failed at {at} (try {tries} of {}): {failure}; the others are done; trying it \
                     again alone in {} ms",
                    self.ctx.worker().failure.retries.value + 1,
                    wait.as_millis()
                );
                let entry = entries.swap_remove(index);
                if paused.is_empty() {
                    stream.pause(&failed);
                }
                self.finish(stream, &now, paused, &[failed]);
                self.waiting.push(Waiting {
                    entries: vec![entry],
                    tries,
                    due: Instant::now() + wait,
                    then_store: later,
                });
                Ok(())
            }
            NextStep::DeadLetter(topic) if entries.len() == receipts.len() => {
                self.dead_letter(stream, &entries[index], &topic, &failure, tries).await?;
                tracing::warn!(
                    worker = self.ctx.name(),
                    "batch handler failed at {at} after {tries} tries: {failure}; the others are done; it was sent \
                     to the dead-letter topic `{topic}`"
                );
                let mut all = now;
                all.extend(later);
                all.push(failed);
                self.finish(stream, &all, paused, &[]);
                Ok(())
            }
            _ => {
                // The others before it are done; the worker stops with this one uncommitted.
                self.finish(stream, &now, &[], &[]);
                Err(WorkerError::msg(format_args!(
                    "batch handler failed at {at}: {failure}; that message (and the batch's later messages of \
                     its partition) was not committed and will be delivered again"
                )))
            }
        }
    }

    /// What the policy says follows a failed try of the message at `receipt`.
    fn step(&self, stream: &TopicStream, failure: &WorkerError, tries: u32, receipt: &Receipt) -> NextStep {
        let worker = self.ctx.worker();
        worker.failure.after_failure(failure, tries, stream.topic(receipt), &worker.topic_prefix.value)
    }

    /// Sends one message to the dead-letter topic and waits for the broker's acknowledgement.
    async fn dead_letter(
        &self,
        stream: &TopicStream,
        entry: &Entry,
        topic: &str,
        failure: &WorkerError,
        tries: u32,
    ) -> Result<(), WorkerError> {
        match send_dead_letter(&entry.message, topic, self.ctx.name(), failure, tries).await {
            Ok(_) => Ok(()),
            Err(err) => Err(WorkerError::msg(format_args!(
                "batch handler failed at {}: {failure}; sending the message to the dead-letter topic `{topic}` \
                 failed: {err}; it was not committed and will be delivered again",
                stream.position(&entry.receipt)
            ))),
        }
    }

    /// Stores `done` (the highest offset of each partition) and resumes the `paused`
    /// partitions but those of `still_waiting`.
    fn finish(&self, stream: &mut TopicStream, done: &[Receipt], paused: &[Receipt], still_waiting: &[Receipt]) {
        for highest in highest_per_partition(done) {
            stream.store(&highest);
        }
        for receipt in paused {
            if !still_waiting.iter().any(|w| w.same_partition(receipt)) {
                stream.resume(receipt);
            }
        }
    }
}

/// One receipt per partition of the entries.
fn partitions(entries: &[Entry]) -> Vec<Receipt> {
    partitions_of(entries.iter().map(|entry| &entry.receipt))
}

/// The highest offset of each partition: storing it marks every earlier one done too, and
/// storing a lower one after it would move the partition back.
fn highest_per_partition(receipts: &[Receipt]) -> Vec<Receipt> {
    let mut highest: Vec<Receipt> = Vec::new();
    for receipt in receipts {
        match highest.iter_mut().find(|h| h.same_partition(receipt)) {
            Some(h) if h.offset < receipt.offset => *h = *receipt,
            Some(_) => {}
            None => highest.push(*receipt),
        }
    }
    highest
}

/// "a batch of 3 messages (topic t, partition 0, offsets 5 to 6; topic t, partition 1, offset 9)".
fn describe(stream: &TopicStream, receipts: &[Receipt]) -> String {
    let mut parts = Vec::new();
    for first in partitions_of(receipts) {
        let of_partition = receipts.iter().filter(|r| r.same_partition(&first));
        let (low, high) = of_partition.fold((i64::MAX, i64::MIN), |(lo, hi), r| (lo.min(r.offset), hi.max(r.offset)));
        let offsets = if low == high { format!("offset {low}") } else { format!("offsets {low} to {high}") };
        parts.push(format!("topic {}, partition {}, {offsets}", stream.topic(&first), first.partition));
    }
    format!("a batch of {} messages ({})", receipts.len(), parts.join("; "))
}

/// One receipt per partition.
fn partitions_of<'a>(receipts: impl IntoIterator<Item = &'a Receipt>) -> Vec<Receipt> {
    let mut all: Vec<Receipt> = Vec::new();
    for receipt in receipts {
        if !all.iter().any(|r| r.same_partition(receipt)) {
            all.push(*receipt);
        }
    }
    all
}

/// Waits until `due`; never, without one.
async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// Waits for the batch's deadline; never, before its first message.
async fn sleep_on(deadline: &mut Option<Pin<Box<Sleep>>>) {
    match deadline {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}
