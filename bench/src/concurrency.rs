//! Slow handlers: a handler that waits 1 ms (a `tokio::time::sleep`, standing in for a call
//! to another service) on 12 partitions with 1,000 distinct keys, run one message at a time,
//! partitions in parallel, and keys in parallel. tokio's timer rounds a 1 ms sleep up, so the
//! handler measures its real wait W in the same run, and each ideal is computed from it:
//! `slots / W`, where `slots` is how many messages can wait at once (1, 12, 256).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use kafka_runtime::prelude::*;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use rdkafka::ClientConfig;
use serde_json::{json, Value};

use crate::probe;
use crate::variants::{self, Consume};

pub const PARTITIONS: i32 = 12;
const KEYS: u64 = 1000;
const HANDLER_WAIT: Duration = Duration::from_millis(1);

static WAITED_NS: AtomicU64 = AtomicU64::new(0);
static WAITS: AtomicU64 = AtomicU64::new(0);

/// The slow handler: waits about 1 ms, records how long it really waited, then the message.
#[kafka_worker(name = "bench_slow")]
async fn slow(msg: Message) -> Result<(), WorkerError> {
    let started = Instant::now();
    tokio::time::sleep(HANDLER_WAIT).await;
    WAITED_NS.fetch_add(started.elapsed().as_nanos() as u64, Relaxed);
    WAITS.fetch_add(1, Relaxed);
    probe::record(msg.payload());
    Ok(())
}

struct Case {
    key: &'static str,
    label: &'static str,
    ordering: &'static str,
    max_in_flight: usize,
    /// How many handler waits can overlap at most: the ideal is `slots / W`.
    slots: f64,
    messages: u64,
    smoke_messages: u64,
    /// The target, as a ratio of the ideal or in msg/s.
    target: Target,
}

enum Target {
    None,
    OfIdeal(f64),
    MsgPerSec(f64),
}

const CASES: [Case; 3] = [
    Case {
        key: "sequential",
        label: "max_in_flight = 1 (the old behaviour)",
        ordering: "partition",
        max_in_flight: 1,
        slots: 1.0,
        messages: 1_500,
        smoke_messages: 200,
        target: Target::None,
    },
    Case {
        key: "partition",
        label: "ordering = partition (default, max 64)",
        ordering: "partition",
        max_in_flight: 64,
        slots: PARTITIONS as f64,
        messages: 20_000,
        smoke_messages: 1_000,
        target: Target::OfIdeal(0.9),
    },
    Case {
        key: "key",
        label: "ordering = key, max_in_flight = 256",
        ordering: "key",
        max_in_flight: 256,
        slots: 256.0,
        messages: 300_000,
        smoke_messages: 10_000,
        target: Target::MsgPerSec(60_000.0),
    },
];

/// Runs every case once on a fresh topic; returns the table and the JSON.
pub async fn run(brokers: &str, smoke: bool, config: &Path) -> Result<(String, Value), String> {
    let topic = crate::unique("bench-slow-100b");
    crate::broker::create_topic_with(brokers, &topic, PARTITIONS).await?;
    let most = CASES.iter().map(|c| if smoke { c.smoke_messages } else { c.messages }).max().unwrap_or(0);
    let (b, t) = (brokers.to_owned(), topic.clone());
    tokio::task::spawn_blocking(move || produce_keyed(&b, &t, most)).await.map_err(|e| e.to_string())??;

    let mut table = String::new();
    let _ = writeln!(
        table,
        "\nSLOW HANDLER: the handler waits 1 ms (tokio::time::sleep); {PARTITIONS} partitions, {KEYS} keys, 100 B; \
         W = the handler's measured wait;\nideal = slots / W (slots: 1, {PARTITIONS}, 256); 'cpu/msg' = CPU time of \
         the whole process per message in the steady-state window"
    );
    let _ = writeln!(
        table,
        "{:<42} {:>9} {:>11} {:>8} {:>11} {:>9} {:>9}  target",
        "variant", "msgs", "msg/s", "W (ms)", "ideal", "x ideal", "cpu/msg"
    );
    let mut results = serde_json::Map::new();
    for case in &CASES {
        let messages = if smoke { case.smoke_messages } else { case.messages };
        WAITED_NS.store(0, Relaxed);
        WAITS.store(0, Relaxed);
        probe::reset_throughput(messages, (messages / 10, messages * 9 / 10));
        let group = crate::unique(&format!("g-slow-{}", case.key));
        let max = case.max_in_flight.to_string();
        let args = ["--ordering", case.ordering, "--max-in-flight", &max];
        let consume = Consume {
            brokers,
            topic: &topic,
            group: &group,
            config,
            extra: &[],
            worker_args: &args,
            timeout: Duration::from_secs(300),
        };
        variants::framework("bench_slow", &consume).await?;
        let measured = probe::measured();
        let wait = WAITED_NS.load(Relaxed) as f64 / WAITS.load(Relaxed).max(1) as f64 / 1e9;
        let ideal = case.slots / wait;
        let rate = measured.msgs_per_sec();
        let cpu_us = measured
            .client_cores
            .map(|cores| cores * measured.window_seconds / measured.window_messages.max(1) as f64 * 1e6);
        let (target, met) = match case.target {
            Target::None => ("-".to_owned(), None),
            Target::OfIdeal(share) => (format!(">= {share} x ideal"), Some(rate / ideal >= share)),
            Target::MsgPerSec(min) => (format!(">= {min:.0} msg/s"), Some(rate >= min)),
        };
        let mark = match (smoke, met) {
            (true, Some(_)) => " (smoke: not evaluated)",
            (false, Some(true)) => " MET",
            (false, Some(false)) => " MISSED",
            _ => "",
        };
        let _ = writeln!(
            table,
            "{:<42} {:>9} {:>11.0} {:>8.3} {:>11.0} {:>9.3} {:>7}  {target}{mark}",
            case.label,
            messages,
            rate,
            wait * 1e3,
            ideal,
            rate / ideal,
            cpu_us.map_or("-".into(), |us| format!("{us:.1} us")),
        );
        crate::log(format!(
            "slow handler {:<11} {rate:>9.0} msg/s  W {:.3} ms  ideal {ideal:.0}  x ideal {:.3}",
            case.key,
            wait * 1e3,
            rate / ideal
        ));
        results.insert(
            case.key.into(),
            json!({"ordering": case.ordering, "max_in_flight": case.max_in_flight, "messages": messages,
                   "msgs_per_sec": rate, "handler_wait_ms": wait * 1e3, "ideal_msgs_per_sec": ideal,
                   "ratio_to_ideal": rate / ideal, "cpu_us_per_msg": cpu_us, "target": target,
                   "met": if smoke { Value::Null } else { json!(met) }, "measured": measured.to_json()}),
        );
    }
    crate::broker::delete_topic(brokers, &topic).await;
    Ok((table, Value::Object(results)))
}

/// `count` messages of 100 B, keyed `k0` to `k999` in turn (the default partitioner spreads
/// the keys over the partitions).
fn produce_keyed(brokers: &str, topic: &str, count: u64) -> Result<(), String> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .map_err(|e| format!("producer: {e}"))?;
    let payload = vec![b'x'; 100];
    for i in 0..count {
        let key = format!("k{}", i % KEYS);
        loop {
            match producer.send(BaseRecord::to(topic).key(&key).payload(&payload)) {
                Ok(()) => break,
                Err((err, _)) if err.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) => {
                    producer.poll(Duration::from_millis(10));
                }
                Err((err, _)) => return Err(format!("produce: {err}")),
            }
        }
    }
    producer.flush(Duration::from_secs(60)).map_err(|e| format!("flush: {e}"))
}
