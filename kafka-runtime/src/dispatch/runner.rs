//! Runs consumers side by side until shutdown or the first failure, then drains, commits and
//! closes each one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use tokio::task::JoinSet;

use crate::app::shutdown::Shutdown;
use crate::consume::client::{commit_stored, SharedConsumer, WorkerConsumerContext};
use crate::consume::partitions::PartitionQueues;
use crate::consume::TopicStream;
use crate::error::{panic_message, Error};
use crate::worker::context::WorkerContext;
use crate::worker::handler::Worker;
use crate::worker::state::WorkerState;

/// Everything needed to run one consumer of a worker.
pub(crate) struct ConsumerJob {
    pub(crate) worker: Arc<Worker>,
    /// The worker's name, with the group when the worker has several consumers.
    pub(crate) label: Arc<str>,
    pub(crate) client_config: ClientConfig,
    pub(crate) subscription: Vec<String>,
    pub(crate) brokers: Arc<str>,
    pub(crate) ctx: WorkerContext,
}

/// Runs every consumer until shutdown. The first failure stops the others; all failures are
/// returned together.
pub(crate) async fn run_consumers(jobs: Vec<ConsumerJob>, shutdown: Shutdown, drain_timeout: Duration) -> Result<(), Error> {
    let mut tasks = JoinSet::new();
    let mut labels = HashMap::new();
    for job in jobs {
        let label = Arc::clone(&job.label);
        let handle = tasks.spawn(run_consumer(job, shutdown.clone(), drain_timeout, PartitionQueues::default()));
        labels.insert(handle.id(), label);
    }
    let mut failures = Vec::new();
    while let Some(joined) = tasks.join_next_with_id().await {
        let failure = match joined {
            Ok((_, Ok(()))) => continue,
            Ok((_, Err(reason))) => reason,
            Err(join_error) => {
                let label = labels.get(&join_error.id()).map(|l| &**l).unwrap_or("?");
                match join_error.try_into_panic() {
                    Ok(panic) => format!(
                        "worker `{label}` panicked: {}; its in-flight message was not committed",
                        panic_message(&*panic)
                    ),
                    Err(_) => format!("worker `{label}` was cancelled"),
                }
            }
        };
        tracing::error!("{failure}");
        failures.push(failure);
        if !shutdown.is_begun() {
            tracing::info!("stopping the other workers");
            shutdown.begin();
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::WorkersFailed(failures))
    }
}

/// One consumer from subscription to close. Returns the reason it failed.
pub(crate) async fn run_consumer(
    job: ConsumerJob,
    shutdown: Shutdown,
    drain_timeout: Duration,
    partitions: PartitionQueues,
) -> Result<(), String> {
    let label = Arc::clone(&job.label);
    let state = WorkerState::register(Arc::clone(&label), job.ctx.group().to_owned());
    let context = WorkerConsumerContext {
        state: Arc::clone(&state),
        brokers: Arc::clone(&job.brokers),
        partitions,
        waker: Arc::default(),
    };
    let consumer = SharedConsumer::subscribe(&job.client_config, context, &job.subscription)
        .map_err(|err| format!("worker `{label}`: cannot start its consumer: {err}"))?;
    tracing::info!(
        worker = &*label,
        "consumer started: group {}, subscribed to {}",
        job.ctx.group(),
        job.subscription.join(", ")
    );
    let stream = TopicStream::new(consumer.clone(), shutdown.clone(), Arc::clone(&state));
    let work = (job.worker.run)(stream, job.ctx);
    let outcome = tokio::select! {
        outcome = work => outcome.map_err(|err| format!("worker `{label}` failed: {err}")),
        _ = shutdown.deadline(drain_timeout) => Err(format!(
            "worker `{label}` did not finish its in-flight message within the drain timeout \
             ({} ms); that message was not committed and will be delivered again",
            drain_timeout.as_millis()
        )),
    };
    let outcome = match state.stop_reason() {
        Some(reason) => Err(format!("worker `{label}` stopped: {reason}")),
        None => outcome,
    };
    if outcome.is_ok() && !shutdown.is_begun() {
        tracing::info!(worker = &*label, "worker returned; closing its consumer");
    }
    // Commit and close off the async threads: both wait for the broker.
    let committed = tokio::task::spawn_blocking(move || {
        let committed = commit_stored(&consumer, "at shutdown");
        consumer.close();
        committed
    })
    .await
    .unwrap_or(false);
    match (outcome, committed) {
        (Err(reason), _) => Err(reason),
        (Ok(()), true) => {
            tracing::info!(worker = &*label, "consumer closed");
            Ok(())
        }
        (Ok(()), false) => Err(format!(
            "worker `{label}`: the final commit failed; messages handled since the last commit will be delivered again"
        )),
    }
}
