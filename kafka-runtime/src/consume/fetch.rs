//! Fetching: takes a consumer's messages in batches from its partition queues and hands them
//! out one at a time, serves its shared queue (rebalances, errors) on a blocking thread first,
//! drops what it buffered of revoked partitions, and yields to tokio's scheduler regularly
//! (see `yield_pace`).

use std::collections::VecDeque;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use rdkafka::consumer::Consumer as _;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::Message as _;
use rdkafka::TopicPartitionList;
use rdkafka_sys as rdsys;
use tokio::task::JoinHandle;
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::client::SharedConsumer;
use super::message::NativeMessage;
use super::partitions::PartitionQueue;
use super::yield_pace::YieldPace;
use crate::app::shutdown::Shutdown;
use crate::ffi::QueueHandle;
use crate::worker::state::WorkerState;

/// How many messages one batch takes from the partition queues at most. Shared-queue events
/// are still seen before every message.
const BATCH: usize = 1024;

/// How often a consumer waiting for messages tells librdkafka that it still polls. Without
/// it, a consumer with nothing to read for `max.poll.interval.ms` (5 minutes by default)
/// would be taken for a stuck application and leave its group.
const IDLE_POLL_MARK: Duration = Duration::from_millis(500);

/// Events served in one go on the blocking thread at most, so a flood of them cannot keep the
/// worker from its messages for long.
const SHARED_EVENTS_PER_SERVE: usize = 1000;

pub(crate) struct Fetcher {
    /// Messages taken in a batch from the partition queues, handed out one at a time.
    buffered: VecDeque<NativeMessage>,
    /// Where the next batch starts, so that no partition waits behind the others.
    next_partition: usize,
    /// Scratch for `refill`: where each queue's share sits in the batch.
    shares: Vec<Share>,
    /// The consumer's shared queue (rebalances, errors).
    shared_queue: Arc<QueueHandle>,
    /// Whether the shared queue has events (see `WorkerConsumerContext::shared_events`).
    shared_events: Arc<AtomicBool>,
    /// The blocking task serving the shared queue, while it runs.
    serving: Option<JoinHandle<()>>,
    /// Partitions paused (a message waiting for its next try) or held (a full lane) by the
    /// worker: none of their messages is handed out until they are resumed or released.
    paused: Vec<(String, i32)>,
    /// Buffered messages of paused partitions, in order.
    parked: Vec<NativeMessage>,
    /// Partitions revoked since the worker last asked, whose messages it may still hold:
    /// the paused ones (a message waiting for its next try), and with `report_every_revoke`
    /// all of them (a batch being cut). Whoever owns them now reads those messages again
    /// from the last commit.
    revoked_held: Vec<(String, i32)>,
    report_every_revoke: bool,
    /// Set by a worker with messages in flight: events wait until it has finished them.
    defer_events: bool,
    /// Set once the consumer cannot go on (seen after serving the shared queue, the only
    /// place it can happen).
    stopped: bool,
    consumer: SharedConsumer,
    state: Arc<WorkerState>,
    shutdown: Shutdown,
    /// Registered once and kept, so waiting costs nothing per message.
    stopping: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Fires every [`IDLE_POLL_MARK`] while the fetcher waits for messages.
    idle_tick: Pin<Box<tokio::time::Sleep>>,
    /// When the worker yields to the scheduler while it has messages.
    pace: YieldPace,
}

/// One partition queue's share of a batch: `taken` messages from index `first`, and whether
/// it filled its share (so it may have more).
#[derive(Clone, Copy)]
struct Share {
    first: usize,
    taken: usize,
    full: bool,
}

/// Moves up to `into.len()` queued messages of `queue` into `into`, without waiting; returns
/// how many. The caller owns them from then on.
fn take_from(queue: &PartitionQueue, into: &mut [*mut rdsys::rd_kafka_message_t]) -> usize {
    // SAFETY: a live queue; librdkafka fills at most `into.len()` slots and waits for nothing
    // (timeout 0).
    let taken = unsafe { rdsys::rd_kafka_consume_batch_queue(queue.queue.as_ptr(), 0, into.as_mut_ptr(), into.len()) };
    usize::try_from(taken).unwrap_or(0)
}

impl Fetcher {
    /// Fails only for a consumer without a group, which has no shared queue (the runtime
    /// always sets `group.id`).
    pub(crate) fn new(consumer: SharedConsumer, shutdown: Shutdown, state: Arc<WorkerState>) -> Result<Self, String> {
        let stopping = Box::pin(shutdown.drain_token().cancelled_owned());
        // SAFETY: a live client; the handle is destroyed before the client, since every holder
        // of this `Arc` also holds the consumer (this fetcher, its serving task).
        let shared_queue =
            unsafe { QueueHandle::from_ptr(rdsys::rd_kafka_queue_get_consumer(consumer.client().native_ptr())) };
        let shared_queue = Arc::new(shared_queue.ok_or("librdkafka gave no consumer queue (is group.id set?)")?);
        Ok(Self {
            buffered: VecDeque::with_capacity(BATCH),
            next_partition: 0,
            shares: Vec::new(),
            shared_events: Arc::clone(&consumer.context().shared_events),
            shared_queue,
            serving: None,
            paused: Vec::new(),
            parked: Vec::new(),
            revoked_held: Vec::new(),
            report_every_revoke: false,
            defer_events: false,
            stopped: false,
            consumer,
            state,
            shutdown,
            stopping,
            idle_tick: Box::pin(tokio::time::sleep(IDLE_POLL_MARK)),
            pace: YieldPace::new(),
        })
    }

    pub(crate) fn consumer(&self) -> &SharedConsumer {
        &self.consumer
    }

    pub(crate) fn state(&self) -> &Arc<WorkerState> {
        &self.state
    }

    pub(crate) fn label(&self) -> &str {
        self.state.label()
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutdown.is_begun()
    }

    /// The next message. A buffered one is handed out at once unless the shared queue has
    /// events: those (a rebalance above all) are served first, on a blocking thread, as a
    /// per-message poll would. An empty buffer is refilled from the partition queues. `None`
    /// once shutdown has begun or the consumer cannot go on.
    ///
    /// `before_the_rest` runs, given the worker's label, before anything but handing out a
    /// buffered message (a refill, serving events, waiting, ending): the caller stores there
    /// the offsets it kept to store later, so that they are stored at least once per buffer,
    /// and before a revoke's commit.
    #[inline]
    pub(crate) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        before_the_rest: impl FnOnce(&str),
    ) -> Poll<Option<NativeMessage>> {
        // The common case, small enough to inline into the worker's loop: a buffered message
        // and nothing else to do first.
        if self.serving.is_none()
            && !self.ended()
            && !self.buffered.is_empty()
            && (!self.has_shared_events() || self.defer_events)
        {
            let coop = ready!(self.pace.poll_turn(cx));
            if let Some(raw) = self.buffered.pop_front() {
                if raw.fields().err == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                    self.pace.handed_out(coop);
                    return Poll::Ready(Some(raw));
                }
                self.report_partition_error(&raw);
            }
        }
        before_the_rest(self.state.label());
        self.poll_next_slow(cx)
    }

    /// See [`TopicStream::defer_events`](super::TopicStream::defer_events).
    #[inline]
    pub(crate) fn defer_events(&mut self, defer: bool) {
        self.defer_events = defer;
    }

    /// True while the shared queue has events to serve, or is being served: the next
    /// `poll_next` serves them first.
    #[inline]
    pub(crate) fn events_pending(&self) -> bool {
        self.serving.is_some() || self.has_shared_events()
    }

    #[inline]
    fn has_shared_events(&self) -> bool {
        self.shared_events.load(Ordering::Acquire)
    }

    /// See [`Interruptions`].
    pub(crate) fn interruptions(&self) -> Interruptions {
        Interruptions {
            waker: Arc::clone(&self.consumer.context().waker),
            events: Arc::clone(&self.shared_events),
            stopping: Box::pin(self.shutdown.drain_token().cancelled_owned()),
        }
    }

    #[inline]
    fn ended(&self) -> bool {
        self.stopped || self.shutdown.is_begun()
    }

    /// Serves the shared queue's events, if it has any, and waits until that is done.
    pub(crate) fn poll_serve_events(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.serving.is_none() && self.has_shared_events() {
            self.serve_shared_queue();
        }
        self.poll_serving(cx)
    }

    /// Waits for the shared queue being served, if it is, then takes note of what it changed.
    fn poll_serving(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(serving) = &mut self.serving {
            // Even during shutdown: a rebalance being served finishes its commit first.
            ready!(Pin::new(serving).poll(cx)).ok();
            self.serving = None;
            self.stopped = self.state.is_stopped();
            self.forget_revoked();
        }
        Poll::Ready(())
    }

    fn poll_next_slow(&mut self, cx: &mut Context<'_>) -> Poll<Option<NativeMessage>> {
        loop {
            ready!(self.poll_serving(cx));
            if self.ended() {
                return Poll::Ready(None);
            }
            if self.has_shared_events() && !self.defer_events {
                self.serve_shared_queue();
                continue;
            }
            if self.buffered.is_empty() {
                // Registered before looking, so a message arriving in between wakes us.
                self.consumer.context().waker.register(cx.waker());
                if self.has_shared_events() && !self.defer_events {
                    continue;
                }
                if !self.refill() {
                    if self.stopping.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(None);
                    }
                    self.mark_polled_while_idle(cx);
                    return Poll::Pending;
                }
            }
            let coop = ready!(self.pace.poll_turn(cx));
            let Some(raw) = self.buffered.pop_front() else { continue };
            if raw.fields().err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                self.report_partition_error(&raw);
                continue;
            }
            self.pace.handed_out(coop);
            return Poll::Ready(Some(raw));
        }
    }

    /// Waiting for messages is polling, as far as `max.poll.interval.ms` goes: tells librdkafka
    /// so every [`IDLE_POLL_MARK`] (a handler that never returns still stops these marks, so
    /// librdkafka still sees a stuck worker).
    fn mark_polled_while_idle(&mut self, cx: &mut Context<'_>) {
        while self.idle_tick.as_mut().poll(cx).is_ready() {
            let mut none: [*mut rdsys::rd_kafka_message_t; 0] = [];
            // SAFETY: a live queue. With room for no message, librdkafka takes nothing off the
            // queue (no rebalance is answered behind the callbacks' back); it only records
            // that the application polled.
            unsafe { rdsys::rd_kafka_consume_batch_queue(self.shared_queue.as_ptr(), 0, none.as_mut_ptr(), 0) };
            self.idle_tick.as_mut().reset(tokio::time::Instant::now() + IDLE_POLL_MARK);
            self.state.polled();
        }
    }

    /// Serves the shared queue on a blocking thread: a rebalance runs the callbacks in
    /// `rebalance`, whose commit on revoke waits for the broker.
    fn serve_shared_queue(&mut self) {
        // Cleared before draining: an event that lands in the emptied queue sets it again.
        self.shared_events.store(false, Ordering::Release);
        let consumer = self.consumer.clone();
        let queue = Arc::clone(&self.shared_queue);
        let state = Arc::clone(&self.state);
        let events = Arc::clone(&self.shared_events);
        self.serving = Some(tokio::task::spawn_blocking(move || {
            for _ in 0..SHARED_EVENTS_PER_SERVE {
                if queue.len() == 0 {
                    break;
                }
                match consumer.poll(Duration::ZERO) {
                    None => {}
                    Some(Ok(message)) => state.stop(format!(
                        "a message of {}[{}] reached the consumer's shared queue, so its partition's queue \
                         was not split off; the worker stops rather than hand out messages out of order",
                        message.topic(),
                        message.partition()
                    )),
                    Some(Err(KafkaError::MessageConsumptionFatal(code))) => {
                        state.stop(format!("the consumer hit a fatal error: {code}"))
                    }
                    Some(Err(err)) => report(&state, &err),
                }
            }
            // Left for the next round: the queue never emptied, so nothing will call back.
            if queue.len() > 0 {
                events.store(true, Ordering::Release);
            }
        }));
    }

    /// Takes up to [`BATCH`] messages from the partition queues, each queue's in order. Every
    /// partition gets an equal share first, handed out interleaved (one message of each in
    /// turn), so that none waits behind another's backlog; what is left of the batch goes to
    /// whoever has more. The first partition changes every time. False if every queue was
    /// empty.
    fn refill(&mut self) -> bool {
        let assigned = self.consumer.context().partitions.lock();
        let queues = &assigned.queues;
        if queues.is_empty() {
            return false;
        }
        let mut batch = [std::ptr::null_mut::<rdsys::rd_kafka_message_t>(); BATCH];
        let start = self.next_partition % queues.len();
        self.next_partition = start + 1;
        let share = (BATCH / queues.len()).max(1);
        let paused = &self.paused;
        let rotation = || {
            queues[start..]
                .iter()
                .chain(&queues[..start])
                .filter(move |q| paused.is_empty() || !paused.iter().any(|(t, p)| *p == q.partition && *t == q.topic))
        };
        // First pass: each queue's share lands in its own run of `batch`.
        self.shares.clear();
        let mut used = 0;
        for queue in rotation() {
            let room = share.min(BATCH - used);
            if room == 0 {
                break;
            }
            let taken = take_from(queue, &mut batch[used..used + room]);
            self.shares.push(Share { first: used, taken, full: taken == room });
            used += taken;
        }
        let longest = self.shares.iter().map(|s| s.taken).max().unwrap_or(0);
        for index in 0..longest {
            for share in &self.shares {
                if index < share.taken {
                    // SAFETY: each message is owned by us from here on.
                    if let Some(message) = unsafe { NativeMessage::from_ptr(batch[share.first + index]) } {
                        self.buffered.push_back(message);
                    }
                }
            }
        }
        // Second pass: the rest of the batch to the queues that filled their share.
        if queues.len() > 1 && self.shares.iter().any(|s| s.full) {
            for queue in rotation() {
                let room = BATCH - self.buffered.len();
                if room == 0 {
                    break;
                }
                let taken = take_from(queue, &mut batch[..room]);
                for &message in &batch[..taken] {
                    // SAFETY: each message is owned by us from here on.
                    if let Some(message) = unsafe { NativeMessage::from_ptr(message) } {
                        self.buffered.push_back(message);
                    }
                }
            }
        }
        self.state.count_fetched(self.buffered.len());
        self.state.polled();
        !self.buffered.is_empty()
    }

    /// After a rebalance took partitions away, drops what was buffered of them: whoever owns
    /// them now (this worker too, if they came back) reads them again from the last commit.
    /// The other partitions' buffered messages stay: librdkafka has moved past them.
    fn forget_revoked(&mut self) {
        let Some(revoked) = self.consumer.context().partitions.take_revoked() else { return };
        let gone = |message: &NativeMessage| {
            let (topic, partition) = (message.topic(), message.fields().partition);
            revoked.iter().any(|(t, p)| *p == partition && t == topic)
        };
        self.buffered.retain(|message| !gone(message));
        self.parked.retain(|message| !gone(message));
        let (revoked_paused, still_paused): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.paused).into_iter().partition(|p| revoked.contains(p));
        self.paused = still_paused;
        // librdkafka keeps a partition paused across a revoke: one assigned again would never
        // be fetched.
        for (topic, partition) in &revoked_paused {
            self.pause_in_librdkafka(topic, *partition, false);
        }
        if self.report_every_revoke {
            self.revoked_held.extend(revoked);
        } else {
            self.revoked_held.extend(revoked_paused);
        }
    }

    /// Hands out no more messages of this partition, and stops fetching it, until
    /// [`resume`](Self::resume): a message of it waits for its next try.
    pub(crate) fn pause(&mut self, topic: &str, partition: i32) {
        self.pause_in_librdkafka(topic, partition, true);
        self.park(topic, partition);
    }

    /// Hands the partition's messages out again, the parked ones first.
    pub(crate) fn resume(&mut self, topic: &str, partition: i32) {
        self.pause_in_librdkafka(topic, partition, false);
        for message in self.unpark(topic, partition).into_iter().rev() {
            self.buffered.push_front(message);
        }
    }

    /// Hands out no more messages of this partition until [`release`](Self::release), while
    /// librdkafka goes on fetching it (up to its queue limits): the worker has enough of it
    /// for now, and wants the other partitions' messages.
    pub(crate) fn hold(&mut self, topic: &str, partition: i32) {
        self.park(topic, partition);
    }

    /// Hands the partition's parked messages out again, after those already buffered.
    pub(crate) fn release(&mut self, topic: &str, partition: i32) {
        let mine = self.unpark(topic, partition);
        self.buffered.extend(mine);
    }

    /// Moves the partition's buffered messages to `parked`, and skips its queue in `refill`.
    fn park(&mut self, topic: &str, partition: i32) {
        self.paused.push((topic.to_owned(), partition));
        let buffered = std::mem::take(&mut self.buffered);
        for message in buffered {
            if message.fields().partition == partition && message.topic() == topic {
                self.parked.push(message);
            } else {
                self.buffered.push_back(message);
            }
        }
    }

    /// Takes the partition's parked messages back, in order, and reads its queue again.
    fn unpark(&mut self, topic: &str, partition: i32) -> Vec<NativeMessage> {
        self.paused.retain(|(t, p)| !(*p == partition && t == topic));
        let parked = std::mem::take(&mut self.parked);
        let (mine, others): (Vec<_>, Vec<_>) =
            parked.into_iter().partition(|m| m.fields().partition == partition && m.topic() == topic);
        self.parked = others;
        mine
    }

    /// Partitions revoked since the last call whose messages the worker may hold: the paused
    /// ones, or all after [`report_every_revoke`](Self::report_every_revoke).
    pub(crate) fn take_revoked_held(&mut self) -> Vec<(String, i32)> {
        std::mem::take(&mut self.revoked_held)
    }

    #[inline]
    pub(crate) fn has_revoked_held(&self) -> bool {
        !self.revoked_held.is_empty()
    }

    /// From now on, [`take_revoked_held`](Self::take_revoked_held) reports every revoked
    /// partition: the worker holds messages it has not finished across `poll_next` calls.
    pub(crate) fn report_every_revoke(&mut self) {
        self.report_every_revoke = true;
    }

    fn pause_in_librdkafka(&self, topic: &str, partition: i32, pause: bool) {
        let mut list = TopicPartitionList::new();
        list.add_partition(topic, partition);
        let done = if pause { self.consumer.pause(&list) } else { self.consumer.resume(&list) };
        if let Err(err) = done {
            // Revoked meanwhile: nothing to pause or resume any more.
            tracing::debug!(worker = self.state.label(), "cannot pause or resume {topic}[{partition}]: {err}");
        }
    }

    fn report_partition_error(&self, message: &NativeMessage) {
        let fields = message.fields();
        let code: RDKafkaErrorCode = fields.err.into();
        let (label, topic, partition) = (self.state.label(), message.topic(), fields.partition);
        match code {
            RDKafkaErrorCode::PartitionEOF => {}
            RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => tracing::warn!(
                worker = label,
                "{topic} partition {partition}: {code}; the worker waits for the topic to be created"
            ),
            _ => tracing::warn!(worker = label, "consumer error on {topic} partition {partition}: {code}"),
        }
    }
}

fn report(state: &WorkerState, err: &KafkaError) {
    if crate::reachability::connection_problem(err, "").is_some() {
        // The client context tells those, once and then every few seconds.
        return;
    }
    let label = state.label();
    match err.rdkafka_error_code() {
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
            // A broker answered that.
            state.reached();
            tracing::warn!(worker = label, "{err}; the worker waits for the topic to be created")
        }
        _ => tracing::warn!(worker = label, "consumer error: {err}"),
    }
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        // Nobody reads the partition queues any more: they go now, before the client.
        self.consumer.context().partitions.close();
    }
}

/// What ends a worker's wait when all its messages are in flight and it reads no more: a
/// rebalance or an error to serve, or the shutdown. (Reading, it learns of them from
/// `poll_next`.)
pub(crate) struct Interruptions {
    waker: Arc<futures_util::task::AtomicWaker>,
    events: Arc<AtomicBool>,
    stopping: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Interruptions {
    /// Ready once events wait to be served, or the shutdown has begun.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.stopping.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        // Registered before looking, so events arriving in between wake the task.
        self.waker.register(cx.waker());
        if self.events.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}
