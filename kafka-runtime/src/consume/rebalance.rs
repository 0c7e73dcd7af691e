//! What happens when the group moves partitions: stored offsets are committed before
//! partitions are given up (after a stream worker that takes events was told, see
//! `rebalance_events`), and new partitions get their own queues before fetching starts (and,
//! for workers whose messages finish out of order, their committed metadata is read, see
//! `completed`).
//! These callbacks run where the shared queue is served: on a blocking thread (see `fetch`),
//! never on an async one, since the commit waits for the broker.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};

use super::client::{commit_stored, WorkerConsumerContext};
use super::completed::Completed;

impl ConsumerContext for WorkerConsumerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        #[cfg(test)]
        self.rebalance_threads.lock().unwrap().push(std::thread::current().id());
        let label = self.state.label();
        match rebalance {
            Rebalance::Revoke(partitions) => {
                // Handlers run between polls of this queue, so every finished message is
                // already stored: commit them before another member takes the partitions over.
                tracing::info!(worker = label, "partitions revoked: {}", describe(partitions));
                self.state.set_joined(false);
                self.partitions.remove(partitions);
                for element in partitions.elements() {
                    self.completed.revoked(element.topic(), element.partition());
                }
                self.state.set_assigned(|assigned| {
                    assigned
                        .retain(|(t, p)| !partitions.elements().iter().any(|e| e.topic() == t && e.partition() == *p))
                });
                // A stream worker that takes events finishes what it holds of them first.
                if !self.rebalance_events.revoking(partitions, self.revoke_wait, || self.waker.wake()) {
                    tracing::warn!(
                        worker = label,
                        "the worker did not ask for its next event within {:?} of being told that \
                         partitions are being revoked; what it finished so far is committed",
                        self.revoke_wait
                    );
                }
                commit_stored(consumer, "on revoke");
            }
            Rebalance::Error(err) => tracing::warn!(worker = label, "rebalance error: {err}"),
            Rebalance::Assign(partitions) => {
                if self.completed.is_enabled() {
                    self.read_completed(consumer, partitions);
                }
                let client = consumer.client().native_ptr();
                if let Err(partition) = self.partitions.add(client, partitions, &self.waker) {
                    self.state.stop(format!(
                        "cannot read partition {partition}: librdkafka gave no queue for it, and it \
                         would stall; the worker stops (nothing was committed past what it handled)"
                    ));
                }
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            tracing::info!(worker = self.state.label(), "partitions assigned: {}", describe(partitions));
            self.state.count_assignment();
            self.state.set_joined(true);
            self.rebalance_events.assigned(partitions);
            self.state.set_assigned(|assigned| {
                for element in partitions.elements() {
                    let partition = (element.topic().to_owned(), element.partition());
                    if !assigned.contains(&partition) {
                        assigned.push(partition);
                    }
                }
            });
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(err) => tracing::warn!(
                worker = self.state.label(),
                "offset commit failed: {err}; it is retried with the next commit"
            ),
        }
    }
}

impl WorkerConsumerContext {
    /// Reads the committed offsets of partitions being assigned, with their metadata: the
    /// messages done above them are not handed to the worker again.
    fn read_completed(&self, consumer: &BaseConsumer<Self>, partitions: &TopicPartitionList) {
        let committed = match consumer.committed_offsets(partitions.clone(), COMMITTED_TIMEOUT) {
            Ok(committed) => committed,
            Err(err) => {
                tracing::warn!(
                    worker = self.state.label(),
                    "cannot read the committed offsets of {}: {err}; messages done above them before \
                     are handled again",
                    describe(partitions)
                );
                return;
            }
        };
        for element in committed.elements() {
            let completed = match (element.offset(), element.metadata()) {
                (Offset::Offset(offset), metadata) if !metadata.is_empty() => Completed::parse(metadata, offset),
                _ => None,
            };
            self.completed.assigned(element.topic(), element.partition(), completed);
        }
    }
}

/// How long an assignment waits for the committed offsets' metadata.
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(10);

fn describe(partitions: &TopicPartitionList) -> String {
    let mut list: Vec<String> =
        partitions.elements().iter().map(|p| format!("{}[{}]", p.topic(), p.partition())).collect();
    list.sort();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}
