//! A worker's consumer: the rdkafka client, created and subscribed from merged settings, shared
//! by the fetcher and the messages it hands out, committed and closed off the async threads.

use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::task::AtomicWaker;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::completed::CompletedOffsets;
use super::partitions::PartitionQueues;
use super::rebalance_events::RebalanceEvents;
use crate::reachability::{connection_problem, failed_attempts_in_log};
use crate::worker::state::WorkerState;

/// The rdkafka consumer every worker runs on. A `BaseConsumer`: the worker reads its
/// partitions' queues itself and serves the shared queue (rebalances, errors) on a blocking
/// thread, so nothing that waits for the broker runs on an async thread.
pub(crate) type WorkerConsumer = BaseConsumer<WorkerConsumerContext>;

/// Logs what the client reports, naming the worker; commits stored offsets before partitions
/// are taken away and gives every assigned partition its own queue (see `rebalance`).
pub(crate) struct WorkerConsumerContext {
    pub(crate) state: Arc<WorkerState>,
    pub(crate) brokers: Arc<str>,
    pub(crate) partitions: PartitionQueues,
    /// Wakes the worker's task when its shared queue or a partition queue turns non-empty.
    pub(crate) waker: Arc<AtomicWaker>,
    /// Set when the shared queue turns non-empty (and at the start), cleared before it is
    /// served: one atomic load per message tells the fetcher whether to serve it, where
    /// asking librdkafka for the queue's length takes a lock.
    pub(crate) shared_events: Arc<AtomicBool>,
    /// The done offsets above the committed ones, read at assignment (see `completed`).
    pub(crate) completed: Arc<CompletedOffsets>,
    /// Rebalances told to a stream worker that asks for them (see `rebalance_events`).
    pub(crate) rebalance_events: Arc<RebalanceEvents>,
    /// How long the commit on revoke waits for such a worker to come back.
    pub(crate) revoke_wait: Duration,
    /// The threads the rebalance callbacks ran on, for tests to check they never run on an
    /// async thread.
    #[cfg(test)]
    pub(crate) rebalance_threads: std::sync::Mutex<Vec<std::thread::ThreadId>>,
}

impl WorkerConsumerContext {
    pub(crate) fn new(state: Arc<WorkerState>, brokers: Arc<str>, partitions: PartitionQueues) -> Self {
        Self {
            state,
            brokers,
            partitions,
            waker: Arc::default(),
            shared_events: Arc::new(AtomicBool::new(true)),
            completed: Arc::default(),
            rebalance_events: Arc::default(),
            revoke_wait: Duration::from_secs(30),
            #[cfg(test)]
            rebalance_threads: Default::default(),
        }
    }
}

impl ClientContext for WorkerConsumerContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let label = self.state.label();
        match failed_attempts_in_log(level, facility, message) {
            Some(attempts) => self.state.reachability().failed(label, &self.brokers, message, attempts),
            None => crate::logging::librdkafka(label, level, facility, message),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let label = self.state.label();
        if let Some(problem) = connection_problem(&error, reason) {
            self.state.reachability().failed(label, &self.brokers, &problem, 0);
        } else {
            crate::logging::client_error(label, &error, reason);
        }
    }

    /// librdkafka's statistics (every `statistics.interval.ms`, set while metrics are on):
    /// the lag of each assigned partition, and whether a broker answers again.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let mut lag: Vec<(String, i32, i64)> = statistics
            .topics
            .iter()
            .flat_map(|(topic, stats)| {
                stats
                    .partitions
                    .values()
                    .filter(|p| p.partition >= 0 && p.consumer_lag >= 0)
                    .map(move |p| (topic.clone(), p.partition, p.consumer_lag))
            })
            .collect();
        lag.sort();
        self.state.set_lag(lag);
        if statistics.brokers.values().any(|broker| broker.nodeid >= 0 && broker.state == "UP") {
            self.state.reached();
        }
    }
}

/// A worker's consumer, shared by its fetcher and the messages handed out (a message must not
/// outlive the client it points into). Whoever drops the last handle destroys the client; when
/// that is an async thread, the destruction moves to a thread of its own.
#[derive(Clone)]
pub(crate) struct SharedConsumer(Arc<OwnedConsumer>);

struct OwnedConsumer(ManuallyDrop<WorkerConsumer>);

impl Deref for SharedConsumer {
    type Target = WorkerConsumer;

    fn deref(&self) -> &WorkerConsumer {
        &self.0 .0
    }
}

impl Drop for OwnedConsumer {
    fn drop(&mut self) {
        // SAFETY: taken once, here, and never used again.
        let consumer = unsafe { ManuallyDrop::take(&mut self.0) };
        // Destroying a client joins librdkafka's threads (and closes the consumer if it was
        // not closed yet): never on a thread that runs async tasks.
        if tokio::runtime::Handle::try_current().is_ok() {
            let label = consumer.context().state.label().to_owned();
            let destroy = std::thread::Builder::new().name("kafka-consumer-drop".into()).spawn(move || drop(consumer));
            if let Err(err) = destroy {
                tracing::warn!(worker = label, "cannot start a thread to destroy the consumer: {err}");
            }
        }
    }
}

impl SharedConsumer {
    /// Creates a consumer from merged client settings and subscribes it.
    pub(crate) fn subscribe(
        config: &ClientConfig,
        context: WorkerConsumerContext,
        subscription: &[String],
    ) -> Result<Self, KafkaError> {
        let (waker, events) = (Arc::clone(&context.waker), Arc::clone(&context.shared_events));
        let mut consumer: WorkerConsumer = config.create_with_context(context)?;
        consumer.set_nonempty_callback(move || {
            events.store(true, Ordering::Release);
            waker.wake();
        });
        let topics: Vec<&str> = subscription.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        Ok(Self(Arc::new(OwnedConsumer(ManuallyDrop::new(consumer)))))
    }

    /// Leaves the group and, unless messages the worker kept still hold the client, destroys
    /// it, all here. Blocks: call it on a blocking thread.
    pub(crate) fn close(self) {
        match Arc::try_unwrap(self.0) {
            Ok(owned) => {
                let mut owned = ManuallyDrop::new(owned);
                // SAFETY: taken once; the shell is never dropped, so `OwnedConsumer::drop`
                // does not take it again. Dropping the consumer closes it, here.
                drop(unsafe { ManuallyDrop::take(&mut owned.0) });
            }
            Err(shared) => {
                let label = shared.0.context().state.label().to_owned();
                tracing::warn!(
                    worker = label,
                    "{} handles to the consumer are still held after the worker ended (messages it \
                     kept, or a rebalance being served); it leaves the group now, and its client is \
                     freed when they are dropped",
                    Arc::strong_count(&shared) - 1
                );
                // Leaving the subscription gives the partitions back (the revoke, with its
                // commit, is served here); the client itself closes when the last handle goes.
                // (Closing it now would make that later drop close it a second time.)
                shared.0.unsubscribe();
                let deadline = std::time::Instant::now() + LEAVE_TIMEOUT;
                while shared.0.assignment().is_ok_and(|assigned| assigned.count() > 0) {
                    if std::time::Instant::now() > deadline {
                        tracing::warn!(worker = label, "the group did not take the partitions back in time");
                        break;
                    }
                    shared.0.poll(Duration::from_millis(100));
                }
            }
        }
    }
}

/// How long a consumer whose client is still held waits for the group to take its
/// partitions back.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(30);

/// Commits the stored offsets synchronously (it blocks: never on an async thread). Nothing to
/// commit is not an error.
pub(crate) fn commit_stored(consumer: &WorkerConsumer, when: &str) -> bool {
    let label = consumer.context().state.label();
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => {
            tracing::debug!(worker = label, "committed stored offsets {when}");
            true
        }
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => true,
        Err(err) => {
            tracing::error!(
                worker = label,
                "could not commit offsets {when}: {err}; messages after the last commit will be redelivered"
            );
            false
        }
    }
}
