//! With `ordering = key`, messages of one partition finish out of order; the ones done above
//! the committed offset go in the commit's metadata and are not handled again after a crash.
//! Tansu does not keep commit metadata, so this test runs against librdkafka's mock cluster,
//! in a process of its own that outlives the worker killed with SIGKILL.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kafka_integration_tests::*;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const MESSAGES: usize = 3000;

/// `handled TOPIC PARTITION OFFSET PAYLOAD` lines, as offsets.
fn handled_offsets(lines: &[String]) -> Vec<i64> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("handled "))
        .map(|rest| rest.split(' ').nth(2).unwrap().parse().unwrap())
        .collect()
}

fn fill(bootstrap: &str, topic: &str) {
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("producer");
    for n in 0..MESSAGES {
        let (key, payload) = (format!("k{}", n % 40), format!("id{n}"));
        let mut record = BaseRecord::to(topic).key(&key).payload(&payload).partition(0);
        while let Err((_, back)) = producer.send(record) {
            record = back;
            producer.poll(Duration::from_millis(10));
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flushed");
}

/// The group's committed offset of partition 0, and its metadata.
fn committed_with_metadata(bootstrap: &str, group: &str, topic: &str) -> (i64, String) {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", group).create().expect("consumer");
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, 0);
    let committed = consumer.committed_offsets(list, Duration::from_secs(10)).expect("committed offsets");
    let element = committed.find_partition(topic, 0).expect("partition 0");
    let Offset::Offset(offset) = element.offset() else { panic!("nothing committed: {:?}", element.offset()) };
    (offset, element.metadata().to_owned())
}

/// What a SIGKILL and a restart cost with `ordering`.
struct Ledger {
    /// Messages handled more than once, all runs together.
    duplicates: usize,
    /// What a restart would have handled again without the metadata: every message handled
    /// before the kill at or after the committed offset.
    without: usize,
    metadata: String,
}

/// Kills a worker with SIGKILL after 1,000 messages, restarts it and waits until every
/// message was handled; every message handled at least once is checked here.
async fn ledger_across_sigkill(ordering: &str) -> Ledger {
    let (topic, group) = (unique("completed"), unique("g"));
    let mut broker = Process::spawn(Binary::MockBroker, &[&format!("{topic}:1")]);
    let bootstrap = broker.wait_lines(1, |l| l.starts_with("bootstrap ")).await[0]["bootstrap ".len()..].to_owned();
    let filled = (bootstrap.clone(), topic.clone());
    tokio::task::spawn_blocking(move || fill(&filled.0, &filled.1)).await.expect("fill task");
    let mut settings = fast_settings();
    // The mock cluster answers an empty fetch only after `fetch.wait.max.ms`.
    settings["fetch.wait.max.ms"] = 10.into();
    settings["auto.commit.interval.ms"] = 100.into();
    let config = write_config(serde_json::json!({
        "handler_delay_ms": 5,
        "kafka": {
            "consumer_connection_settings": settings,
            "consumer": {"workers": [{"name": "it_uneven", "group": group, "topics": [topic],
                                      "ordering": ordering, "max_in_flight": 64}]}
        }
    }));
    let args = ["-c", config.to_str().unwrap(), "start-consumer", "--consumer-worker", "it_uneven"];
    let env = [("KAFKA_BROKERS", bootstrap.as_str())];

    let mut first = Process::spawn_with_env(Binary::TestWorkers, &args, &env);
    first.wait_lines(1000, |l| l.starts_with("handled ")).await;
    first.signal("KILL");
    assert_eq!(first.wait_exit().await, None, "killed by a signal");
    let before = handled_offsets(&first.lines);

    let (committed, metadata) = {
        let (bootstrap, group, topic) = (bootstrap.clone(), group.clone(), topic.clone());
        tokio::task::spawn_blocking(move || committed_with_metadata(&bootstrap, &group, &topic)).await.unwrap()
    };
    let without = before.iter().filter(|&&offset| offset >= committed).count();

    let mut second = Process::spawn_with_env(Binary::TestWorkers, &args, &env);
    let all: BTreeSet<i64> = (0..MESSAGES as i64).collect();
    loop {
        let seen: BTreeSet<i64> = before.iter().chain(&handled_offsets(&second.lines)).copied().collect();
        if seen == all {
            break;
        }
        let have = second.lines.len();
        second.wait_lines(have + 1, |_| true).await;
    }
    second.signal("TERM");
    assert_eq!(second.wait_exit().await, Some(0));
    broker.signal("KILL");
    let mut times: BTreeMap<i64, usize> = BTreeMap::new();
    for offset in before.iter().chain(&handled_offsets(&second.lines)) {
        *times.entry(*offset).or_default() += 1;
    }
    assert_eq!(times.len(), MESSAGES, "every message handled");
    let duplicates = times.values().map(|n| n - 1).sum();
    println!(
        "ledger, ordering = {ordering}: {} handled before SIGKILL, committed offset {committed}; handled again \
         after the restart: {duplicates} ({without} without the completed offsets)",
        before.len()
    );
    Ledger { duplicates, without, metadata }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_key_ordering_offsets_done_above_the_commit_are_not_handled_again_after_sigkill() {
    let ledger = ledger_across_sigkill("key").await;
    assert!(ledger.metadata.starts_with("kw1:"), "the commit carries the done offsets: {:?}", ledger.metadata);
    assert!(ledger.duplicates < ledger.without, "the metadata saved nothing: {} duplicates", ledger.duplicates);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_no_ordering_offsets_done_above_the_commit_are_not_handled_again_after_sigkill() {
    let ledger = ledger_across_sigkill("none").await;
    assert!(ledger.metadata.starts_with("kw1:"), "the commit carries the done offsets: {:?}", ledger.metadata);
    assert!(ledger.duplicates < ledger.without, "the metadata saved nothing: {} duplicates", ledger.duplicates);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_partition_ordering_nothing_is_done_above_the_commit_and_every_message_survives_sigkill() {
    // One partition in order: nothing is ever done above the first unfinished message.
    let ledger = ledger_across_sigkill("partition").await;
    assert_eq!(ledger.metadata, "", "nothing to carry");
    assert!(ledger.duplicates <= ledger.without);
}
