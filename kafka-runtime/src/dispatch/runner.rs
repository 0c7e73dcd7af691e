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
use crate::consume::prefetch;
use crate::consume::TopicStream;
use crate::error::{panic_message, Error};
use crate::worker::context::WorkerContext;
use crate::worker::handler::{Worker, WorkerStyle};
use crate::worker::state::WorkerState;

/// Everything needed to run one consumer of a worker.
pub(crate) struct ConsumerJob {
    pub(crate) worker: Arc<Worker>,
    /// The worker's name, with the group when the worker has several consumers.
    pub(crate) label: Arc<str>,
    pub(crate) client_config: ClientConfig,
    pub(crate) subscription: Vec<String>,
    pub(crate) brokers: Arc<str>,
    /// How long the brokers may stay unreachable before the consumer stops; `None`: forever.
    pub(crate) give_up_after: Option<Duration>,
    pub(crate) ctx: WorkerContext,
}

/// Runs every consumer until shutdown. With `stop_all`, the first failure stops the others;
/// without, they go on. All failures are returned together, once every consumer has ended.
pub(crate) async fn run_consumers(
    jobs: Vec<ConsumerJob>,
    shutdown: Shutdown,
    drain_timeout: Duration,
    stop_all: bool,
) -> Result<(), Error> {
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
        if shutdown.is_begun() || tasks.is_empty() {
            continue;
        }
        if stop_all {
            tracing::info!("stopping the other workers");
            shutdown.begin();
        } else {
            tracing::warn!(
                "the other workers go on (--stop-all-on-failure stops them); the process exits 1 when they end"
            );
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
    let state = WorkerState::register(job.ctx.name(), Arc::clone(&label), job.ctx.group().to_owned());
    let milliseconds = |key| job.client_config.get(key).and_then(|ms| ms.parse().ok()).map(Duration::from_millis);
    if let Some(interval) = milliseconds("max.poll.interval.ms") {
        state.set_max_poll_interval(interval);
    }
    if let Some(interval) = milliseconds("auto.commit.interval.ms") {
        state.set_commit_interval(interval);
    }
    let mut job = job;
    prefetch::size(&mut job.client_config, &job.subscription, &label).await;
    let mut context = WorkerConsumerContext::new(Arc::clone(&state), Arc::clone(&job.brokers), partitions);
    context.revoke_wait = drain_timeout;
    let consumer = SharedConsumer::subscribe(&job.client_config, context, &job.subscription)
        .map_err(|err| format!("worker `{label}`: cannot start its consumer: {err}"))?;
    tracing::info!(
        worker = &*label,
        "consumer started: group {}, subscribed to {}",
        job.ctx.group(),
        job.subscription.join(", ")
    );
    let stream = TopicStream::new(consumer.clone(), shutdown.clone(), Arc::clone(&state))
        .map_err(|reason| format!("worker `{label}`: cannot start its consumer: {reason}"))?;
    let work = (job.worker.run)(stream, job.ctx);
    let outcome = tokio::select! {
        outcome = work => outcome.map_err(|err| match (job.worker.style, state.last_handed_out()) {
            // A per-message failure names its message already.
            (WorkerStyle::Stream, Some(at)) => format!(
                "worker `{label}` failed at {at}: {err}; that message was not committed and will be delivered again"
            ),
            _ => format!("worker `{label}` failed: {err}"),
        }),
        _ = shutdown.deadline(drain_timeout) => Err(format!(
            "worker `{label}` did not finish its in-flight message within the drain timeout \
             ({} ms); that message was not committed and will be delivered again",
            drain_timeout.as_millis()
        )),
        unreachable_for = watch_reachability(&state, job.give_up_after) => Err(format!(
            "worker `{label}` gave up: {} for {} ms (kafka.consumer.give_up_after_ms or --give-up-after-ms); \
             check the address and that the brokers run and are reachable from here",
            state.unreachable().unwrap_or_else(|| format!("cannot reach the brokers {}", job.brokers)),
            unreachable_for.as_millis()
        )),
    };
    let outcome = match state.stop_reason() {
        Some(reason) => Err(format!("worker `{label}` stopped: {reason}")),
        None => outcome,
    };
    if outcome.is_ok() && !shutdown.is_begun() {
        tracing::info!(worker = &*label, "worker returned; closing its consumer");
    }
    match (outcome, commit_and_close(consumer, &label, &shutdown, drain_timeout).await) {
        (Err(reason), _) => Err(reason),
        (Ok(()), Ok(())) => {
            tracing::info!(worker = &*label, "consumer closed");
            Ok(())
        }
        (Ok(()), Err(reason)) => Err(reason),
    }
}

/// While the consumer runs: says every few seconds that its brokers still cannot be reached,
/// while they cannot, and resolves once that has lasted `limit` (never without a limit), with
/// how long it lasted.
async fn watch_reachability(state: &WorkerState, limit: Option<Duration>) -> Duration {
    let mut every_second = tokio::time::interval(Duration::from_secs(1));
    every_second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every_second.tick().await;
        let reachability = state.reachability();
        reachability.remind(state.label());
        match (reachability.down_for(), limit) {
            (Some(down), Some(limit)) if down >= limit => return down,
            _ => {}
        }
    }
}

/// How long a failed shutdown waits to learn the positions it names.
const POSITIONS_WAIT: Duration = Duration::from_millis(500);

/// Commits the stored offsets and closes the consumer on a blocking thread (both wait for the
/// broker), waiting for them at most `timeout`, and not at all once shutdown is aborted: a
/// broker that does not answer must not hold the process. Returns why the commit may not
/// have happened, naming what may be delivered again (learning that takes at most
/// [`POSITIONS_WAIT`] more).
async fn commit_and_close(
    consumer: SharedConsumer,
    label: &str,
    shutdown: &Shutdown,
    timeout: Duration,
) -> Result<(), String> {
    let (positions_tx, positions_rx) = tokio::sync::oneshot::channel();
    let finished = tokio::task::spawn_blocking(move || {
        // Where the worker got to, read before the commit can block.
        let _ = positions_tx.send(reached_positions(&consumer));
        let committed = commit_stored(&consumer, "at shutdown");
        consumer.close();
        committed
    });
    let why = tokio::select! {
        committed = finished => match committed {
            Ok(true) => return Ok(()),
            Ok(false) => "the final commit failed".to_owned(),
            Err(_) => "the final commit did not finish (its thread panicked)".to_owned(),
        },
        _ = tokio::time::sleep(timeout) => format!(
            "the final commit and close did not finish within the drain timeout ({} ms; is the broker \
             answering?); stopped waiting for them",
            timeout.as_millis()
        ),
        _ = shutdown.aborted() => "stopped at once before the final commit finished".to_owned(),
    };
    // The positions come from the client's own threads, which answer even while the broker
    // does not; a second signal may come before the blocking thread asked, so wait for them
    // briefly rather than report none.
    let positions =
        tokio::time::timeout(POSITIONS_WAIT, positions_rx).await.ok().and_then(Result::ok).unwrap_or_default();
    Err(if positions.is_empty() {
        format!("worker `{label}`: {why}; messages handled since the last commit may be delivered again")
    } else {
        format!(
            "worker `{label}`: {why}; messages handled since the last commit may be delivered again, up to \
             these positions: {}",
            positions.join(", ")
        )
    })
}

/// Each assigned partition with the offset after the last message handed out, as
/// `topic[partition] below offset N`. Blocks (it asks the client's threads).
fn reached_positions(consumer: &SharedConsumer) -> Vec<String> {
    use rdkafka::consumer::Consumer as _;
    let Ok(list) = consumer.position() else {
        return Vec::new();
    };
    list.elements()
        .iter()
        .filter_map(|element| match element.offset() {
            rdkafka::Offset::Offset(next) => {
                Some(format!("{}[{}] below offset {next}", element.topic(), element.partition()))
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use clap::Parser as _;
    use rdkafka::consumer::Consumer as _;

    use super::*;
    use crate::app::cli::Arguments;
    use crate::config::{Source, Sourced, WorkerConfig};
    use crate::consume::Message;
    use crate::test_support::{brokers, consumer_config, topic_with_messages, unique, within_a_minute};

    /// A stream worker's job on `topic`, as the app would build it.
    fn job(
        topic: &str,
        run: impl Fn(TopicStream) -> crate::worker::handler::WorkerFuture + Send + Sync + 'static,
    ) -> ConsumerJob {
        let group = unique("g");
        let config = WorkerConfig {
            name: "test".into(),
            rust_path: "kafka_runtime::tests::worker",
            style: WorkerStyle::Stream,
            group: Sourced::new(group.clone(), Source::Default),
            subscription: None,
            default_topics: Vec::new(),
            topic_prefix: Sourced::new(String::new(), Source::Default),
            client_settings: BTreeMap::new(),
            failure: crate::config::FailurePolicy::merge("test", &[]).unwrap(),
            batch: None,
            concurrency: crate::config::Concurrency::sequential(),
        };
        let arguments = Arguments::try_parse_from(["test", "list-workers"]).unwrap();
        let ctx = WorkerContext::new(
            Arc::new(config),
            group.clone(),
            vec![topic.to_owned()],
            Arc::new(arguments),
            Arc::new(serde_json::json!({})),
        );
        ConsumerJob {
            worker: Arc::new(Worker { style: WorkerStyle::Stream, run: Box::new(move |stream, _ctx| run(stream)) }),
            label: unique("worker").into(),
            client_config: consumer_config(&group),
            subscription: vec![topic.to_owned()],
            brokers: brokers().into(),
            give_up_after: None,
            ctx,
        }
    }

    /// A worker that keeps a message after it returns: the consumer still leaves its group
    /// when the runner says "consumer closed", not when that message is dropped.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_consumer_leaves_its_group_when_its_worker_ends_even_if_a_message_is_kept() {
        let topic = topic_with_messages("kept", 1).await;
        let kept: Arc<Mutex<Option<Message>>> = Arc::default();
        let keep = Arc::clone(&kept);
        let job = job(&topic, move |mut stream| {
            let keep = Arc::clone(&keep);
            Box::pin(async move {
                let message = stream.next().await.ok_or("no message")?;
                stream.ack();
                *keep.lock().unwrap() = Some(message);
                Ok(())
            })
        });
        let ran = run_consumer(job, Shutdown::new(), Duration::from_secs(30), PartitionQueues::default());
        within_a_minute(ran).await.expect("the worker ends cleanly");
        let message = kept.lock().unwrap().take().expect("the worker kept its message");
        assert_eq!(message.payload_str().unwrap(), "0");
        let consumer = message.consumer();
        assert_eq!(consumer.assignment().unwrap().count(), 0, "the consumer still holds its partitions");
        assert_eq!(consumer.subscription().unwrap().count(), 0, "the consumer is still subscribed");
        // Dropped here, on an async thread: the client is destroyed on a thread of its own.
        drop(message);
    }

    /// A partition whose queue cannot be split off would never be fetched: the worker stops
    /// with an error naming it instead of stalling.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_partition_that_cannot_get_its_queue_stops_the_worker() {
        unsafe fn no_queue(
            _client: *mut rdkafka_sys::rd_kafka_t,
            _topic: &std::ffi::CString,
            _partition: i32,
        ) -> *mut rdkafka_sys::rd_kafka_queue_t {
            std::ptr::null_mut()
        }
        let topic = topic_with_messages("no-queue", 3).await;
        let job = job(&topic, |mut stream| {
            Box::pin(async move {
                while stream.next().await.is_some() {}
                Ok(())
            })
        });
        let ran = run_consumer(job, Shutdown::new(), Duration::from_secs(30), PartitionQueues::with_split(no_queue));
        let err = within_a_minute(ran).await.expect_err("the worker must stop");
        assert!(err.contains(&format!("cannot read partition {topic}[0]")), "{err}");
    }
}
