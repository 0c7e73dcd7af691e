//! Rebalances told to a stream worker that asks for them ([`TopicStream::next_event`]):
//! partitions assigned, and partitions about to be revoked, told *before* the commit on
//! revoke, which waits until the worker asks for its next event, so that what it buffered
//! and finished then is committed.
//!
//! [`TopicStream::next_event`]: super::TopicStream::next_event

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::TopicPartitionList;

use super::message::Message;

/// What [`TopicStream::next_event`](super::TopicStream::next_event) returns.
#[derive(Debug)]
#[non_exhaustive]
pub enum StreamEvent {
    /// The next message.
    Message(Message),
    /// Partitions given to this consumer; their messages follow.
    Assigned(Vec<Partition>),
    /// Partitions about to be taken away. Finish what you hold of them now (flush buffered
    /// writes, mark their [`Ack`](super::Ack)s done): the commit that hands them over is made
    /// when you ask for the next event, and includes what is done by then. Messages of these
    /// partitions not done by then go to their next owner again.
    Revoking(Vec<Partition>),
}

/// A partition of a topic.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Partition {
    pub topic: String,
    pub partition: i32,
}

impl std::fmt::Display for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]", self.topic, self.partition)
    }
}

fn partitions(list: &TopicPartitionList) -> Vec<Partition> {
    list.elements().iter().map(|e| Partition { topic: e.topic().to_owned(), partition: e.partition() }).collect()
}

/// The events waiting for the worker, and the revoke waiting for it to come back.
#[derive(Default)]
pub(crate) struct RebalanceEvents {
    /// Set while a stream worker takes events: only then are they kept, and revokes wait.
    wanted: AtomicBool,
    inner: Mutex<Inner>,
    /// Signalled when the worker came back after a revoke notice, or stopped taking events.
    came_back: Condvar,
}

#[derive(Default)]
struct Inner {
    pending: VecDeque<Pending>,
    /// A revoke notice was queued and the worker has not come back since.
    revoke_open: bool,
}

enum Pending {
    Assigned(Vec<Partition>),
    Revoking(Vec<Partition>),
}

impl RebalanceEvents {
    /// From the stream: events are wanted from now on.
    pub(crate) fn want(&self) {
        self.wanted.store(true, Ordering::Release);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// From the rebalance callback: partitions were assigned.
    pub(crate) fn assigned(&self, list: &TopicPartitionList) {
        if self.wanted.load(Ordering::Acquire) {
            self.lock().pending.push_back(Pending::Assigned(partitions(list)));
        }
    }

    /// From the rebalance callback, before the commit on revoke: tells the worker, then waits
    /// until it comes back for its next event (or stops taking them), at most `timeout`.
    /// Returns false when the wait timed out. `wake` wakes the worker's task.
    pub(crate) fn revoking(&self, list: &TopicPartitionList, timeout: Duration, wake: impl Fn()) -> bool {
        if !self.wanted.load(Ordering::Acquire) {
            return true;
        }
        let mut inner = self.lock();
        inner.pending.push_back(Pending::Revoking(partitions(list)));
        inner.revoke_open = true;
        wake();
        let deadline = Instant::now() + timeout;
        while inner.revoke_open && self.wanted.load(Ordering::Acquire) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                inner.revoke_open = false;
                return false;
            }
            inner = self.came_back.wait_timeout(inner, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        true
    }

    /// From the stream, when the worker asks for its next event: a revoke waiting for it
    /// goes on (after the stream stored what is done).
    pub(crate) fn worker_came_back(&self) {
        let mut inner = self.lock();
        if inner.revoke_open {
            inner.revoke_open = false;
            self.came_back.notify_all();
        }
    }

    /// From the stream: the next event for the worker, if one waits.
    pub(crate) fn take(&self) -> Option<StreamEvent> {
        let mut inner = self.lock();
        Some(match inner.pending.pop_front()? {
            Pending::Assigned(list) => StreamEvent::Assigned(list),
            Pending::Revoking(list) => StreamEvent::Revoking(list),
        })
    }

    /// From the stream, when it is dropped: nothing waits for the worker any more.
    pub(crate) fn stop(&self) {
        self.wanted.store(false, Ordering::Release);
        let mut inner = self.lock();
        inner.pending.clear();
        inner.revoke_open = false;
        self.came_back.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn list() -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        list.add_partition("t", 0);
        list
    }

    #[test]
    fn a_revoke_waits_for_the_worker_to_come_back_and_no_longer() {
        let events = Arc::new(RebalanceEvents::default());
        assert!(events.revoking(&list(), Duration::from_secs(60), || {}), "not wanted: no wait");
        assert!(events.take().is_none(), "not wanted: nothing kept");

        events.want();
        let callback = {
            let events = Arc::clone(&events);
            std::thread::spawn(move || events.revoking(&list(), Duration::from_secs(60), || {}))
        };
        let notice = loop {
            if let Some(event) = events.take() {
                break event;
            }
            std::thread::yield_now();
        };
        assert!(matches!(&notice, StreamEvent::Revoking(p) if p == &[Partition { topic: "t".into(), partition: 0 }]));
        assert!(!callback.is_finished(), "the commit must wait for the worker");
        events.worker_came_back();
        assert!(callback.join().unwrap(), "it went on once the worker came back, not at the timeout");
    }

    #[test]
    fn a_worker_that_does_not_come_back_delays_the_revoke_by_the_timeout_only() {
        let events = RebalanceEvents::default();
        events.want();
        let started = Instant::now();
        assert!(!events.revoking(&list(), Duration::from_millis(50), || {}));
        assert!(started.elapsed() >= Duration::from_millis(50));
        events.stop();
        assert!(events.revoking(&list(), Duration::from_secs(60), || {}), "stopped: no wait");
    }
}
