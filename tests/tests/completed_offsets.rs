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

/// Sends `MESSAGES` messages over 40 keys to partition 0; the first one's payload is `first`
/// when given.
fn fill(bootstrap: &str, topic: &str, first: Option<&str>) {
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("producer");
    for n in 0..MESSAGES {
        let (key, mut payload) = (format!("k{}", n % 40), format!("id{n}"));
        if let (0, Some(first)) = (n, first) {
            payload = first.to_owned();
        }
        let mut record = BaseRecord::to(topic).key(&key).payload(&payload).partition(0);
        while let Err((_, back)) = producer.send(record) {
            record = back;
            producer.poll(Duration::from_millis(10));
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flushed");
}

/// The group's committed offset of partition 0 (`None` before the first commit), and its
/// metadata.
fn committed_with_metadata(bootstrap: &str, group: &str, topic: &str) -> (Option<i64>, String) {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", group).create().expect("consumer");
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, 0);
    let committed = consumer.committed_offsets(list, Duration::from_secs(10)).expect("committed offsets");
    let element = committed.find_partition(topic, 0).expect("partition 0");
    let offset = match element.offset() {
        Offset::Offset(offset) => Some(offset),
        _ => None,
    };
    (offset, element.metadata().to_owned())
}

/// The offsets a commit's metadata names as done (`kw1:<base>:<not done>,<done>,...`): an
/// independent reading of the format the runtime writes.
fn done_offsets(metadata: &str, committed: i64) -> BTreeSet<i64> {
    let Some(rest) = metadata.strip_prefix("kw1:") else { return BTreeSet::new() };
    let (base, runs) = rest.split_once(':').expect("base:runs");
    assert_eq!(base.parse::<i64>().unwrap(), committed, "metadata for the committed offset");
    let runs: Vec<i64> = runs.split(',').map(|n| n.parse().unwrap()).collect();
    let mut next = committed;
    let mut done = BTreeSet::new();
    for pair in runs.chunks(2) {
        next += pair[0];
        done.extend(next..next + pair[1]);
        next += pair[1];
    }
    done
}

/// The workers' `max_in_flight` in the ledger runs.
const MAX_IN_FLIGHT: usize = 64;

/// Kills a worker with SIGKILL after 1,000 messages, restarts it and waits until every
/// message was handled. Checks that every message was handled at least once, that the
/// restart skipped exactly the offsets the commit's metadata names and repeated exactly the
/// others done past the commit, and that fewer than `max_in_flight` repeated; prints how many
/// repeated, and how many would have without the metadata. Returns the metadata.
///
/// What repeats is what finished after the last commit, so the bound holds while a commit
/// interval (5 ms here) is shorter than the handler (`handler_ms`): fewer than
/// `max_in_flight` messages can finish in it.
///
/// `ordering`: of the per-message worker `it_uneven`; `None` runs the stream worker
/// `it_uneven_stream` instead, whose tasks acknowledge out of order (64 at once).
async fn ledger_across_sigkill(ordering: Option<&str>, handler_ms: u64) -> String {
    let (topic, group) = (unique("completed"), unique("g"));
    let mut broker = Process::spawn(Binary::MockBroker, &[&format!("{topic}:1")]);
    let bootstrap = broker.wait_lines(1, |l| l.starts_with("bootstrap ")).await[0]["bootstrap ".len()..].to_owned();
    let filled = (bootstrap.clone(), topic.clone());
    tokio::task::spawn_blocking(move || fill(&filled.0, &filled.1, None)).await.expect("fill task");
    let mut settings = fast_settings();
    // The mock cluster answers an empty fetch only after `fetch.wait.max.ms`.
    settings["fetch.wait.max.ms"] = 10.into();
    settings["auto.commit.interval.ms"] = 5.into();
    let config = write_config(serde_json::json!({
        "handler_delay_ms": handler_ms,
        "kafka": {
            "consumer_connection_settings": settings,
            "consumer": {"workers": [worker_entry(ordering, &group, &topic)]}
        }
    }));
    let worker = if ordering.is_some() { "it_uneven" } else { "it_uneven_stream" };
    let args = ["-c", config.to_str().unwrap(), "start-consumer", "--consumer-worker", worker];
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
    let committed = committed.expect("a commit before the kill");
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
    let duplicates: usize = times.values().map(|n| n - 1).sum();
    // Exactly what the commit did not cover was handled again: the restart skipped every
    // offset its metadata names, and nothing else.
    let skipped = done_offsets(&metadata, committed);
    let again: BTreeSet<i64> = handled_offsets(&second.lines).into_iter().collect();
    assert!(again.is_disjoint(&skipped), "handled again although the commit named it done");
    let expected = before.iter().filter(|o| **o >= committed && !skipped.contains(o)).count();
    assert_eq!(duplicates, expected, "repeated: exactly the ones done after the commit");
    assert!(duplicates < MAX_IN_FLIGHT, "{duplicates} repeated: not below max_in_flight ({MAX_IN_FLIGHT})");
    let ordering = ordering.map_or("stream worker with acks".to_owned(), |o| format!("ordering = {o}"));
    println!(
        "ledger, {ordering}: {} handled before SIGKILL, committed offset {committed}; handled again \
         after the restart: {duplicates} ({without} without the completed offsets)",
        before.len()
    );
    metadata
}

// With `key` and `none`, how much the metadata saves depends on when the kill lands after
// the last commit; the ledger checks that it is exactly what the commit named.
#[tokio::test(flavor = "multi_thread")]
async fn with_key_ordering_a_restart_after_sigkill_skips_exactly_what_the_commit_named_done() {
    ledger_across_sigkill(Some("key"), 100).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_no_ordering_a_restart_after_sigkill_skips_exactly_what_the_commit_named_done() {
    ledger_across_sigkill(Some("none"), 100).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_partition_ordering_nothing_is_done_above_the_commit_and_every_message_survives_sigkill() {
    // One partition in order: nothing is ever done above the first unfinished message.
    assert_eq!(ledger_across_sigkill(Some("partition"), 5).await, "", "nothing to carry");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_worker_s_acks_done_out_of_order_are_skipped_after_sigkill_as_the_commit_named() {
    ledger_across_sigkill(None, 100).await;
}

/// The config entry of the ledger's worker (see [`ledger_across_sigkill`]).
fn worker_entry(ordering: Option<&str>, group: &str, topic: &str) -> serde_json::Value {
    match ordering {
        Some(ordering) => serde_json::json!({"name": "it_uneven", "group": group, "topics": [topic],
                                             "ordering": ordering, "max_in_flight": MAX_IN_FLIGHT}),
        None => serde_json::json!({"name": "it_uneven_stream", "group": group, "topics": [topic]}),
    }
}

/// Reads the group's commit every 100 ms until `ready` accepts it (at most a minute); returns
/// its metadata.
async fn committed_when(
    bootstrap: &str,
    group: &str,
    topic: &str,
    ready: impl Fn(Option<i64>, &str) -> bool,
) -> String {
    let mut last = None;
    for _ in 0..600 {
        let (bootstrap, group, topic) = (bootstrap.to_owned(), group.to_owned(), topic.to_owned());
        let (offset, metadata) =
            tokio::task::spawn_blocking(move || committed_with_metadata(&bootstrap, &group, &topic)).await.unwrap();
        if ready(offset, &metadata) {
            return metadata;
        }
        last = Some((offset, metadata));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the commit never got there; the last one read: {last:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_stuck_in_its_handler_does_not_make_a_restart_repeat_those_done_after_it() {
    let (topic, group) = (unique("stuck"), unique("g"));
    let mut broker = Process::spawn(Binary::MockBroker, &[&format!("{topic}:1")]);
    let bootstrap = broker.wait_lines(1, |l| l.starts_with("bootstrap ")).await[0]["bootstrap ".len()..].to_owned();
    let filled = (bootstrap.clone(), topic.clone());
    tokio::task::spawn_blocking(move || fill(&filled.0, &filled.1, Some("stuck"))).await.expect("fill task");
    let config = |stuck_ms: u64| {
        let mut settings = fast_settings();
        settings["fetch.wait.max.ms"] = 10.into();
        write_config(serde_json::json!({
            "handler_delay_ms": 1,
            "stuck_ms": stuck_ms,
            "kafka": {
                "consumer_connection_settings": settings,
                "consumer": {"workers": [{"name": "it_uneven", "group": group, "topics": [topic],
                                          "ordering": "none", "max_in_flight": 64}]}
            }
        }))
    };
    let env = [("KAFKA_BROKERS", bootstrap.as_str())];
    let run = |config: &std::path::Path| {
        let args = ["-c", config.to_str().unwrap(), "start-consumer", "--consumer-worker", "it_uneven"];
        Process::spawn_with_env(Binary::TestWorkers, &args, &env)
    };

    // Offset 0 never finishes; every other message does, and the offset to commit stays 0.
    let mut first = run(&config(3_600_000));
    first.wait_lines(MESSAGES - 1, |l| l.starts_with("handled ")).await;
    // Wait until the commit carries every one of them.
    let expected = format!("kw1:0:1,{}", MESSAGES - 1);
    let done_above =
        committed_when(&bootstrap, &group, &topic, |offset, metadata| offset == Some(0) && metadata == expected).await;
    first.signal("KILL");
    assert_eq!(first.wait_exit().await, None);

    // After the restart only the stuck message runs (quickly now); nothing is repeated.
    let mut second = run(&config(0));
    let lines = second.wait_lines(1, |l| l.starts_with("handled ")).await;
    assert!(lines[0].ends_with(" 0 stuck"), "{lines:?}");
    // Everything is committed once it is done: then nothing else was handled.
    let end = i64::try_from(MESSAGES).unwrap();
    committed_when(&bootstrap, &group, &topic, |offset, _| offset == Some(end)).await;
    second.signal("TERM");
    assert_eq!(second.wait_exit().await, Some(0));
    let again = handled_offsets(&second.lines);
    println!("stuck message: the commit carried {done_above:?}; the restart handled {again:?}");
    assert_eq!(again, [0], "only the stuck message is handled after the restart");
    broker.signal("KILL");
}
