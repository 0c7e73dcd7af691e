//! The batch loop with `max_in_flight` above 1: each batch holds the messages of one
//! partition, cut as the sequential loop cuts them (`take` messages, or what came within
//! `within` of the first), and up to `max_in_flight` batches of different partitions run at
//! once. A partition's batches run one after the other, in offset order, so storing a
//! batch's last offset once it is done keeps offsets exact.
//!
//! - A partition whose next batch is full before it can start (its running one goes on, or
//!   every slot is taken) is held back (its buffered messages are set aside), so memory stays
//!   bounded and a slow partition never takes the room of others.
//! - Rebalances are served once no batch runs: while one waits, no batch starts; the running
//!   ones finish and are stored, then the commit on revoke includes them. What was cut of a
//!   revoked partition is dropped: its next owner reads it again from that commit.
//! - At shutdown the batches being cut go to the handler (their messages are fetched), as in
//!   the sequential loop.
//! - A batch goes through the same try as in the sequential loop (`batch_failure`). Without
//!   a failure policy, the first failure stops the worker once the running batches are
//!   done, the failed batch uncommitted (but what came before a message the handler named).
//!   Under one, a batch's tries and the waits between
//!   them run in its slot (see `batch_failure`), so only its partition waits: its next batch
//!   is cut meanwhile and held back once full. A rebalance or the shutdown cuts the waits
//!   short; the batch then waits in its partition's place to be tried again first (dropped
//!   if the partition is taken away, left uncommitted at shutdown).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt as _};
use tokio::time::Instant;

use super::batch_failure::{highest_per_partition, split_done, AfterTry, BatchTry, Entry};
use super::failure::RetryWaits;
use crate::consume::offsets::Receipt;
use crate::consume::TopicStream;
use crate::ops::observe::Observer;
use crate::worker::context::WorkerContext;
use crate::worker::error::WorkerError;
use crate::worker::handler::BatchHandler;

/// One partition's batch being cut, and whether one of its batches runs.
struct Cutting {
    /// A message of the partition, to name it by.
    partition: Receipt,
    entries: Vec<Entry>,
    /// When the batch is due, from its first message.
    due: Option<Instant>,
    running: bool,
    /// Held back: its batch is full while the one before runs.
    held: bool,
    /// A batch whose wait for its next try was cut short: it runs before `messages`.
    retry: Option<Retry>,
}

impl Cutting {
    /// Whether a batch of it may start: the retry, or a batch cut that is due (all of them
    /// once the stream ended; not the retry then, nor anything behind it).
    fn may_start(&self, take: usize, ended: bool, now: Instant) -> bool {
        if self.running {
            return false;
        }
        match self.retry {
            Some(_) => !ended,
            None => {
                !self.entries.is_empty() && (ended || self.entries.len() >= take || self.due.is_some_and(|d| d <= now))
            }
        }
    }
}

/// A failed batch to be tried again.
struct Retry {
    entries: Vec<Entry>,
    /// Tries made so far.
    tries: u32,
    /// Messages of the batch done already (those the failed one was not).
    done: Vec<Receipt>,
}

/// How a batch's run ended.
enum Ended {
    /// Done: its last offset may be stored.
    Done(Receipt),
    /// The worker stops: why, naming the messages, and the offset up to which it is done.
    Failed { why: String, done: Option<Receipt> },
    /// Its wait for its next try was cut short.
    CutShort(Retry),
}

/// A batch handed to the handler: its partition's place, and how it ended.
type Finished = (usize, Ended);

pub(crate) async fn run<H: BatchHandler<Args>, Args>(
    handler: &H,
    stream: &mut TopicStream,
    ctx: &WorkerContext,
    take: usize,
    within: Duration,
    max_in_flight: usize,
) -> Result<(), WorkerError> {
    let observer = Observer::new(Arc::clone(stream.state()));
    stream.report_every_revoke();
    let under_policy = ctx.worker().failure.is_active();
    let waits = RetryWaits::default();
    // Retry waits are cut short when a rebalance or the shutdown comes, even while the loop
    // reads nothing.
    let mut interruptions = under_policy.then(|| stream.interruptions());
    let mut cutting: Vec<Cutting> = Vec::new();
    let mut running: FuturesUnordered<Pin<Box<dyn Future<Output = Finished> + Send + '_>>> = FuturesUnordered::new();
    let mut failure: Option<String> = None;
    let mut ended = false;
    loop {
        forget_revoked(stream, &mut cutting);
        let events = stream.events_pending();
        let going = !ended && failure.is_none();
        if under_policy {
            waits.cut_short(events || !going);
        }
        // Batches due (full, or their time came; all of them once the stream ended) start
        // while there is room and no rebalance waits.
        if !events && failure.is_none() {
            let now = Instant::now();
            let mut ready: VecDeque<usize> =
                (0..cutting.len()).filter(|&i| cutting[i].may_start(take, ended, now)).collect();
            while running.len() < max_in_flight {
                let Some(index) = ready.pop_front() else { break };
                let batch = &mut cutting[index];
                batch.running = true;
                let retry = batch.retry.take().unwrap_or_else(|| {
                    batch.due = None;
                    if std::mem::take(&mut batch.held) {
                        stream.release(&batch.partition);
                    }
                    Retry { entries: std::mem::take(&mut batch.entries), tries: 0, done: Vec::new() }
                });
                let topic = stream.topic(&batch.partition).to_owned();
                running.push(Box::pin(run_batch(handler, ctx, &observer, &waits, topic, index, retry)));
            }
        }
        let startable_at_end = |c: &Cutting| c.retry.is_none() && !c.entries.is_empty();
        if running.is_empty() && (failure.is_some() || (ended && !cutting.iter().any(startable_at_end))) {
            break;
        }
        if running.is_empty() && events {
            stream.serve_events().await;
            continue;
        }
        stream.defer_events(!running.is_empty());
        let reading = going && !events;
        let next_due = cutting.iter().filter(|c| !c.running).filter_map(|c| c.due).min();
        tokio::select! {
            biased;
            Some((index, ended)) = running.next(), if !running.is_empty() => {
                let batch = &mut cutting[index];
                batch.running = false;
                match ended {
                    Ended::Done(last) => stream.store(&last),
                    Ended::Failed { why, done } => {
                        if let Some(done) = done {
                            stream.store(&done);
                        }
                        failure.get_or_insert(why);
                    }
                    Ended::CutShort(retry) => batch.retry = Some(retry),
                }
            }
            () = std::future::poll_fn(|cx| interruptions.as_mut().expect("guarded").poll(cx)),
                if interruptions.is_some() && !events && !ended => {
                // Shutdown: read nothing more, as when the stream ends.
                ended = !stream.events_pending();
            }
            // Only while a batch could start: a due batch waiting for room must not wake the
            // loop again and again.
            () = sleep_until(next_due), if next_due.is_some() && !events && failure.is_none()
                && running.len() < max_in_flight => {}
            next = stream.next(), if reading => {
                let Some(message) = next else {
                    ended = true;
                    continue;
                };
                // This loop stores offsets itself, once each batch is done.
                let Some(receipt) = stream.defer() else { continue };
                let index = match cutting.iter().position(|c| c.partition.same_partition(&receipt)) {
                    Some(index) => index,
                    None => {
                        cutting.push(Cutting {
                            partition: receipt,
                            entries: Vec::new(),
                            due: None,
                            running: false,
                            held: false,
                            retry: None,
                        });
                        cutting.len() - 1
                    }
                };
                let batch = &mut cutting[index];
                if batch.entries.is_empty() {
                    batch.due = Some(Instant::now() + within);
                }
                batch.entries.push(Entry { message, receipt });
                if batch.entries.len() >= take && !batch.held {
                    // Full: the rest of the partition waits until this batch starts.
                    batch.held = true;
                    stream.hold(&receipt);
                }
            }
        }
    }
    match failure {
        Some(failure) => Err(WorkerError::msg(failure)),
        None => Ok(()),
    }
}

/// One partition's batch: tried until it is done, or the failure policy (none: the first
/// failure) stops the worker, or its wait for the next try is cut short.
async fn run_batch<H: BatchHandler<Args>, Args>(
    handler: &H,
    ctx: &WorkerContext,
    observer: &Observer,
    waits: &RetryWaits,
    topic: String,
    index: usize,
    retry: Retry,
) -> Finished {
    let Retry { mut entries, mut tries, mut done } = retry;
    let batch = BatchTry { handler, ctx, observer, topics: topic.as_str() };
    loop {
        done.extend(entries.iter().map(|entry| entry.receipt));
        let after = batch.run(entries, tries).await;
        tries += 1;
        match after {
            AfterTry::Done => {
                let last = highest_per_partition(&done)[0];
                return (index, Ended::Done(last));
            }
            AfterTry::Stop { why, not_done } => {
                let (now, _) = split_done(done, &not_done);
                return (index, Ended::Failed { why, done: highest_per_partition(&now).first().copied() });
            }
            AfterTry::Again { wait, entries: again } => {
                done.retain(|r| !again.iter().any(|entry| entry.receipt == *r));
                if !waits.wait(wait).await {
                    return (index, Ended::CutShort(Retry { entries: again, tries, done }));
                }
                entries = again;
            }
        }
    }
}

/// Drops what was cut of partitions taken away; none of them runs (rebalances are served
/// only when nothing runs).
fn forget_revoked(stream: &mut TopicStream, cutting: &mut [Cutting]) {
    if !stream.has_revoked_held() {
        return;
    }
    let revoked = stream.take_revoked_held();
    for batch in cutting.iter_mut() {
        if revoked.iter().any(|(t, p)| batch.partition.partition == *p && stream.topic(&batch.partition) == t) {
            // Kept in place: running batches name theirs by position.
            batch.entries.clear();
            batch.due = None;
            batch.held = false;
            batch.retry = None;
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}
