//! The per-message loop with several messages in the handler at once (`max_in_flight` > 1).
//!
//! - **Lanes** keep the order `ordering` asks for: one lane per partition (`partition`), per
//!   key (`key`; messages without a key take their partition's lane), or none (`none`). A
//!   lane runs one message at a time, in offset order; a message whose lane is busy waits in
//!   the lane's backlog. A lane whose backlog fills up holds its partition back (its
//!   buffered messages are set aside, librdkafka goes on prefetching it), so a slow
//!   partition never takes the room the others need.
//! - **Offsets** stay exact: each partition's handed-out messages are tracked in offset
//!   order, and an offset is stored only once it and every earlier one are done.
//! - **Rebalances**: while one waits to be served, no message starts; the running ones
//!   finish and are stored, then the rebalance is served (and committed on revoke); queued
//!   messages of revoked partitions are dropped, not handled.
//! - **Failures**: without a failure policy the first one stops the worker. Under one
//!   ([`run_with_policy`]), a message's tries and the waits between them run in its slot,
//!   holding only its lane; a rebalance or the shutdown cuts the waits short
//!   ([`RetryWaits`](super::failure::RetryWaits)) and the message goes back to the front of its lane.
//! - A handler that does not wait finishes inside [`Slots::start`], with nothing tracked and
//!   nothing allocated: the loop then costs about what the sequential one does.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;

use futures_util::future::CatchUnwind;
use futures_util::FutureExt as _;

use super::failure::{self, RetryWaits, Tried};
use super::slots::Slots;
use crate::config::FailurePolicy;
use crate::config::Ordering;
use crate::consume::completed;
use crate::consume::offsets::{Outstanding, Receipt, ToStore};
use crate::consume::{Message, TopicStream};
use crate::error::panic_message;
use crate::ops::observe::Observer;
use crate::worker::context::WorkerContext;
use crate::worker::error::WorkerError;
use crate::worker::handler::MessageHandler;

/// How many messages a partition lane keeps waiting before it holds its partition back.
const PARTITION_BACKLOG: usize = 8;

/// What a handler call gives: its result, or the panic it raised.
type CallOutcome = Result<Result<(), WorkerError>, Box<dyn std::any::Any + Send>>;

/// How a message's run in a slot ended.
pub(crate) enum Outcome {
    Done,
    /// The handler failed, or panicked: the worker stops.
    Failed {
        verb: &'static str,
        why: String,
    },
    /// The worker stops, for the reason told (which names the message).
    Stopped(String),
    /// It waited for its next try when a rebalance or the shutdown came: it goes back to the
    /// front of its lane, with its tries, and is dropped if its partition is taken away.
    Abandoned {
        message: Message,
        tries: u32,
    },
}

impl From<CallOutcome> for Outcome {
    #[inline]
    fn from(outcome: CallOutcome) -> Self {
        match outcome {
            Ok(Ok(())) => Outcome::Done,
            Ok(Err(err)) => Outcome::Failed { verb: "failed", why: err.to_string() },
            Err(panic) => Outcome::Failed { verb: "panicked", why: panic_message(&*panic).to_string() },
        }
    }
}

/// The call the sequential loop handed over: the first that waited, still running.
pub(crate) struct FirstCall<'a, F> {
    pub(crate) call: Pin<&'a mut F>,
    pub(crate) receipt: Receipt,
    /// Its key's hash, with `ordering = key`.
    pub(crate) key: Option<u64>,
}

/// A key's lane, for [`FirstCall::key`].
pub(crate) fn key_hash(message: &Message) -> Option<u64> {
    message.key().map(hash)
}

/// Runs `handler` on the messages of `stream`, up to `max_in_flight` at once, from the call
/// the sequential loop handed over (`first`) until shutdown or the first failure. After a
/// failure nothing more starts, the running messages finish, and the worker stops with the
/// failed message uncommitted.
pub(crate) async fn run<H: MessageHandler<Args>, Args, F>(
    handler: &H,
    stream: &mut TopicStream,
    ctx: &WorkerContext,
    observer: &Observer,
    first: FirstCall<'_, F>,
) -> Result<(), WorkerError>
where
    F: Future<Output = Result<(), WorkerError>>,
{
    let call = |(message, _tries): (Message, u32)| {
        AssertUnwindSafe(observer.observe(message, |message| handler.call(message, ctx))).catch_unwind()
    };
    run_lanes(stream, ctx, call, Some(first), None).await
}

/// [`run`] under a failure policy (`retries`, `dead_letter_topic`): a message's tries, and
/// the waits between them, run in its slot, so that a message waiting for its next try holds
/// back only its lane (its partition, or its key), while the others flow. The worker stops
/// only where the policy says so.
pub(crate) async fn run_with_policy<H: MessageHandler<Args>, Args>(
    handler: &H,
    stream: &mut TopicStream,
    ctx: &WorkerContext,
    observer: &Observer,
) -> Result<(), WorkerError> {
    let policy = &ctx.worker().failure;
    let waits = RetryWaits::default();
    let call = |(message, tries): (Message, u32)| with_retries(handler, ctx, observer, policy, &waits, message, tries);
    run_lanes(stream, ctx, call, None::<FirstCall<'_, std::future::Pending<_>>>, Some(&waits)).await
}

/// Tries a message until it is done, or the policy stops the worker, or its wait for the next
/// try is cut short (see [`RetryWaits`]). `tries`: the tries made before.
async fn with_retries<H: MessageHandler<Args>, Args>(
    handler: &H,
    ctx: &WorkerContext,
    observer: &Observer,
    policy: &FailurePolicy,
    waits: &RetryWaits,
    mut message: Message,
    mut tries: u32,
) -> Outcome {
    loop {
        match failure::try_once(handler, ctx, observer, policy, message, tries).await {
            Tried::Done => return Outcome::Done,
            Tried::Stop(why) => return Outcome::Stopped(why),
            Tried::Again { wait, message: kept } => {
                tries += 1;
                if !waits.wait(wait).await {
                    return Outcome::Abandoned { message: kept, tries };
                }
                message = kept;
            }
        }
    }
}

/// The handed-over call, running in its lane beside the slots, in room reserved in them.
struct HandedOver<G> {
    job: Job,
    call: G,
    slot: usize,
}

/// The loop of [`run`] and [`run_with_policy`]: `call` makes the future that runs a message
/// (with the tries it had before).
async fn run_lanes<C, F, G>(
    stream: &mut TopicStream,
    ctx: &WorkerContext,
    call: C,
    first: Option<FirstCall<'_, G>>,
    waits: Option<&RetryWaits>,
) -> Result<(), WorkerError>
where
    C: Fn((Message, u32)) -> F,
    F: Future,
    F::Output: Into<Outcome>,
    G: Future<Output = Result<(), WorkerError>>,
{
    let concurrency = &ctx.worker().concurrency;
    let lanes = Lanes::new(concurrency.ordering.value, concurrency.max_in_flight.value);
    stream.report_every_revoke();
    let slots = Slots::new(lanes.max_in_flight, &call);
    let jobs = (0..lanes.max_in_flight).map(|_| None).collect();
    let mut flight = Flight { lanes, slots, jobs, call };
    let mut first = first.map(|first| flight.hand_over(first));
    // Retry waits are cut short when a rebalance or the shutdown comes, even while the loop
    // reads nothing (every slot taken).
    let mut interruptions = waits.map(|_| stream.interruptions());
    let mut ended = false;
    let mut save_completed = tokio::time::interval(completed::commit_interval(stream.state().commit_interval()));
    save_completed.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        flight.lanes.forget_revoked(stream);
        let events = stream.events_pending();
        let going = !ended && flight.lanes.failure.is_none();
        if let Some(waits) = waits {
            waits.cut_short(events || !going);
        }
        if going && !events && flight.lanes.has_stalled() {
            flight.restart_stalled(stream);
        }
        let idle = flight.slots.is_idle();
        if idle && !going {
            break;
        }
        if events && idle && going {
            // Rebalances and errors, served once nothing runs: the messages that ran are
            // stored, and committed on revoke.
            stream.serve_events().await;
            continue;
        }
        // Events that come while messages run wait for them.
        let lanes = &flight.lanes;
        let reading = going && !events && flight.slots.has_room() && lanes.held() < 2 * lanes.max_in_flight;
        if idle && !reading {
            // Nothing runs and nothing may be read: lanes with a backlog wait for a start.
            flight.lanes.stall_idle_backlogs();
            continue;
        }
        stream.defer_events(!idle);
        if idle {
            // Nothing runs, so nothing can finish: wait for the next message alone.
            match stream.next().await {
                None => ended = true,
                Some(message) => {
                    let Some(receipt) = stream.defer() else { continue };
                    flight.arrived(stream, message, receipt);
                }
            }
            continue;
        }
        let (job, outcome) = tokio::select! {
            biased;
            outcome = async { (&mut first.as_mut().expect("guarded").call).await }, if first.is_some() => {
                let handed = first.take().expect("guarded");
                flight.slots.give_back(handed.slot);
                (handed.job, Outcome::from(outcome))
            }
            (index, outcome) = std::future::poll_fn(|cx| flight.slots.poll_finished(cx)), if !flight.slots.is_idle() => {
                let Some(job) = flight.jobs[index].take() else { continue };
                (job, outcome.into())
            }
            () = std::future::poll_fn(|cx| interruptions.as_mut().expect("guarded").poll(cx)),
                if interruptions.is_some() && !events && !ended => {
                // Shutdown: read nothing more, as when the stream ends.
                ended = !stream.events_pending();
                continue;
            }
            _ = save_completed.tick(), if flight.lanes.completed_unsaved => {
                flight.lanes.commit_completed(stream);
                continue;
            }
            next = stream.next(), if reading => {
                match next {
                    None => ended = true,
                    Some(message) => {
                        // This loop stores offsets itself, once each message is done.
                        let Some(receipt) = stream.defer() else { continue };
                        flight.arrived(stream, message, receipt);
                    }
                }
                continue;
            }
        };
        flight.lanes.finished(stream, job, outcome);
        let starting = !stream.events_pending() && flight.lanes.failure.is_none() && !ended;
        flight.lane_free(stream, job.lane, starting);
    }
    match flight.lanes.failure.take() {
        Some(failure) => Err(WorkerError::msg(failure)),
        None => Ok(()),
    }
}

/// A message running in a slot.
#[derive(Clone, Copy)]
struct Job {
    receipt: Receipt,
    lane: LaneId,
}

/// Which messages must not overlap.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum LaneId {
    /// A partition: the topic's index in the stream's store, and the partition.
    Partition(usize, i32),
    /// A key, hashed.
    Key(u64),
    /// No lane: anything may run beside it.
    Free,
}

/// A message read but not started, because its lane is busy.
struct Queued {
    message: Message,
    receipt: Receipt,
    /// Tries made before (under a failure policy).
    tries: u32,
}

#[derive(Default)]
struct Lane {
    busy: bool,
    backlog: VecDeque<Queued>,
    /// The partition this lane holds back while its backlog is full (see `Flight::arrived`).
    holding: Option<Receipt>,
}

/// One partition: its lane (with `ordering = partition`, and for messages without a key with
/// `ordering = key`), and its handed-out messages not yet stored, in offset order, each with
/// whether it is done.
#[derive(Default)]
struct Track {
    /// A message of the partition, to name it by.
    receipt: Option<Receipt>,
    lane: Lane,
    outstanding: Outstanding,
    /// Lanes that hold this partition back.
    held_by: u32,
    /// Messages finished above the first unfinished one since its offset was last stored:
    /// the metadata to commit changed while the offset did not.
    completed_unsaved: bool,
}

struct Lanes {
    ordering: Ordering,
    max_in_flight: usize,
    /// A lane with this many messages waiting holds its partition back.
    backlog_limit: usize,
    /// Tracks by topic index, then partition.
    tracks: Vec<Vec<Track>>,
    keys: HashMap<u64, Lane, BuildHasherDefault<Prehashed>>,
    /// Messages waiting in backlogs.
    queued: usize,
    /// Messages in slots.
    running: usize,
    /// Messages in the tracks' `outstanding`, all partitions together.
    tracked: usize,
    /// Lanes left idle with a backlog while a rebalance was pending.
    stalled: Vec<LaneId>,
    /// The first failure, which stops the worker.
    failure: Option<String>,
    /// Some track has `completed_unsaved`.
    completed_unsaved: bool,
    /// Messages without a lane (`ordering = none`) whose wait for their next try was cut
    /// short: started again before anything else.
    free_retries: VecDeque<Queued>,
}

impl Lanes {
    fn new(ordering: Ordering, max_in_flight: usize) -> Self {
        let max_in_flight = max_in_flight.max(1);
        Self {
            ordering,
            max_in_flight,
            // A partition lane needs only a few waiting messages to never run dry; more would
            // keep the other partitions' messages behind them. A key lane shares its
            // partition with other keys: it holds the partition back only when very full.
            backlog_limit: match ordering {
                Ordering::Partition => PARTITION_BACKLOG.min(max_in_flight),
                Ordering::Key | Ordering::None => max_in_flight,
            },
            tracks: Vec::new(),
            keys: HashMap::default(),
            queued: 0,
            running: 0,
            tracked: 0,
            stalled: Vec::new(),
            failure: None,
            completed_unsaved: false,
            free_retries: VecDeque::new(),
        }
    }

    /// Messages read and not done: running or queued.
    fn held(&self) -> usize {
        self.queued + self.running
    }

    #[inline]
    fn track(&mut self, receipt: &Receipt) -> &mut Track {
        let topic = receipt.topic_index();
        if self.tracks.len() <= topic {
            self.tracks.resize_with(topic + 1, Vec::new);
        }
        let partitions = &mut self.tracks[topic];
        let partition = usize::try_from(receipt.partition).unwrap_or(0);
        if partitions.len() <= partition {
            partitions.resize_with(partition + 1, Track::default);
        }
        let track = &mut partitions[partition];
        if track.receipt.is_none() {
            track.receipt = Some(*receipt);
        }
        track
    }

    /// Adds a handed-out message to its partition's tracking order.
    fn track_handed_out(&mut self, receipt: &Receipt) {
        self.track(receipt).outstanding.push(receipt.offset);
        self.tracked += 1;
    }

    #[inline]
    fn lane_of(&self, message: &Message, receipt: &Receipt) -> LaneId {
        let key = match self.ordering {
            Ordering::Key => message.key().map(hash),
            Ordering::Partition | Ordering::None => None,
        };
        self.lane_for(key, receipt)
    }

    /// The lane of a message of `receipt`'s partition whose key hashes to `key`.
    #[inline]
    fn lane_for(&self, key: Option<u64>, receipt: &Receipt) -> LaneId {
        match (self.ordering, key) {
            (Ordering::None, _) => LaneId::Free,
            (Ordering::Key, Some(key)) => LaneId::Key(key),
            _ => LaneId::Partition(receipt.topic_index(), receipt.partition),
        }
    }

    /// The lane of `id`, created if needed (`receipt` is a message of it).
    fn lane(&mut self, id: LaneId, receipt: &Receipt) -> Option<&mut Lane> {
        match id {
            LaneId::Free => None,
            LaneId::Partition(..) => Some(&mut self.track(receipt).lane),
            LaneId::Key(key) => Some(self.keys.entry(key).or_default()),
        }
    }

    /// The lane of `id`, if it exists.
    fn existing_lane(&mut self, id: LaneId) -> Option<&mut Lane> {
        match id {
            LaneId::Free => None,
            LaneId::Partition(topic, partition) => {
                let track = self.tracks.get_mut(topic)?.get_mut(usize::try_from(partition).ok()?)?;
                Some(&mut track.lane)
            }
            LaneId::Key(key) => self.keys.get_mut(&key),
        }
    }

    /// A running message finished.
    fn finished(&mut self, stream: &mut TopicStream, job: Job, outcome: Outcome) {
        self.running -= 1;
        self.settle(stream, job.lane, &job.receipt, outcome);
    }

    /// What follows a tracked message's end in lane `id`: it is done, or the worker stops, or
    /// (abandoned) it goes back to the front of its lane. True for the last.
    fn settle(&mut self, stream: &mut TopicStream, id: LaneId, receipt: &Receipt, outcome: Outcome) -> bool {
        let failure = match outcome {
            Outcome::Done => {
                self.done(stream, receipt);
                return false;
            }
            Outcome::Failed { verb, why } => format!(
                "handler {verb} at {}: {why}; the message was not committed and will be delivered again",
                stream.position(receipt)
            ),
            Outcome::Stopped(why) => why,
            Outcome::Abandoned { message, tries } => {
                self.put_back(id, Queued { message, receipt: *receipt, tries });
                return true;
            }
        };
        // The first failure stops the worker; nothing at or after it in its partition is stored.
        self.failure.get_or_insert(failure);
        false
    }

    /// A message whose wait for its next try was cut short goes back to the front of its
    /// lane's backlog, to start once the lane starts again.
    fn put_back(&mut self, id: LaneId, queued: Queued) {
        self.queued += 1;
        let receipt = queued.receipt;
        match self.lane(id, &receipt) {
            Some(lane) => {
                lane.backlog.push_front(queued);
                self.stalled.push(id);
            }
            None => self.free_retries.push_back(queued),
        }
    }

    /// True when some lane, or some message without one, waits to be started again.
    fn has_stalled(&self) -> bool {
        !self.stalled.is_empty() || !self.free_retries.is_empty()
    }

    /// Marks a tracked message done, storing every offset of its partition that is now done
    /// in a row.
    fn done(&mut self, stream: &mut TopicStream, receipt: &Receipt) {
        let keep_completed = self.ordering != Ordering::Partition;
        let (highest, released) = self.track(receipt).outstanding.done(receipt.offset);
        self.tracked -= released;
        let Some(offset) = highest else {
            // Done above the first unfinished message: committed by `commit_completed`,
            // as librdkafka commits only an offset that moved.
            if keep_completed {
                self.track(receipt).completed_unsaved = true;
                self.completed_unsaved = true;
            }
            return;
        };
        let track = self.track(receipt);
        track.completed_unsaved = false;
        let outstanding = &track.outstanding;
        // Done ones above the first not done go in the commit's metadata.
        let metadata = keep_completed
            .then(|| outstanding.done_above())
            .flatten()
            .and_then(|(first, done)| Some((first, completed::encode(first, done)?)));
        match metadata {
            Some((first, metadata)) => stream.store_with_metadata(receipt, first, &metadata),
            None => stream.store(&receipt.at_offset(offset)),
        }
    }

    /// A lane that ran out of messages: no longer holds its partition back, and a key lane is
    /// forgotten.
    fn idle(&mut self, stream: &mut TopicStream, id: LaneId) {
        self.release(stream, id);
        if let LaneId::Key(key) = id {
            self.keys.remove(&key);
        }
    }

    /// The lane's backlog is down to half its limit: its partition's messages may come again.
    fn release(&mut self, stream: &mut TopicStream, id: LaneId) {
        let Some(held) = self.existing_lane(id).and_then(|lane| lane.holding.take()) else { return };
        let track = self.track(&held);
        track.held_by = track.held_by.saturating_sub(1);
        if track.held_by == 0 {
            stream.release(&held);
        }
    }

    /// Marks every idle lane with a backlog as stalled, to be started, and counts the queued
    /// messages again from the backlogs.
    fn stall_idle_backlogs(&mut self) {
        self.queued = self.tracks.iter().flatten().map(|t| t.lane.backlog.len()).sum::<usize>()
            + self.keys.values().map(|lane| lane.backlog.len()).sum::<usize>()
            + self.free_retries.len();
        for track in self.tracks.iter().flatten() {
            if !track.lane.busy && !track.lane.backlog.is_empty() {
                if let Some(receipt) = track.receipt {
                    self.stalled.push(LaneId::Partition(receipt.topic_index(), receipt.partition));
                }
            }
        }
        for (key, lane) in &self.keys {
            if !lane.busy && !lane.backlog.is_empty() {
                self.stalled.push(LaneId::Key(*key));
            }
        }
    }

    /// Drops what is queued and tracked of partitions taken away: their new owner reads those
    /// messages again from the last commit. None of them runs: a rebalance is served only
    /// once nothing runs.
    #[inline]
    fn forget_revoked(&mut self, stream: &mut TopicStream) {
        if stream.has_revoked_held() {
            self.forget(stream);
        }
    }

    fn forget(&mut self, stream: &mut TopicStream) {
        let revoked = stream.take_revoked_held();
        let gone =
            |receipt: &Receipt| revoked.iter().any(|(t, p)| receipt.partition == *p && stream.topic(receipt) == t);
        let mut dropped = 0;
        for track in self.tracks.iter_mut().flatten() {
            if track.receipt.is_some_and(|r| gone(&r)) {
                dropped += track.lane.backlog.len();
                self.tracked -= track.outstanding.len();
                *track = Track::default();
            }
        }
        for lane in self.keys.values_mut() {
            let before = lane.backlog.len();
            lane.backlog.retain(|q| !gone(&q.receipt));
            dropped += before - lane.backlog.len();
            if lane.holding.is_some_and(|r| gone(&r)) {
                lane.holding = None;
            }
        }
        self.keys.retain(|_, lane| lane.busy || !lane.backlog.is_empty());
        let before = self.free_retries.len();
        self.free_retries.retain(|q| !gone(&q.receipt));
        dropped += before - self.free_retries.len();
        self.queued -= dropped;
    }

    /// Commits, with their metadata, the partitions whose done messages above the first
    /// unfinished one changed while its offset did not (a slow message holds it): so that a
    /// restart skips them even while that message runs on.
    fn commit_completed(&mut self, stream: &mut TopicStream) {
        if !std::mem::take(&mut self.completed_unsaved) {
            return;
        }
        let mut to_commit = Vec::new();
        for track in self.tracks.iter_mut().flatten() {
            let Some(receipt) = track.receipt.filter(|_| std::mem::take(&mut track.completed_unsaved)) else {
                continue;
            };
            let Some((next, done)) = track.outstanding.done_above() else { continue };
            let Some(metadata) = completed::encode(next, done) else { continue };
            to_commit.push(ToStore::WithCompleted { receipt, next, metadata });
        }
        stream.commit_completed(to_commit);
    }
}

/// The lanes with the handler calls in flight: what the loop of [`run`] works on.
struct Flight<F, C> {
    lanes: Lanes,
    slots: Slots<F>,
    /// What runs in each slot.
    jobs: Vec<Option<Job>>,
    call: C,
}

impl<F, C> Flight<F, C>
where
    F: Future,
    F::Output: Into<Outcome>,
    C: Fn((Message, u32)) -> F,
{
    /// Takes over the call the sequential loop handed over: it runs in its lane, in room
    /// reserved in the slots, so that it counts against `max_in_flight`.
    fn hand_over<'a, G>(&mut self, first: FirstCall<'a, G>) -> HandedOver<CatchUnwind<AssertUnwindSafe<Pin<&'a mut G>>>>
    where
        G: Future<Output = Result<(), WorkerError>>,
    {
        let lanes = &mut self.lanes;
        let job = Job { receipt: first.receipt, lane: lanes.lane_for(first.key, &first.receipt) };
        lanes.track_handed_out(&first.receipt);
        if let Some(lane) = lanes.lane(job.lane, &first.receipt) {
            lane.busy = true;
        }
        lanes.running += 1;
        HandedOver { job, call: AssertUnwindSafe(first.call).catch_unwind(), slot: self.slots.reserve() }
    }

    /// A message just read: started now if its lane is free, else queued behind it.
    fn arrived(&mut self, stream: &mut TopicStream, message: Message, receipt: Receipt) {
        if stream.was_done(&receipt) {
            // Done before a restart or a rebalance: as if its handler had finished at once.
            if self.lanes.tracked == 0 {
                stream.store(&receipt);
            } else {
                self.lanes.track_handed_out(&receipt);
                self.lanes.done(stream, &receipt);
            }
            return;
        }
        let id = self.lanes.lane_of(&message, &receipt);
        if self.lanes.tracked == 0 {
            // Nothing is running or waiting anywhere (both are tracked): its lane is free and no
            // earlier message of its partition is pending. The common case, looked up nowhere.
            self.start(stream, Queued { message, receipt, tries: 0 }, id, false);
            return;
        }
        let track = self.lanes.track(&receipt);
        let tracked = !track.outstanding.is_empty();
        // A lane with a backlog (left waiting while a rebalance was pending) keeps its order.
        let busy = match id {
            LaneId::Partition(..) => track.lane.busy || !track.lane.backlog.is_empty(),
            // Looked up without creating it: a key lane exists only while it is busy.
            LaneId::Key(key) => self.lanes.keys.get(&key).is_some_and(|lane| lane.busy || !lane.backlog.is_empty()),
            LaneId::Free => false,
        };
        if !busy {
            if tracked {
                self.lanes.track_handed_out(&receipt);
            }
            self.start(stream, Queued { message, receipt, tries: 0 }, id, tracked);
            return;
        }
        self.lanes.track_handed_out(&receipt);
        self.lanes.queued += 1;
        let limit = self.lanes.backlog_limit;
        let lane = self.lanes.lane(id, &receipt).expect("a busy lane exists");
        lane.backlog.push_back(Queued { message, receipt, tries: 0 });
        if lane.backlog.len() >= limit && lane.holding.is_none() {
            // Enough of this partition for now: its other buffered messages are set aside,
            // so those of the other partitions (and the next batch of them) come first.
            lane.holding = Some(receipt);
            let track = self.lanes.track(&receipt);
            track.held_by += 1;
            if track.held_by == 1 {
                stream.hold(&receipt);
            }
        }
    }

    /// Starts a message in a free slot (the caller checked there is one). `tracked`: it is in
    /// its partition's tracking order already. A message that finishes at once is accounted
    /// for at once, and its lane stays free; one that waits makes its lane busy. False when
    /// the message came back at once, abandoned (see [`Outcome::Abandoned`]).
    #[inline]
    fn start(&mut self, stream: &mut TopicStream, queued: Queued, id: LaneId, tracked: bool) -> bool {
        let receipt = queued.receipt;
        match self.slots.start((self.call)((queued.message, queued.tries))).map(Into::into) {
            // Nothing earlier of its partition is pending: the common case, stored without
            // tracking.
            Ok(Outcome::Done) if !tracked => stream.store(&receipt),
            Ok(outcome) => {
                if !tracked {
                    self.lanes.track_handed_out(&receipt);
                }
                return !self.lanes.settle(stream, id, &receipt, outcome);
            }
            Err(index) => {
                if !tracked {
                    self.lanes.track_handed_out(&receipt);
                }
                if let Some(lane) = self.lanes.lane(id, &receipt) {
                    lane.busy = true;
                }
                self.lanes.running += 1;
                self.jobs[index] = Some(Job { receipt, lane: id });
            }
        }
        true
    }

    /// A lane's running message finished: the lane is free, and its next message starts
    /// (`starting`), or waits until rebalances are served.
    fn lane_free(&mut self, stream: &mut TopicStream, id: LaneId, starting: bool) {
        let Some(lane) = self.lanes.existing_lane(id) else { return };
        lane.busy = false;
        if lane.backlog.is_empty() {
            self.lanes.idle(stream, id);
        } else if starting {
            self.run_backlog(stream, id);
        } else {
            self.lanes.stalled.push(id);
        }
    }

    /// Starts a free lane's queued messages, one after the other while they finish at once,
    /// until one waits, no slot is free, or the backlog is empty (then the lane is released).
    fn run_backlog(&mut self, stream: &mut TopicStream, id: LaneId) {
        loop {
            let failed = self.lanes.failure.is_some();
            let Some(lane) = self.lanes.existing_lane(id) else { return };
            if lane.busy {
                return;
            }
            if lane.backlog.is_empty() {
                self.lanes.idle(stream, id);
                return;
            }
            if failed || !self.slots.has_room() {
                self.lanes.stalled.push(id);
                return;
            }
            let next = lane.backlog.pop_front().expect("not empty");
            let low = lane.backlog.len() <= self.lanes.backlog_limit / 2;
            self.lanes.queued -= 1;
            if low {
                self.lanes.release(stream, id);
            }
            if !self.start(stream, next, id, true) {
                return;
            }
        }
    }

    /// Starts the backlogs left waiting while a rebalance was pending or no slot was free.
    fn restart_stalled(&mut self, stream: &mut TopicStream) {
        while self.slots.has_room() {
            let Some(retry) = self.lanes.free_retries.pop_front() else { break };
            self.lanes.queued -= 1;
            if !self.start(stream, retry, LaneId::Free, true) {
                break;
            }
        }
        let mut stalled = std::mem::take(&mut self.lanes.stalled);
        stalled.dedup();
        for id in stalled {
            self.run_backlog(stream, id);
        }
    }
}

/// A key's hash (FNV-1a): stable, and cheap for short keys.
fn hash(key: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// A hasher for keys that are hashes already.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 << 8) | u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}
