//! How each running consumer is doing, readable from outside its task: what it is assigned,
//! how many messages it fetched, and why it stopped.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::reachability::Reachability;

/// One running consumer's state, written by its task and its client's callbacks.
pub(crate) struct WorkerState {
    label: Arc<str>,
    /// The worker's name (the label without the group).
    name: String,
    group: String,
    assigned: Mutex<Vec<(String, i32)>>,
    messages: AtomicU64,
    assignments: AtomicU64,
    stop_reason: Mutex<Option<String>>,
    /// Set with `stop_reason`, read on the hot path without the lock.
    stopped: AtomicBool,
    /// Where the worker's stream stood when it was dropped, if a message was still in hand.
    last_handed_out: Mutex<Option<String>>,
    /// In its group with an assignment (possibly empty): set at each assignment, cleared at
    /// each revoke.
    joined: AtomicBool,
    /// When the worker last looked for messages, in ms since [`epoch`].
    last_poll_ms: AtomicU64,
    /// Whether its client reaches the brokers.
    reachability: Reachability,
    /// Per topic: what was handled (see `ops::observe`), in the order first seen.
    topics: Mutex<Vec<Arc<TopicStats>>>,
    /// Per partition `(topic, partition, lag)`, from librdkafka's statistics.
    lag: Mutex<Vec<(String, i32, i64)>>,
    /// Messages in the handler now.
    in_flight: AtomicI64,
    /// Its consumer's `max.poll.interval.ms`.
    max_poll_interval_ms: AtomicU64,
    /// Its consumer's `auto.commit.interval.ms`.
    commit_interval_ms: AtomicU64,
}

/// What a worker handled of one topic, counted while metrics are on.
#[derive(Debug)]
pub(crate) struct TopicStats {
    pub(crate) topic: Box<str>,
    pub(crate) handled: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    /// The last message handled: partition, offset and timestamp (ms, -1 when unknown).
    pub(crate) last_partition: AtomicI32,
    pub(crate) last_offset: AtomicI64,
    pub(crate) last_timestamp: AtomicI64,
}

/// The instant the process's worker states count time from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// A snapshot of one running consumer, from [`running_workers`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct WorkerStatus {
    /// The worker's name, with the group when the worker runs one consumer per topic.
    pub label: String,
    pub group: String,
    /// The partitions assigned to it now, as `(topic, partition)`, sorted.
    pub assigned: Vec<(String, i32)>,
    /// Messages fetched for the worker since it started (taken off its partition queues; those
    /// of a partition revoked before they were handed out are counted too).
    pub messages: u64,
    /// Assignments received from the group since it started (each rebalance that gave it
    /// partitions counts one).
    pub assignments: u64,
    /// Why its consumer cannot go on, once that happened.
    pub stop_reason: Option<String>,
}

fn running() -> &'static Mutex<Vec<Weak<WorkerState>>> {
    static RUNNING: OnceLock<Mutex<Vec<Weak<WorkerState>>>> = OnceLock::new();
    RUNNING.get_or_init(Mutex::default)
}

/// Every consumer running in this process now, sorted by label.
pub fn running_workers() -> Vec<WorkerStatus> {
    let mut all = running().lock().unwrap_or_else(|e| e.into_inner());
    all.retain(|state| state.strong_count() > 0);
    let mut statuses: Vec<WorkerStatus> = all.iter().filter_map(Weak::upgrade).map(|state| state.status()).collect();
    statuses.sort_by(|a, b| a.label.cmp(&b.label));
    statuses
}

impl WorkerState {
    /// A consumer's state, listed by [`running_workers`] while it is alive.
    pub(crate) fn register(name: &str, label: Arc<str>, group: String) -> Arc<Self> {
        let state = Arc::new(Self {
            label,
            name: name.to_owned(),
            group,
            assigned: Mutex::default(),
            messages: AtomicU64::new(0),
            assignments: AtomicU64::new(0),
            stop_reason: Mutex::default(),
            stopped: AtomicBool::new(false),
            last_handed_out: Mutex::default(),
            joined: AtomicBool::new(false),
            last_poll_ms: AtomicU64::new(0),
            reachability: Reachability::default(),
            topics: Mutex::default(),
            lag: Mutex::default(),
            in_flight: AtomicI64::new(0),
            max_poll_interval_ms: AtomicU64::new(300_000),
            commit_interval_ms: AtomicU64::new(5_000),
        });
        state.polled();
        running().lock().unwrap_or_else(|e| e.into_inner()).push(Arc::downgrade(&state));
        state
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn group(&self) -> &str {
        &self.group
    }

    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    pub(crate) fn status(&self) -> WorkerStatus {
        let mut assigned = self.assigned.lock().unwrap_or_else(|e| e.into_inner()).clone();
        assigned.sort();
        WorkerStatus {
            label: self.label.to_string(),
            group: self.group.clone(),
            assigned,
            messages: self.messages.load(Ordering::Relaxed),
            assignments: self.assignments.load(Ordering::Relaxed),
            stop_reason: self.stop_reason.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }

    pub(crate) fn count_assignment(&self) {
        self.assignments.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_assigned(&self, update: impl FnOnce(&mut Vec<(String, i32)>)) {
        update(&mut self.assigned.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Counts messages taken off the partition queues, once per batch.
    pub(crate) fn count_fetched(&self, messages: usize) {
        if messages > 0 {
            self.messages.fetch_add(messages as u64, Ordering::Relaxed);
            self.reached();
        }
    }

    /// Records why the consumer cannot go on; the first reason stays.
    pub(crate) fn stop(&self, reason: String) {
        tracing::error!(worker = &*self.label, "{reason}");
        self.stop_reason.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(reason);
        self.stopped.store(true, Ordering::Release);
    }

    pub(crate) fn stop_reason(&self) -> Option<String> {
        self.stop_reason.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_last_handed_out(&self, position: String) {
        *self.last_handed_out.lock().unwrap_or_else(|e| e.into_inner()) = Some(position);
    }

    /// Where the stream stood when it was dropped with a message in hand, not yet done.
    pub(crate) fn last_handed_out(&self) -> Option<String> {
        self.last_handed_out.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Joined its group, with an assignment (`true`), or being revoked (`false`).
    pub(crate) fn set_joined(&self, joined: bool) {
        self.joined.store(joined, Ordering::Release);
        if joined {
            self.reached();
        }
    }

    pub(crate) fn is_joined(&self) -> bool {
        self.joined.load(Ordering::Acquire)
    }

    /// The worker looked for messages now.
    #[inline]
    pub(crate) fn polled(&self) {
        let ms = u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_poll_ms.store(ms, Ordering::Relaxed);
    }

    /// How long ago the worker last looked for messages.
    pub(crate) fn since_poll(&self) -> Duration {
        let then = Duration::from_millis(self.last_poll_ms.load(Ordering::Relaxed));
        epoch().elapsed().saturating_sub(then)
    }

    /// Whether its client reaches the brokers: told failures by the client's callbacks, and
    /// answers by its assignments, fetches and statistics.
    pub(crate) fn reachability(&self) -> &Reachability {
        &self.reachability
    }

    /// The brokers answered.
    pub(crate) fn reached(&self) {
        self.reachability.connected(&self.label);
    }

    /// Why no broker answers, while none does.
    pub(crate) fn unreachable(&self) -> Option<String> {
        self.reachability.problem()
    }

    /// The stats of `topic`, created the first time it is asked for.
    pub(crate) fn topic(&self, topic: &str) -> Arc<TopicStats> {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(stats) = topics.iter().find(|stats| &*stats.topic == topic) {
            return Arc::clone(stats);
        }
        let stats = Arc::new(TopicStats {
            topic: topic.into(),
            handled: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            last_partition: AtomicI32::new(-1),
            last_offset: AtomicI64::new(-1),
            last_timestamp: AtomicI64::new(-1),
        });
        topics.push(Arc::clone(&stats));
        stats
    }

    pub(crate) fn topics(&self) -> Vec<Arc<TopicStats>> {
        self.topics.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_lag(&self, lag: Vec<(String, i32, i64)>) {
        *self.lag.lock().unwrap_or_else(|e| e.into_inner()) = lag;
    }

    pub(crate) fn lag(&self) -> Vec<(String, i32, i64)> {
        self.lag.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_max_poll_interval(&self, interval: Duration) {
        self.max_poll_interval_ms.store(u64::try_from(interval.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub(crate) fn max_poll_interval(&self) -> Duration {
        Duration::from_millis(self.max_poll_interval_ms.load(Ordering::Relaxed))
    }

    pub(crate) fn set_commit_interval(&self, interval: Duration) {
        self.commit_interval_ms.store(u64::try_from(interval.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub(crate) fn commit_interval(&self) -> Duration {
        Duration::from_millis(self.commit_interval_ms.load(Ordering::Relaxed))
    }

    pub(crate) fn add_in_flight(&self, change: i64) {
        self.in_flight.fetch_add(change, Ordering::Relaxed);
    }

    pub(crate) fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// Every consumer state alive in this process, for the HTTP endpoints.
pub(crate) fn running_states() -> Vec<Arc<WorkerState>> {
    let mut all = running().lock().unwrap_or_else(|e| e.into_inner());
    all.retain(|state| state.strong_count() > 0);
    let mut states: Vec<Arc<WorkerState>> = all.iter().filter_map(Weak::upgrade).collect();
    states.sort_by(|a, b| a.label.cmp(&b.label));
    states
}
