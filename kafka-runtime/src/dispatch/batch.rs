//! The batch loop: cuts batches of at most `take` messages, or what arrived within `within`
//! of a batch's first message, hands each to the handler, and stores the batch's offsets once
//! it returns `Ok`.
//!
//! A failed batch follows the failure policy (see `batch_failure`): a batch (or the one
//! message the handler named) waits for its next try with its partitions paused while the
//! other partitions flow into the next batches, then goes to the dead-letter topic, or stops
//! the worker. With `max_in_flight` above 1, `partition_batches` runs the batches instead.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::batch_failure::{highest_per_partition, partitions_of, split_done, AfterTry, BatchTry, Entry};
use crate::consume::offsets::Receipt;
use crate::consume::TopicStream;
use crate::ops::observe::Observer;
use crate::worker::context::WorkerContext;
use crate::worker::error::WorkerError;
use crate::worker::handler::BatchHandler;

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
        let (take, within) = (settings.take.value, settings.within.value);
        return super::partition_batches::run(&*handler, &mut stream, &ctx, take, within, max_in_flight).await;
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
        entries: Vec<Entry>,
        tries_before: u32,
        then_store: Vec<Receipt>,
    ) -> Result<(), WorkerError>
    where
        H: BatchHandler<Args>,
    {
        let paused: Vec<Receipt> = if tries_before > 0 { partitions(&entries) } else { Vec::new() };
        let mut done = then_store;
        done.extend(entries.iter().map(|entry| entry.receipt));
        let batch = BatchTry { handler: &*self.handler, ctx: &self.ctx, observer: &self.observer, topics: &*stream };
        match batch.run(entries, tries_before).await {
            AfterTry::Done => {
                self.finish(stream, &done, &paused, &[]);
                Ok(())
            }
            AfterTry::Again { wait, entries } => {
                let again: Vec<Receipt> = entries.iter().map(|entry| entry.receipt).collect();
                let (now, later) = split_done(done, &again);
                if paused.is_empty() {
                    for receipt in partitions(&entries) {
                        stream.pause(&receipt);
                    }
                }
                self.finish(stream, &now, &paused, &again);
                let due = Instant::now() + wait;
                self.waiting.push(Waiting { entries, tries: tries_before + 1, due, then_store: later });
                Ok(())
            }
            AfterTry::Stop { why, not_done } => {
                // What came before the failed messages is done; the worker stops with them
                // uncommitted.
                let (now, _) = split_done(done, &not_done);
                self.finish(stream, &now, &[], &[]);
                Err(WorkerError::msg(why))
            }
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
