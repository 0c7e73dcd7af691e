//! [`TopicStream`]: the public face of a consumer: the next message, and its offset stored
//! once the worker moves on.

use std::sync::Arc;
use std::task::Poll;

use super::ack::{Ack, Acks};
use super::client::SharedConsumer;
use super::completed::{self, CompletedOffsets};
use super::fetch::Fetcher;
use super::message::{Message, NativeMessage};
use super::offsets::{OffsetStore, Position, Receipt, ToStore};
use super::rebalance_events::{RebalanceEvents, StreamEvent};
use crate::app::shutdown::Shutdown;
use crate::worker::state::WorkerState;

/// The stream a worker reads its messages from.
///
/// # Offsets
///
/// At-least-once, with one rule: **a message counts as done when the worker asks for the next
/// one** ([`next`](Self::next)) **or calls [`ack`](Self::ack)**, unless the worker took it
/// over with [`ack_later`](Self::ack_later). Its offset is then stored, and committed in the
/// background, when partitions are revoked and at shutdown. A message the worker was still
/// holding when it failed or the process died is delivered again.
///
/// A worker that hands messages to spawned tasks calls [`ack_later`](Self::ack_later) for
/// each, moves the [`Ack`] into the task, and calls [`Ack::done`] there once the work is done.
/// An offset is stored only once it and every earlier message of its partition are done,
/// whatever order the tasks finish in. The worker bounds how many tasks run (a semaphore);
/// on revoke, kept messages not done yet are not waited for: their partition's new owner
/// gets them again.
///
/// ```no_run
/// # use kafka_runtime::{TopicStream, WorkerError};
/// # async fn index(_: kafka_runtime::Message) {}
/// async fn worker(mut topic: TopicStream) -> Result<(), WorkerError> {
///     let room = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
///     while let Some(msg) = topic.next().await {
///         let ack = topic.ack_later().expect("a message was just handed out");
///         let permit = room.clone().acquire_owned().await.expect("never closed");
///         tokio::spawn(async move {
///             index(msg).await;
///             ack.done();
///             drop(permit);
///         });
///     }
///     Ok(())
/// }
/// ```
///
/// [`next`](Self::next) returns `None` once the process is shutting down: finish the current
/// message, then return from the worker.
pub struct TopicStream {
    // Field order: the store's topic handles go before the fetcher's queues.
    offsets: OffsetStore,
    /// The last message handed out, not yet marked done.
    handed_out: Option<Receipt>,
    /// Messages the worker took over with `ack_later`, once it has.
    acks: Option<Box<Acks>>,
    /// When the metadata of messages done above one not done is committed next, while some
    /// is not.
    completed_due: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    /// A stream worker's: `next` skips the messages done before (see `completed`).
    skips_completed: bool,
    /// Offsets done above the committed ones before the partitions came to this consumer.
    completed: Arc<CompletedOffsets>,
    /// Rebalances for [`next_event`](Self::next_event), once the worker asked for one.
    events: Option<Arc<RebalanceEvents>>,
    /// A message fetched while an event came in: handed out after it.
    stashed: Option<NativeMessage>,
    fetcher: Fetcher,
}

impl TopicStream {
    pub(crate) fn new(consumer: SharedConsumer, shutdown: Shutdown, state: Arc<WorkerState>) -> Result<Self, String> {
        Ok(Self {
            offsets: OffsetStore::new(consumer.clone()),
            handed_out: None,
            acks: None,
            completed_due: None,
            skips_completed: false,
            completed: Arc::clone(&rdkafka::consumer::Consumer::context(&*consumer).completed),
            events: None,
            stashed: None,
            fetcher: Fetcher::new(consumer, shutdown, state)?,
        })
    }

    /// Stores the offset of the previous message (see [Offsets](#offsets)), then waits for
    /// the next one. `None` means the process is shutting down, or the consumer hit an error
    /// it cannot recover from.
    pub async fn next(&mut self) -> Option<Message> {
        loop {
            self.ack();
            if self.events.is_some() {
                return self.next_after_events().await;
            }
            let raw = std::future::poll_fn(|cx| {
                if self.acks.is_some() {
                    self.settle_acks(Some(cx));
                }
                let offsets = &mut self.offsets;
                self.fetcher.poll_next(cx, |label| flush(offsets, label))
            })
            .await?;
            if let Some(message) = self.hand_out_unless_done(raw) {
                return Some(message);
            }
        }
    }

    /// [`next`](Self::next) for a worker that took events before: they are dropped.
    async fn next_after_events(&mut self) -> Option<Message> {
        loop {
            match self.next_event().await? {
                StreamEvent::Message(message) => return Some(message),
                StreamEvent::Assigned(_) | StreamEvent::Revoking(_) => {}
            }
        }
    }

    /// Like [`next`](Self::next), and also tells the worker of rebalances: partitions
    /// assigned, and partitions about to be revoked. A revoke waits, before its commit, until
    /// the worker asks for its next event (at most the drain timeout), so that a worker that
    /// buffers work can finish it, and have it committed, before another member takes the
    /// partitions over; as the original's `flush()` on revoke.
    ///
    /// ```no_run
    /// # use kafka_runtime::{Ack, Message, StreamEvent, TopicStream, WorkerError};
    /// # async fn write_all(_: &[Message]) {}
    /// async fn buffered(mut topic: TopicStream) -> Result<(), WorkerError> {
    ///     let mut buffer: Vec<(Message, Ack)> = Vec::new();
    ///     while let Some(event) = topic.next_event().await {
    ///         match event {
    ///             StreamEvent::Message(msg) => {
    ///                 let ack = topic.ack_later().expect("just handed out");
    ///                 buffer.push((msg, ack));
    ///                 if buffer.len() < 500 {
    ///                     continue;
    ///                 }
    ///             }
    ///             StreamEvent::Revoking(_) => {} // flush now: committed before the handover
    ///             _ => continue,
    ///         }
    ///         let (messages, acks): (Vec<_>, Vec<_>) = std::mem::take(&mut buffer).into_iter().unzip();
    ///         write_all(&messages).await;
    ///         acks.into_iter().for_each(Ack::done);
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub async fn next_event(&mut self) -> Option<StreamEvent> {
        loop {
            self.ack();
            let events = match &self.events {
                Some(events) => Arc::clone(events),
                None => {
                    let events =
                        Arc::clone(&rdkafka::consumer::Consumer::context(&**self.fetcher.consumer()).rebalance_events);
                    events.want();
                    self.events = Some(Arc::clone(&events));
                    events
                }
            };
            // A revoke told before waits for this: what was done is stored by now.
            self.flush_stores();
            events.worker_came_back();
            let event = std::future::poll_fn(|cx| {
                if self.acks.is_some() {
                    self.settle_acks(Some(cx));
                }
                // The rebalance callbacks wake this task when they queue an event.
                rdkafka::consumer::Consumer::context(&**self.fetcher.consumer()).waker.register(cx.waker());
                if let Some(event) = events.take() {
                    return Poll::Ready(Some(Ok(event)));
                }
                if let Some(raw) = self.stashed.take() {
                    return Poll::Ready(Some(Err(raw)));
                }
                let offsets = &mut self.offsets;
                match self.fetcher.poll_next(cx, |label| flush(offsets, label)) {
                    Poll::Ready(Some(raw)) => match events.take() {
                        // The assignment that brought it is told first.
                        Some(event) => {
                            self.stashed = Some(raw);
                            Poll::Ready(Some(Ok(event)))
                        }
                        None => Poll::Ready(Some(Err(raw))),
                    },
                    Poll::Ready(None) => Poll::Ready(None),
                    Poll::Pending => events.take().map_or(Poll::Pending, |event| Poll::Ready(Some(Ok(event)))),
                }
            })
            .await?;
            match event {
                Ok(event) => return Some(event),
                Err(raw) => {
                    if let Some(message) = self.hand_out_unless_done(raw) {
                        return Some(StreamEvent::Message(message));
                    }
                }
            }
        }
    }

    /// The message `raw`, tracked as the one handed out last.
    fn hand_out(&mut self, raw: NativeMessage) -> Message {
        self.handed_out = Some(self.offsets.receipt(raw.fields()));
        Message::new(raw, self.fetcher.consumer().clone())
    }

    /// [`hand_out`](Self::hand_out), unless a stream worker's message was done before its
    /// partition came to this consumer (the commit's metadata says so): then `None`, and the
    /// next call stores it as done.
    #[inline]
    fn hand_out_unless_done(&mut self, raw: NativeMessage) -> Option<Message> {
        let message = self.hand_out(raw);
        (!(self.skips_completed && self.last_was_done())).then_some(message)
    }

    /// Takes the last message handed out off the stream's hands: `next()` will not mark it
    /// done; the caller does, with [`store`](Self::store), once it is.
    pub(crate) fn defer(&mut self) -> Option<Receipt> {
        self.handed_out.take()
    }

    /// Marks a deferred message as done. Only correct once every earlier message of its
    /// partition is done too: the caller pauses the partition while one waits.
    pub(crate) fn store(&mut self, receipt: &Receipt) {
        self.flush_stores();
        store_offset(&self.offsets, self.fetcher.label(), receipt);
    }

    /// Stores the offsets kept by [`ack`](Self::ack) to store later.
    #[inline]
    fn flush_stores(&mut self) {
        if self.offsets.has_later() {
            flush(&mut self.offsets, self.fetcher.label());
        }
    }

    /// Stores `next` as the offset to commit for the receipt's partition, with the done
    /// offsets above it in `metadata` (see `completed`).
    pub(crate) fn store_with_metadata(&mut self, receipt: &Receipt, next: i64, metadata: &str) {
        self.flush_stores();
        if let Err(err) = self.offsets.store_with_metadata(receipt, next, metadata) {
            tracing::warn!(
                worker = self.fetcher.label(),
                "offset not stored for {}: {err}; the messages after the last commit will be delivered again",
                self.offsets.position(&receipt.at_offset(next))
            );
        }
    }

    /// Commits, without waiting, the offsets with the metadata of messages done above them
    /// (`ToStore::WithCompleted`; librdkafka sends the commit from its own threads).
    pub(crate) fn commit_completed(&mut self, completed: Vec<ToStore>) {
        // A stored offset left behind would be committed after these, without their metadata.
        self.flush_stores();
        let mut list = rdkafka::TopicPartitionList::new();
        for to_commit in completed {
            if let ToStore::WithCompleted { receipt, next, metadata } = to_commit {
                let mut element = list.add_partition(self.offsets.topic(&receipt), receipt.partition);
                if element.set_offset(rdkafka::Offset::Offset(next)).is_ok() {
                    element.set_metadata(metadata);
                }
            }
        }
        if list.count() == 0 {
            return;
        }
        let consumer = &**self.fetcher.consumer();
        if let Err(err) = rdkafka::consumer::Consumer::commit(consumer, &list, rdkafka::consumer::CommitMode::Async) {
            tracing::debug!(worker = self.fetcher.label(), "could not commit the completed offsets: {err}");
        }
    }

    /// From now on, the done offsets above the committed ones are read at each assignment,
    /// for [`was_done`](Self::was_done). Call it before the first [`next`](Self::next).
    pub(crate) fn keep_completed_offsets(&self) {
        self.completed.enable();
    }

    /// For a stream worker: [`keep_completed_offsets`](Self::keep_completed_offsets), and
    /// `next` does not hand out the messages done before (it stores them), so that what an
    /// [`Ack`] finished above one not done is not handled again after a restart or a
    /// rebalance.
    pub(crate) fn skip_completed_offsets(&mut self) {
        self.keep_completed_offsets();
        self.skips_completed = true;
    }

    /// True when the message of `receipt` was done before its partition came to this
    /// consumer: the caller marks it done without handling it.
    #[inline]
    pub(crate) fn was_done(&self, receipt: &Receipt) -> bool {
        self.completed.any() && self.completed.was_done(self.offsets.topic(receipt), receipt.partition, receipt.offset)
    }

    /// [`was_done`](Self::was_done) for the message handed out last.
    #[inline]
    pub(crate) fn last_was_done(&self) -> bool {
        self.handed_out.is_some_and(|receipt| self.was_done(&receipt))
    }

    /// Hands out nothing more of the receipt's partition until [`resume`](Self::resume).
    pub(crate) fn pause(&mut self, receipt: &Receipt) {
        let topic = self.offsets.topic(receipt).to_owned();
        self.fetcher.pause(&topic, receipt.partition);
    }

    pub(crate) fn resume(&mut self, receipt: &Receipt) {
        let topic = self.offsets.topic(receipt).to_owned();
        self.fetcher.resume(&topic, receipt.partition);
    }

    /// Hands out nothing more of the receipt's partition until [`release`](Self::release),
    /// without stopping librdkafka's prefetch.
    pub(crate) fn hold(&mut self, receipt: &Receipt) {
        let topic = self.offsets.topic(receipt).to_owned();
        self.fetcher.hold(&topic, receipt.partition);
    }

    pub(crate) fn release(&mut self, receipt: &Receipt) {
        let topic = self.offsets.topic(receipt).to_owned();
        self.fetcher.release(&topic, receipt.partition);
    }

    /// Partitions taken away since the last call whose messages the worker may hold, as
    /// `(topic, partition)`: the paused ones, or all after
    /// [`report_every_revoke`](Self::report_every_revoke).
    pub(crate) fn take_revoked_held(&mut self) -> Vec<(String, i32)> {
        self.fetcher.take_revoked_held()
    }

    #[inline]
    pub(crate) fn has_revoked_held(&self) -> bool {
        self.fetcher.has_revoked_held()
    }

    pub(crate) fn report_every_revoke(&mut self) {
        self.fetcher.report_every_revoke();
    }

    /// True while rebalances or errors wait to be served by the next [`next`](Self::next):
    /// a worker with messages in flight finishes them first, so that they are committed
    /// before their partitions are given up.
    #[inline]
    pub(crate) fn events_pending(&self) -> bool {
        self.fetcher.events_pending()
    }

    /// The worker's state, shared with the HTTP endpoints.
    pub(crate) fn state(&self) -> &Arc<WorkerState> {
        self.fetcher.state()
    }

    /// What ends the wait of a worker that reads no more while its messages run.
    pub(crate) fn interruptions(&self) -> super::fetch::Interruptions {
        self.fetcher.interruptions()
    }

    /// Serves the waiting rebalances and errors now, without waiting for a message.
    pub(crate) async fn serve_events(&mut self) {
        self.flush_stores();
        std::future::poll_fn(|cx| self.fetcher.poll_serve_events(cx)).await;
    }

    /// While set, `next` never serves the events (rebalances, errors): it hands out messages,
    /// or waits. A worker with messages in flight sets it, and clears it once they are done,
    /// so that a rebalance is served, and committed, only after them.
    #[inline]
    pub(crate) fn defer_events(&mut self, defer: bool) {
        self.fetcher.defer_events(defer);
    }

    /// The topic of a handed-out message.
    pub(crate) fn topic(&self, receipt: &Receipt) -> &str {
        self.offsets.topic(receipt)
    }

    pub(crate) fn position(&self, receipt: &Receipt) -> Position {
        self.offsets.position(receipt)
    }

    /// Marks the last message returned by [`next`](Self::next) as done now, instead of when
    /// the next one is asked for. Call it before returning from a worker that stops on its
    /// own, or its last message is delivered again.
    pub fn ack(&mut self) {
        if let Some(receipt) = self.handed_out.take() {
            match &mut self.acks {
                None => {
                    // Stored with the others of its batch (see `Fetcher::poll_next`), or once
                    // the first of them waited a tick.
                    self.offsets.store_later(&receipt);
                    if self.offsets.later_is_due() {
                        flush(&mut self.offsets, self.fetcher.label());
                    }
                }
                Some(acks) => {
                    if let Some(done) = acks.done_in_place(receipt) {
                        self.store_done(done);
                    }
                }
            }
        }
        if self.acks.is_some() {
            self.settle_acks(None);
        }
    }

    /// Stores what done messages allow.
    fn store_done(&mut self, done: ToStore) {
        match done {
            ToStore::Offset(receipt) => self.store(&receipt),
            ToStore::WithCompleted { receipt, next, metadata } => self.store_with_metadata(&receipt, next, &metadata),
        }
    }

    /// Takes the last message returned by [`next`](Self::next) over: `next()` no longer marks
    /// it done; the returned [`Ack`] does, from any task. `None` when no message is waiting
    /// to be marked done (it was acknowledged, or taken over, already).
    pub fn ack_later(&mut self) -> Option<Ack> {
        let receipt = self.handed_out.take()?;
        let acks = self.acks.get_or_insert_with(|| {
            // Kept messages of partitions taken away must be forgotten: their acks no longer count.
            self.fetcher.report_every_revoke();
            Box::default()
        });
        Some(acks.keep(receipt))
    }

    /// Stores what the [`Ack`]s done since the last call allow, after forgetting the kept
    /// messages of revoked partitions; with `cx`, wakes its task when more acks are done, and
    /// when the messages done above one not done are due to be committed.
    fn settle_acks(&mut self, cx: Option<&std::task::Context<'_>>) {
        let Some(acks) = self.acks.as_mut() else { return };
        if self.fetcher.has_revoked_held() {
            let revoked = self.fetcher.take_revoked_held();
            let offsets = &self.offsets;
            acks.forget(|(topic, partition)| {
                revoked.iter().any(|(name, p)| p == partition && offsets.topic_at(*topic) == name)
            });
        }
        let mut done = Vec::new();
        acks.take_done(cx, |to_store| done.push(to_store));
        for to_store in done {
            self.store_done(to_store);
        }
        self.commit_completed_when_due(cx);
    }

    /// Commits, once per `auto.commit.interval.ms` (at least once a second), the metadata of
    /// partitions whose done messages above one not done changed while their offset did not
    /// (see `completed`): a restart then skips them even while that message runs on.
    fn commit_completed_when_due(&mut self, cx: Option<&std::task::Context<'_>>) {
        let Some(acks) = self.acks.as_mut() else { return };
        if !acks.has_completed_unsaved() {
            return;
        }
        let every = completed::commit_interval(self.fetcher.state().commit_interval());
        let due = self.completed_due.get_or_insert_with(|| Box::pin(tokio::time::sleep(every)));
        let elapsed = match cx {
            Some(cx) => {
                std::future::Future::poll(due.as_mut(), &mut std::task::Context::from_waker(cx.waker())).is_ready()
            }
            None => due.deadline() <= tokio::time::Instant::now(),
        };
        if !elapsed {
            return;
        }
        self.completed_due = None;
        let to_commit = acks.take_completed();
        self.commit_completed(to_commit);
    }

    /// True once shutdown has begun; `next` then returns `None`.
    pub fn is_shutting_down(&self) -> bool {
        self.fetcher.is_shutting_down()
    }

    /// The message handed out last and not yet marked done.
    pub(crate) fn handed_out(&self) -> Option<Position> {
        self.handed_out.as_ref().map(|receipt| self.offsets.position(receipt))
    }
}

/// Stores what `offsets` kept to store later, for the worker named `label`.
fn flush(offsets: &mut OffsetStore, label: &str) {
    offsets.flush(|position, code| {
        tracing::warn!(
            worker = label,
            "offset not stored for {position}: {code}; the messages after the last commit will be delivered again"
        );
    });
}

/// Marks a message done in `offsets`, for the worker named `label`.
fn store_offset(offsets: &OffsetStore, label: &str, receipt: &Receipt) {
    if let Err(code) = offsets.store(receipt) {
        // The partition was revoked while the message was handled: its new owner reads it
        // again, which at-least-once allows.
        tracing::warn!(
            worker = label,
            "offset not stored for {}: {code}; the message will be delivered again",
            offsets.position(receipt)
        );
    }
}

impl Drop for TopicStream {
    fn drop(&mut self) {
        // Acks done while the worker finished, and what is kept to store later: stored before
        // the consumer closes and commits.
        self.settle_acks(None);
        self.flush_stores();
        // The revokes of the close do not wait for a worker that is gone.
        if let Some(events) = &self.events {
            events.stop();
        }
        // A worker that fails with a message in hand: its error is reported with where it was.
        if let Some(receipt) = &self.handed_out {
            self.fetcher.state().set_last_handed_out(self.offsets.position(receipt).to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rdkafka::consumer::Consumer as _;

    use super::*;
    use crate::consume::client::WorkerConsumerContext;
    use crate::consume::partitions::PartitionQueues;
    use crate::test_support::{brokers, consumer_config, topic_with_messages, unique, within_a_minute};

    /// The commit on revoke waits for the broker: the rebalance callbacks must run on a
    /// blocking thread, never on the one thread of this runtime.
    #[tokio::test(flavor = "current_thread")]
    async fn rebalance_callbacks_never_run_on_an_async_thread() {
        let topic = topic_with_messages("rebalance-thread", 3).await;
        let state = WorkerState::register("rebalance-thread", "rebalance-thread".into(), "g".into());
        let context = WorkerConsumerContext::new(Arc::clone(&state), brokers().into(), PartitionQueues::default());
        let consumer = SharedConsumer::subscribe(&consumer_config(&unique("g")), context, &[topic]).unwrap();
        let mut stream = TopicStream::new(consumer.clone(), Shutdown::new(), Arc::clone(&state)).unwrap();

        let first = within_a_minute(stream.next()).await.expect("a message after the assignment");
        assert_eq!(first.payload_str().unwrap(), "0");
        assert_eq!(state.status().assigned.len(), 1);
        // Leaving the subscription revokes the partition, served by the stream's next poll.
        consumer.unsubscribe();
        within_a_minute(async {
            while !state.status().assigned.is_empty() {
                let _ = tokio::time::timeout(Duration::from_millis(50), stream.next()).await;
            }
        })
        .await;

        let threads = consumer.context().rebalance_threads.lock().unwrap().clone();
        assert!(threads.len() >= 2, "an assignment and a revoke: {threads:?}");
        assert!(!threads.contains(&std::thread::current().id()), "a rebalance callback ran on the async thread");
        drop((first, stream));
        tokio::task::spawn_blocking(move || consumer.close()).await.unwrap();
    }
}
