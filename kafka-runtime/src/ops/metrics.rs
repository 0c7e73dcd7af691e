//! Prometheus metrics, in its text format (the `prometheus` crate's registry and encoder).
//! Counters live where they are counted (each worker's state, the producer's stats) and are
//! copied into the registry when it is scraped; only the handler's duration is a Prometheus
//! histogram observed as messages finish. Off until the HTTP server starts.

use std::sync::OnceLock;

use prometheus::{
    Encoder as _, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::produce::producer::producer;
use crate::worker::state::running_states;

/// librdkafka's statistics interval while metrics are on: how fresh the lag is.
pub(crate) const STATISTICS_INTERVAL_MS: &str = "5000";

pub(crate) struct Metrics {
    registry: Registry,
    handled: IntCounterVec,
    failed: IntCounterVec,
    retried: IntCounterVec,
    dead_lettered: IntCounterVec,
    duration: HistogramVec,
    in_flight: IntGaugeVec,
    lag: IntGaugeVec,
    rebalances: IntCounterVec,
    assigned: IntGaugeVec,
    fetched: IntCounterVec,
    produced: IntCounter,
    produce_failed: IntCounter,
    producer_queued: IntGauge,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The metrics, once on.
#[inline]
pub(crate) fn get() -> Option<&'static Metrics> {
    METRICS.get()
}

/// Turns the metrics on (before the workers start, so that they observe their handlers).
pub(crate) fn enable() -> &'static Metrics {
    METRICS.get_or_init(Metrics::new)
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric");
    registry.register(Box::new(metric.clone())).expect("registered once");
    metric
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid metric");
    registry.register(Box::new(metric.clone())).expect("registered once");
    metric
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        let worker_topic = &["worker", "topic"];
        let duration = HistogramVec::new(
            HistogramOpts::new("kafka_handler_duration_seconds", "How long the handler took, per message or batch")
                .buckets(vec![0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0]),
            &["worker"],
        )
        .expect("a valid metric");
        registry.register(Box::new(duration.clone())).expect("registered once");
        let produced = IntCounter::new("kafka_producer_delivered_total", "Messages the shared producer delivered")
            .expect("a valid metric");
        let produce_failed =
            IntCounter::new("kafka_producer_failed_total", "Messages the shared producer could not deliver")
                .expect("a valid metric");
        let producer_queued =
            IntGauge::new("kafka_producer_queued", "Messages the shared producer holds, not yet delivered")
                .expect("a valid metric");
        for metric in [&produced, &produce_failed] {
            registry.register(Box::new(metric.clone())).expect("registered once");
        }
        registry.register(Box::new(producer_queued.clone())).expect("registered once");
        Self {
            handled: counter_vec(
                r,
                "kafka_messages_handled_total",
                "Messages handled (the handler returned Ok)",
                worker_topic,
            ),
            failed: counter_vec(r, "kafka_messages_failed_total", "Tries of a message that failed", worker_topic),
            retried: counter_vec(r, "kafka_messages_retried_total", "Failed tries followed by another", worker_topic),
            dead_lettered: counter_vec(
                r,
                "kafka_messages_dead_lettered_total",
                "Messages sent to the dead-letter topic",
                worker_topic,
            ),
            in_flight: gauge_vec(r, "kafka_messages_in_flight", "Messages in a handler now", &["worker"]),
            lag: gauge_vec(
                r,
                "kafka_consumer_lag",
                "Messages behind the partition's end, from librdkafka's statistics",
                &["worker", "topic", "partition"],
            ),
            rebalances: counter_vec(r, "kafka_rebalances_total", "Assignments received from the group", &["worker"]),
            assigned: gauge_vec(r, "kafka_assigned_partitions", "Partitions assigned now", &["worker"]),
            fetched: counter_vec(
                r,
                "kafka_messages_fetched_total",
                "Messages taken off the worker's partition queues",
                &["worker"],
            ),
            duration,
            produced,
            produce_failed,
            producer_queued,
            registry,
        }
    }

    /// The duration histogram of one worker.
    pub(crate) fn handler_duration(&self, worker: &str) -> Histogram {
        self.duration.with_label_values(&[worker])
    }

    /// Every metric, now, in Prometheus's text format.
    pub(crate) fn render(&self) -> String {
        self.lag.reset();
        for state in running_states() {
            let worker = state.label();
            for topic in state.topics() {
                let labels = [worker, &*topic.topic];
                let load = |counter: &std::sync::atomic::AtomicU64| counter.load(std::sync::atomic::Ordering::Relaxed);
                catch_up(&self.handled.with_label_values(&labels), load(&topic.handled));
                catch_up(&self.failed.with_label_values(&labels), load(&topic.failed));
                catch_up(&self.retried.with_label_values(&labels), load(&topic.retried));
                catch_up(&self.dead_lettered.with_label_values(&labels), load(&topic.dead_lettered));
            }
            let status = state.status();
            catch_up(&self.rebalances.with_label_values(&[worker]), status.assignments);
            catch_up(&self.fetched.with_label_values(&[worker]), status.messages);
            self.assigned.with_label_values(&[worker]).set(i64::try_from(status.assigned.len()).unwrap_or(i64::MAX));
            self.in_flight.with_label_values(&[worker]).set(state.in_flight());
            for (topic, partition, lag) in state.lag() {
                self.lag.with_label_values(&[worker, &topic, &partition.to_string()]).set(lag);
            }
        }
        let stats = producer().stats();
        catch_up(&self.produced, stats.delivered);
        catch_up(&self.produce_failed, stats.failed);
        self.producer_queued.set(i64::try_from(producer().queued()).unwrap_or(i64::MAX));
        let mut text = Vec::new();
        if let Err(err) = TextEncoder::new().encode(&self.registry.gather(), &mut text) {
            tracing::warn!("cannot encode the metrics: {err}");
        }
        String::from_utf8(text).unwrap_or_default()
    }
}

/// Brings a Prometheus counter up to a count kept elsewhere.
fn catch_up(counter: &IntCounter, count: u64) {
    let behind = count.saturating_sub(counter.get());
    if behind > 0 {
        counter.inc_by(behind);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_valid_and_rendered() {
        // The names and labels are fixed: a bad one fails here, not in a running app.
        let metrics = Metrics::new();
        metrics.handler_duration("w").observe(0.002);
        let text = metrics.render();
        for name in [
            "kafka_handler_duration_seconds_bucket{worker=\"w\",le=\"0.005\"} 1",
            "# TYPE kafka_producer_delivered_total counter",
            "# TYPE kafka_producer_queued gauge",
        ] {
            assert!(text.contains(name), "{name} missing in:\n{text}");
        }
    }
}
