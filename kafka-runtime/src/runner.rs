//! Runs consumers side by side until shutdown or the first failure, then drains, commits
//! and closes each one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use tokio::task::JoinSet;

use crate::consumer::{commit_stored, subscribe, WorkerConsumerContext};
use crate::context::WorkerContext;
use crate::error::{panic_message, Error};
use crate::handler::Worker;
use crate::shutdown::Shutdown;
use crate::stream::TopicStream;

/// One consumer to run: a worker, its client settings and what it subscribes to.
pub(crate) struct PlannedConsumer {
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
pub(crate) async fn run_consumers(
    consumers: Vec<PlannedConsumer>,
    shutdown: Shutdown,
    drain_timeout: Duration,
) -> Result<(), Error> {
    let mut tasks = JoinSet::new();
    let mut labels = HashMap::new();
    for consumer in consumers {
        let label = Arc::clone(&consumer.label);
        let handle = tasks.spawn(run_consumer(consumer, shutdown.clone(), drain_timeout));
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
async fn run_consumer(planned: PlannedConsumer, shutdown: Shutdown, drain_timeout: Duration) -> Result<(), String> {
    let label = Arc::clone(&planned.label);
    let context = WorkerConsumerContext::new(Arc::clone(&label), Arc::clone(&planned.brokers));
    let consumer = subscribe(&planned.client_config, context, &planned.subscription)
        .map_err(|err| format!("worker `{label}`: cannot start its consumer: {err}"))?;
    let consumer = Arc::new(consumer);
    tracing::info!(
        worker = &*label,
        "consumer started: group {}, subscribed to {}",
        planned.ctx.group(),
        planned.subscription.join(", ")
    );
    let fatal = Arc::new(Mutex::new(None));
    let stream = TopicStream::new(Arc::clone(&consumer), shutdown.clone(), Arc::clone(&fatal), Arc::clone(&label));
    let work = (planned.worker.run)(stream, planned.ctx);
    let outcome = tokio::select! {
        outcome = work => outcome.map_err(|err| format!("worker `{label}` failed: {err}")),
        _ = shutdown.deadline(drain_timeout) => Err(format!(
            "worker `{label}` did not finish its in-flight message within the drain timeout \
             ({} ms); that message was not committed and will be delivered again",
            drain_timeout.as_millis()
        )),
    };
    let outcome = match fatal.lock().unwrap_or_else(|e| e.into_inner()).take() {
        Some(reason) => Err(format!("worker `{label}` stopped: {reason}")),
        None => outcome,
    };
    if outcome.is_ok() && !shutdown.is_begun() {
        tracing::info!(worker = &*label, "worker returned; closing its consumer");
    }
    // Commit and close off the async threads: both wait for the broker.
    let closing = Arc::clone(&label);
    let committed = tokio::task::spawn_blocking(move || {
        let committed = commit_stored(&*consumer, &closing, "at shutdown");
        drop(consumer);
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
