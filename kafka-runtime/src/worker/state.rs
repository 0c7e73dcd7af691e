//! How each running consumer is doing, readable from outside its task: what it is assigned,
//! how many messages it fetched, and why it stopped.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// One running consumer's state, written by its task and its client's callbacks.
pub(crate) struct WorkerState {
    label: Arc<str>,
    group: String,
    assigned: Mutex<Vec<(String, i32)>>,
    messages: AtomicU64,
    assignments: AtomicU64,
    stop_reason: Mutex<Option<String>>,
    /// Set with `stop_reason`, read on the hot path without the lock.
    stopped: AtomicBool,
    /// Where the worker's stream stood when it was dropped, if a message was still in hand.
    last_handed_out: Mutex<Option<String>>,
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
    pub(crate) fn register(label: Arc<str>, group: String) -> Arc<Self> {
        let state = Arc::new(Self {
            label,
            group,
            assigned: Mutex::default(),
            messages: AtomicU64::new(0),
            assignments: AtomicU64::new(0),
            stop_reason: Mutex::default(),
            stopped: AtomicBool::new(false),
            last_handed_out: Mutex::default(),
        });
        running().lock().unwrap_or_else(|e| e.into_inner()).push(Arc::downgrade(&state));
        state
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
        self.messages.fetch_add(messages as u64, Ordering::Relaxed);
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
}
