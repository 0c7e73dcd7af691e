//! Prefetching is bounded: a worker with a slow handler and a large backlog holds a bounded
//! part of it in memory, whatever the partition count (the runtime's prefetch defaults).

use std::time::Duration;

use kafka_integration_tests::*;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use rdkafka::ClientConfig;

const BACKLOG: usize = 1_000_000;
const LIMIT_KIB: u64 = 200 * 1024;

/// Sends `BACKLOG` messages of 100 bytes, spread over the partitions.
fn fill(topic: &str, partitions: usize) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let payload = [b'x'; 100];
    for n in 0..BACKLOG {
        let partition = i32::try_from(n % partitions).unwrap();
        let mut record = BaseRecord::<(), [u8]>::to(topic).payload(&payload[..]).partition(partition);
        while let Err((_, back)) = producer.send(record) {
            record = back;
            producer.poll(Duration::from_millis(10));
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(120)).expect("flushed");
}

/// The peak resident memory of `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("a number of KiB")
}

async fn peak_with_backlog(partitions: usize) -> u64 {
    let topic = unique("memory");
    create_topics(&[&topic], i32::try_from(partitions).unwrap()).await;
    let filled = topic.clone();
    tokio::task::spawn_blocking(move || fill(&filled, partitions)).await.expect("fill task");
    let config = write_config(serde_json::json!({
        "handler_delay_ms": 10,
        "kafka": {
            "consumer_connection_settings": fast_settings(),
            "consumer": {"workers": [{"name": "it_slow", "group": unique("g"), "topics": [topic]}]}
        }
    }));
    let args = ["-c", config.to_str().unwrap(), "start-consumer", "--consumer-worker", "it_slow"];
    let mut worker = Process::spawn_with_env(Binary::TestWorkers, &args, &[("RUST_LOG", "warn")]);
    // By then every partition has been fetched (3,000 messages take at least 0.3 s at 64 in
    // flight): unbounded, the prefetch would have pulled most of the backlog (about 430 MiB).
    worker.wait_lines(3000, |l| l.starts_with("handled ")).await;
    let peak = peak_rss_kib(worker.child.id().expect("running"));
    worker.signal("KILL");
    peak
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_backlog_is_prefetched_only_in_part_whatever_the_partition_count() {
    for partitions in [3, 12, 100] {
        let peak = peak_with_backlog(partitions).await;
        println!("peak RSS with {partitions} partitions and a backlog of {BACKLOG}: {} MiB", peak / 1024);
        assert!(peak < LIMIT_KIB, "{partitions} partitions: peak RSS {} MiB, above 200 MiB", peak / 1024);
    }
}
