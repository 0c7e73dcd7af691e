//! What every handled message records: the span it runs in (worker, topic, partition,
//! offset; at debug level, target `kafka_message`), the app's hooks (`hooks`), and while
//! metrics are on its counts per topic, the handler's duration and the messages in flight.
//! Off (no hook, no metrics, the span not enabled by the log filter), a message costs one
//! check.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use tracing::Span;

use super::hooks::{self, MessageEvent, MessageHook};
use super::metrics;
use crate::consume::Message;
use crate::worker::error::WorkerError;
use crate::worker::state::{TopicStats, WorkerState};

/// One worker's observation of its messages, made when it starts.
pub(crate) struct Observer {
    state: Arc<WorkerState>,
    hooks: Vec<Arc<dyn MessageHook>>,
    /// The handler's duration, while metrics are on.
    duration: Option<prometheus::Histogram>,
    /// No hook and no metrics: only the span, if enabled, is left to make.
    quiet: bool,
}

impl Observer {
    pub(crate) fn new(state: Arc<WorkerState>) -> Self {
        let duration = metrics::get().map(|metrics| metrics.handler_duration(state.label()));
        let hooks = hooks::snapshot();
        let quiet = hooks.is_empty() && duration.is_none();
        Self { state, hooks, duration, quiet }
    }

    fn counting(&self) -> bool {
        self.duration.is_some()
    }

    /// What to record of `message`'s handling, or `None` when nothing is.
    #[inline]
    pub(crate) fn watch(&self, message: &Message) -> Option<Watch<'_>> {
        if self.quiet && !tracing::span_enabled!(target: "kafka_message", tracing::Level::DEBUG) {
            return None;
        }
        Some(self.watch_with(message))
    }

    #[cold]
    fn watch_with(&self, message: &Message) -> Watch<'_> {
        // At debug level: a span per message costs about as much as the rest of the
        // message's way (with the fmt subscriber it allocates), so it is there when asked for
        // (`RUST_LOG=info,kafka_message=debug`).
        let span = tracing::debug_span!(
            target: "kafka_message",
            "message",
            worker = self.state.label(),
            topic = message.topic(),
            partition = message.partition(),
            offset = message.offset()
        );
        let skip = !self.hooks.iter().all(|hook| hook.before(message));
        let stats = self.counting().then(|| self.state.topic(message.topic()));
        if self.counting() {
            self.state.add_in_flight(1);
        }
        Watch {
            observer: self,
            stats,
            partition: message.partition(),
            offset: message.offset(),
            timestamp: message.timestamp().to_millis().unwrap_or(-1),
            topic: (!self.hooks.is_empty()).then(|| message.topic().into()),
            started: Instant::now(),
            span,
            skip,
            finished: false,
        }
    }

    /// The handler's future for `message` (made by `call`), observed.
    #[inline]
    pub(crate) fn observe<'a, F>(&'a self, message: Message, call: impl FnOnce(Message) -> F) -> Observed<'a, F> {
        let watch = self.watch(&message);
        Observed { call: call(message), watch }
    }

    /// A try of a message failed and waits for the next one (under a failure policy).
    pub(crate) fn retried(&self, message: &Message) {
        if self.counting() {
            self.state.topic(message.topic()).retried.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A message went to the dead-letter topic.
    pub(crate) fn dead_lettered(&self, message: &Message) {
        if self.counting() {
            self.state.topic(message.topic()).dead_lettered.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A batch's messages, about to go to the handler; `None` while metrics are off.
    pub(crate) fn batch<'m>(&self, messages: impl Iterator<Item = &'m Message>) -> Option<BatchWatch> {
        self.duration.as_ref()?;
        let messages = messages
            .map(|m| {
                let stats = self.state.topic(m.topic());
                (stats, m.partition(), m.offset(), m.timestamp().to_millis().unwrap_or(-1))
            })
            .collect();
        Some(BatchWatch { messages, started: Instant::now() })
    }

    /// The handler returned for the batch: every message done, or failed (`failed`: all, or
    /// only the one at `Some(index)`).
    pub(crate) fn batch_finished(&self, watch: Option<BatchWatch>, failed: Option<Option<usize>>) {
        let (Some(watch), Some(duration)) = (watch, &self.duration) else { return };
        duration.observe(watch.started.elapsed().as_secs_f64());
        for (index, (stats, partition, offset, timestamp)) in watch.messages.iter().enumerate() {
            let done = match failed {
                None => true,
                Some(None) => false,
                Some(Some(at)) => at != index,
            };
            record(stats, done, *partition, *offset, *timestamp);
        }
    }
}

fn record(stats: &TopicStats, done: bool, partition: i32, offset: i64, timestamp: i64) {
    if done {
        stats.handled.fetch_add(1, Ordering::Relaxed);
        stats.last_partition.store(partition, Ordering::Relaxed);
        stats.last_offset.store(offset, Ordering::Relaxed);
        stats.last_timestamp.store(timestamp, Ordering::Relaxed);
    } else {
        stats.failed.fetch_add(1, Ordering::Relaxed);
    }
}

/// A batch on its way to the handler, while metrics are on.
pub(crate) struct BatchWatch {
    messages: Vec<(Arc<TopicStats>, i32, i64, i64)>,
    started: Instant,
}

/// What is recorded of one message's handling.
pub(crate) struct Watch<'a> {
    observer: &'a Observer,
    stats: Option<Arc<TopicStats>>,
    partition: i32,
    offset: i64,
    timestamp: i64,
    /// For the hooks.
    topic: Option<Box<str>>,
    started: Instant,
    span: Span,
    /// A hook said to skip the message.
    skip: bool,
    /// The handler returned (else it panicked, or was dropped unfinished: a failure).
    finished: bool,
}

impl Watch<'_> {
    fn finished(&mut self, outcome: &Result<(), WorkerError>) {
        self.finished = true;
        let elapsed = self.started.elapsed();
        let observer = self.observer;
        if let Some(stats) = &self.stats {
            record(stats, outcome.is_ok(), self.partition, self.offset, self.timestamp);
        }
        if let Some(duration) = &observer.duration {
            duration.observe(elapsed.as_secs_f64());
        }
        if let Some(topic) = &self.topic {
            let event = MessageEvent {
                worker: observer.state.label(),
                topic,
                partition: self.partition,
                offset: self.offset,
                elapsed,
                outcome: outcome.as_ref().map(|_| ()),
            };
            for hook in &observer.hooks {
                hook.after(&event);
            }
        }
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        if let Some(stats) = &self.stats {
            self.observer.state.add_in_flight(-1);
            if !self.finished && !self.skip {
                // A panic, or the shutdown's abort: it did not succeed.
                stats.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A handler's future, run inside its message's span and recorded when it finishes.
    pub(crate) struct Observed<'a, F> {
        #[pin]
        call: F,
        watch: Option<Watch<'a>>,
    }
}

impl<F: Future<Output = Result<(), WorkerError>>> Future for Observed<'_, F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(watch) = this.watch else { return this.call.poll(cx) };
        if watch.skip {
            return Poll::Ready(Ok(()));
        }
        let outcome = {
            let _entered = watch.span.enter();
            ready!(this.call.poll(cx))
        };
        watch.finished(&outcome);
        Poll::Ready(outcome)
    }
}
