//! One try of a batch, and what the failure policy says follows it. Both batch loops use it:
//! `batch` (one batch at a time, a failed one waiting for its next try outside the loop with
//! its partitions paused) and `partition_batches` (batches of several partitions at once, a
//! failed one waiting in its slot).
//!
//! A failed batch follows the policy as a unit. A handler that names the message that failed
//! ([`WorkerError::at`]) has the others count as done, and only that one follows the policy,
//! alone. A message the handler's input cannot be built from (`Vec<Json<T>>` with a payload
//! that is not JSON) is such a named failure, found before the handler runs: once it is
//! dead-lettered, the rest of the batch goes to the handler.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt as _;

use super::failure::send_dead_letter;
use crate::config::policy::NextStep;
use crate::consume::offsets::{Position, Receipt};
use crate::consume::{Batch, Message, TopicStream};
use crate::error::panic_message;
use crate::ops::observe::Observer;
use crate::worker::context::WorkerContext;
use crate::worker::error::WorkerError;
use crate::worker::handler::{BatchHandler, FromBatch};

/// A message of a batch and where it sits.
pub(super) struct Entry {
    pub(super) message: Message,
    pub(super) receipt: Receipt,
}

/// What follows one try of a batch.
pub(super) enum AfterTry {
    /// Every message is done: handled, or sent to the dead-letter topic.
    Done,
    /// `entries` (the whole batch, or the one message the handler named) are to be tried
    /// again after `wait`; the others are done.
    Again { wait: Duration, entries: Vec<Entry> },
    /// The worker stops: why, naming the messages. `not_done` were not handled; the others
    /// were.
    Stop { why: String, not_done: Vec<Receipt> },
}

/// Names the topics of a batch's messages.
pub(super) trait Topics: Sync {
    fn topic(&self, receipt: &Receipt) -> &str;
}

impl Topics for TopicStream {
    fn topic(&self, receipt: &Receipt) -> &str {
        TopicStream::topic(self, receipt)
    }
}

/// The topic of a batch of one partition.
impl Topics for str {
    fn topic(&self, _: &Receipt) -> &str {
        self
    }
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

/// What a try of a batch needs.
pub(super) struct BatchTry<'a, H, T: ?Sized> {
    pub(super) handler: &'a H,
    pub(super) ctx: &'a WorkerContext,
    pub(super) observer: &'a Observer,
    pub(super) topics: &'a T,
}

impl<H, T: Topics + ?Sized> BatchTry<'_, H, T> {
    /// Hands `entries` to the handler (try number `tries_before + 1`) and does what the policy
    /// says follows a failure: logs a retry, sends messages to the dead-letter topic, or gives
    /// up.
    pub(super) async fn run<Args>(&self, mut entries: Vec<Entry>, tries_before: u32) -> AfterTry
    where
        H: BatchHandler<Args>,
    {
        let tries = tries_before + 1;
        loop {
            let receipts: Vec<Receipt> = entries.iter().map(|entry| entry.receipt).collect();
            let (outcome, kept) = self.attempt(entries).await;
            // The messages, kept for a retry or a dead-letter topic when the policy has either.
            entries = kept.into_iter().zip(&receipts).map(|(message, &receipt)| Entry { message, receipt }).collect();
            match outcome {
                Outcome::Done => return AfterTry::Done,
                Outcome::Failed(failure) => return self.failed_as_a_unit(entries, &receipts, failure, tries).await,
                Outcome::FailedAt(index, failure) if index < receipts.len() => {
                    return self.failed_at(entries, &receipts, index, failure, tries).await
                }
                Outcome::FailedAt(index, failure) => {
                    let failure = WorkerError::msg(format_args!(
                        "{failure} (the handler named message {index} of a batch of {}, which has no such message; \
                         the whole batch counts as failed)",
                        receipts.len()
                    ));
                    return self.failed_as_a_unit(entries, &receipts, failure, tries).await;
                }
                Outcome::Undecodable(index, failure) => {
                    // The handler saw none of the messages: once this one is dead-lettered,
                    // the others go to the handler without it.
                    let step = self.step(&failure, tries, &receipts[index]);
                    let (NextStep::DeadLetter(topic), Some(_)) = (&step, entries.get(index)) else {
                        return self.failed_as_a_unit(entries, &receipts, failure, tries).await;
                    };
                    let bad = entries.remove(index);
                    if let Err(why) = self.dead_letter(&bad, topic, &failure, tries).await {
                        return AfterTry::Stop { why, not_done: receipts };
                    }
                    if entries.is_empty() {
                        return AfterTry::Done;
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
        let input = match <H::Input as FromBatch>::from_batch(Batch::new(messages), self.ctx) {
            Ok(input) => input,
            Err((_, index, err)) => return (Outcome::Undecodable(index, err), kept),
        };
        let outcome = match AssertUnwindSafe(self.handler.call(input, self.ctx)).catch_unwind().await {
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

    /// The whole batch failed: it is to be tried again, or goes to the dead-letter topic
    /// message by message, or stops the worker.
    async fn failed_as_a_unit(
        &self,
        entries: Vec<Entry>,
        receipts: &[Receipt],
        failure: WorkerError,
        tries: u32,
    ) -> AfterTry {
        let at = describe(self.topics, receipts);
        match self.step(&failure, tries, &receipts[0]) {
            NextStep::Retry(wait) if entries.len() == receipts.len() => {
                tracing::warn!(
                    worker = self.ctx.name(),
                    "batch handler failed on {at} (try {tries} of {}): {failure}; trying the batch again in {} ms",
                    self.ctx.worker().failure.retries.value + 1,
                    wait.as_millis()
                );
                AfterTry::Again { wait, entries }
            }
            NextStep::DeadLetter(_) if entries.len() == receipts.len() => {
                let prefix = &self.ctx.worker().topic_prefix.value;
                for entry in &entries {
                    let topic = self.ctx.worker().failure.dead_letter_for(entry.message.topic(), prefix);
                    let topic = topic.unwrap_or_default();
                    if let Err(why) = self.dead_letter(entry, &topic, &failure, tries).await {
                        return AfterTry::Stop { why, not_done: receipts.to_vec() };
                    }
                }
                tracing::warn!(
                    worker = self.ctx.name(),
                    "batch handler failed on {at} after {tries} tries: {failure}; its {} messages were sent to the \
                     dead-letter topic",
                    entries.len()
                );
                AfterTry::Done
            }
            _ => AfterTry::Stop {
                why: format!(
                    "batch handler failed on {at}: {failure}; the batch was not committed and will be delivered again"
                ),
                not_done: receipts.to_vec(),
            },
        }
    }

    /// The handler named the message that failed: the others are done, and that one is to be
    /// tried again alone, or goes to the dead-letter topic, or stops the worker.
    async fn failed_at(
        &self,
        mut entries: Vec<Entry>,
        receipts: &[Receipt],
        index: usize,
        failure: WorkerError,
        tries: u32,
    ) -> AfterTry {
        let failed = receipts[index];
        let at = format!("{} (message {index} of a batch of {})", position(self.topics, &failed), receipts.len());
        match self.step(&failure, tries, &failed) {
            NextStep::Retry(wait) if entries.len() == receipts.len() => {
                tracing::warn!(
                    worker = self.ctx.name(),
                    "batch handler failed at {at} (try {tries} of {}): {failure}; the others are done; trying it \
                     again alone in {} ms",
                    self.ctx.worker().failure.retries.value + 1,
                    wait.as_millis()
                );
                AfterTry::Again { wait, entries: vec![entries.swap_remove(index)] }
            }
            NextStep::DeadLetter(topic) if entries.len() == receipts.len() => {
                if let Err(why) = self.dead_letter(&entries[index], &topic, &failure, tries).await {
                    return AfterTry::Stop { why, not_done: vec![failed] };
                }
                tracing::warn!(
                    worker = self.ctx.name(),
                    "batch handler failed at {at} after {tries} tries: {failure}; the others are done; it was sent \
                     to the dead-letter topic `{topic}`"
                );
                AfterTry::Done
            }
            _ => AfterTry::Stop {
                why: format!(
                    "batch handler failed at {at}: {failure}; that message (and the batch's later messages of its \
                     partition) was not committed and will be delivered again"
                ),
                not_done: vec![failed],
            },
        }
    }

    /// What the policy says follows a failed try of the message at `receipt`.
    fn step(&self, failure: &WorkerError, tries: u32, receipt: &Receipt) -> NextStep {
        let worker = self.ctx.worker();
        worker.failure.after_failure(failure, tries, self.topics.topic(receipt), &worker.topic_prefix.value)
    }

    /// Sends one message to the dead-letter topic and waits for the broker's acknowledgement;
    /// or says why it could not.
    async fn dead_letter(&self, entry: &Entry, topic: &str, failure: &WorkerError, tries: u32) -> Result<(), String> {
        match send_dead_letter(&entry.message, topic, self.ctx.name(), failure, tries).await {
            Ok(_) => Ok(()),
            Err(err) => Err(format!(
                "batch handler failed at {}: {failure}; sending the message to the dead-letter topic `{topic}` \
                 failed: {err}; it was not committed and will be delivered again",
                position(self.topics, &entry.receipt)
            )),
        }
    }
}

/// Splits what is done into what may be stored now and what only once `not_done` is:
/// messages of a partition above one of its messages not done.
pub(super) fn split_done(done: Vec<Receipt>, not_done: &[Receipt]) -> (Vec<Receipt>, Vec<Receipt>) {
    let mut done = done;
    done.retain(|r| !not_done.iter().any(|n| n.same_partition(r) && n.offset == r.offset));
    done.into_iter().partition(|r| !not_done.iter().any(|n| n.same_partition(r) && n.offset < r.offset))
}

/// The highest offset of each partition: storing it marks every earlier one done too, and
/// storing a lower one after it would move the partition back.
pub(super) fn highest_per_partition(receipts: &[Receipt]) -> Vec<Receipt> {
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

/// One receipt per partition.
pub(super) fn partitions_of<'a>(receipts: impl IntoIterator<Item = &'a Receipt>) -> Vec<Receipt> {
    let mut all: Vec<Receipt> = Vec::new();
    for receipt in receipts {
        if !all.iter().any(|r| r.same_partition(receipt)) {
            all.push(*receipt);
        }
    }
    all
}

fn position<T: Topics + ?Sized>(topics: &T, receipt: &Receipt) -> Position {
    Position { topic: topics.topic(receipt).to_owned(), partition: receipt.partition, offset: receipt.offset }
}

/// "a batch of 3 messages (topic t, partition 0, offsets 5 to 6; topic t, partition 1, offset 9)".
fn describe<T: Topics + ?Sized>(topics: &T, receipts: &[Receipt]) -> String {
    let mut parts = Vec::new();
    for first in partitions_of(receipts) {
        let of_partition = receipts.iter().filter(|r| r.same_partition(&first));
        let (low, high) = of_partition.fold((i64::MAX, i64::MIN), |(lo, hi), r| (lo.min(r.offset), hi.max(r.offset)));
        let offsets = if low == high { format!("offset {low}") } else { format!("offsets {low} to {high}") };
        parts.push(format!("topic {}, partition {}, {offsets}", topics.topic(&first), first.partition));
    }
    format!("a batch of {} messages ({})", receipts.len(), parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_done_above_a_message_not_done_waits_for_it() {
        let r = |partition, offset| Receipt::for_test(0, partition, offset);
        let done = vec![r(0, 1), r(0, 2), r(0, 3), r(0, 4), r(1, 7)];
        let (now, later) = split_done(done, &[r(0, 3)]);
        assert_eq!(now, vec![r(0, 1), r(0, 2), r(1, 7)]);
        assert_eq!(later, vec![r(0, 4)]);
        assert_eq!(highest_per_partition(&now), vec![r(0, 2), r(1, 7)]);
    }
}
