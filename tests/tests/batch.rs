//! Batch workers: batches cut by `take` and `within`, offsets committed once a batch is done,
//! and failures as a unit, of one named message, and of a message that cannot be decoded;
//! one batch at a time, and with batches of several partitions at once (`max_in_flight`).

use std::time::Duration;

use kafka_integration_tests::*;
use rdkafka::message::Message as _;

fn config(worker: &str, topic: &str, group: &str, keys: serde_json::Value) -> String {
    one_worker_config(serde_json::json!({}), worker, topic, group, keys)
}

/// The sizes of the batches `it_batch` got on `topic`, in order.
fn batch_sizes(topic: &str) -> Vec<usize> {
    handled(|h| h.topic == topic && h.partition == -1)
        .iter()
        .map(|h| h.payload.strip_prefix("batch:").unwrap().parse().unwrap())
        .collect()
}

fn handled_payloads(topic: &str) -> Vec<String> {
    let mut payloads: Vec<String> =
        handled(|h| h.topic == topic && h.partition >= 0).into_iter().map(|h| h.payload).collect();
    payloads.sort();
    payloads
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_hold_at_most_take_messages_and_are_committed_once_done() {
    let (topic, group) = (unique("batch-take"), unique("group"));
    create_topics(&[&topic], 2).await;
    // Explicit partitions: without a key the producer may put every message in one.
    produce(&topic, (0..250).map(|n| Record { partition: Some(n % 2), ..Record::new(format!("m{n:03}")) })).await;
    let config = config("it_batch", &topic, &group, serde_json::json!({}));
    // take = 100 from the attribute; a short wait from the command line.
    let args = ["-c", &config, "start-consumer", "--consumer-worker", "it_batch", "--within", "500"];

    let running = InProcess::start(&args);
    wait_handled(250, |h| h.topic == topic && h.partition >= 0).await;
    running.stop().await.expect("clean stop");

    let sizes = batch_sizes(&topic);
    assert_eq!(sizes.iter().sum::<usize>(), 250, "every message in exactly one batch: {sizes:?}");
    assert!(sizes.iter().all(|&n| n <= 100), "a batch above take: {sizes:?}");
    assert!(sizes.contains(&100), "a backlog fills batches up to take: {sizes:?}");
    assert!(sizes.iter().any(|&n| n < 100), "the rest is handed over after `within`: {sizes:?}");
    let expected: Vec<String> = (0..250).map(|n| format!("m{n:03}")).collect();
    assert_eq!(handled_payloads(&topic), expected, "each message handled once");
    assert_eq!(committed(&group, &topic, 2).await, [Some(125); 2], "both partitions committed to their end");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_batch_is_retried_as_a_unit_then_dead_lettered_message_by_message() {
    retried_as_a_unit_then_dead_lettered("1").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_max_in_flight_a_failed_batch_is_retried_as_a_unit_then_dead_lettered() {
    retried_as_a_unit_then_dead_lettered("2").await;
}

async fn retried_as_a_unit_then_dead_lettered(max_in_flight: &str) {
    let (topic, group) = (unique("batch-unit"), unique("group"));
    let dead_letters = format!("{topic}-dlq");
    create_topics(&[&topic], 1).await;
    create_topics(&[&dead_letters], 1).await;
    produce_in_order(&topic, ["a1", "fail-batch", "a2"].map(Record::new)).await;
    let keys = serde_json::json!({"retries": 1, "retry_backoff_ms": 300, "dead_letter_topic": "{topic}-dlq"});
    let config = config("it_batch", &topic, &group, keys);
    let args = ["-c", &config, "start-consumer", "--consumer-worker", "it_batch", "--take", "3"];
    let running = InProcess::start(&[&args[..], &["--max-in-flight", max_in_flight]].concat());
    let dead = consume(&dead_letters, 3).await;
    // The worker goes on after the dead letters.
    produce(&topic, [Record::new("after")]).await;
    wait_handled(1, |h| h.topic == topic && h.payload == "after").await;
    running.stop().await.expect("clean stop");

    let tries = handled_at(|h| h.topic == topic && h.payload == "batch:3");
    assert_eq!(tries.len(), 2, "one try and one retry of the whole batch");
    let waited = tries[1].1 - tries[0].1;
    assert!(waited >= Duration::from_millis(240), "the retry waits the backoff less at most a fifth: {waited:?}");
    let payloads: Vec<&str> = dead.iter().map(|m| std::str::from_utf8(m.payload().unwrap()).unwrap()).collect();
    assert_eq!(payloads, ["a1", "fail-batch", "a2"], "the whole batch, in order");
    for message in &dead {
        assert_eq!(header(message, "dlq.attempts"), Some("2"));
        assert_eq!(header(message, "dlq.worker"), Some("it_batch"));
        assert_eq!(header(message, "dlq.error"), Some("the batch cannot be written"));
        assert_eq!(header(message, "dlq.original.topic"), Some(topic.as_str()));
    }
    assert_eq!(committed(&group, &topic, 1).await, [Some(4)], "the dead-lettered batch and `after`");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_named_failure_retries_and_dead_letters_only_that_message() {
    named_failure_retried_and_dead_lettered_alone("1").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_max_in_flight_a_named_failure_retries_and_dead_letters_only_that_message() {
    named_failure_retried_and_dead_lettered_alone("2").await;
}

async fn named_failure_retried_and_dead_lettered_alone(max_in_flight: &str) {
    let (topic, group) = (unique("batch-named"), unique("group"));
    let dead_letters = format!("{topic}-dlq");
    create_topics(&[&topic], 1).await;
    create_topics(&[&dead_letters], 1).await;
    produce_in_order(&topic, ["b1", "poison-1", "b2"].map(Record::new)).await;
    let keys = serde_json::json!({"retries": 1, "retry_backoff_ms": 50, "dead_letter_topic": "{topic}-dlq"});
    let config = config("it_batch", &topic, &group, keys);
    let args = ["-c", &config, "start-consumer", "--consumer-worker", "it_batch", "--take", "3"];
    let running = InProcess::start(&[&args[..], &["--max-in-flight", max_in_flight]].concat());
    let dead = consume(&dead_letters, 1).await;
    produce(&topic, [Record::new("after")]).await;
    wait_handled(1, |h| h.topic == topic && h.payload == "after").await;
    running.stop().await.expect("clean stop");

    assert_eq!(handled_payloads(&topic), ["after", "b1", "b2"], "the others once each");
    let sizes = batch_sizes(&topic);
    assert_eq!(&sizes[..2], [3, 1], "the batch, then the failed message alone: {sizes:?}");
    assert_eq!(dead[0].payload(), Some(&b"poison-1"[..]));
    assert_eq!(header(&dead[0], "dlq.attempts"), Some("2"));
    assert_eq!(header(&dead[0], "dlq.original.offset"), Some("1"));
    assert_eq!(header(&dead[0], "dlq.error"), Some("poison-1 cannot be written"));
    assert_eq!(consume(&dead_letters, 1).await.len(), 1);
    assert_eq!(committed(&group, &topic, 1).await, [Some(4)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_undecodable_message_is_dead_lettered_and_the_rest_of_its_batch_handled() {
    undecodable_dead_lettered_and_the_rest_handled("1").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_max_in_flight_an_undecodable_message_is_dead_lettered_and_the_rest_handled() {
    undecodable_dead_lettered_and_the_rest_handled("2").await;
}

async fn undecodable_dead_lettered_and_the_rest_handled(max_in_flight: &str) {
    let (topic, group) = (unique("batch-json"), unique("group"));
    let dead_letters = format!("{topic}-dlq");
    create_topics(&[&topic], 1).await;
    create_topics(&[&dead_letters], 1).await;
    produce(&topic, documents(1, 5)).await;
    produce(&topic, [Record::new("not json")]).await;
    produce(&topic, documents(6, 5)).await;
    let config = config("it_batch_json", &topic, &group, serde_json::json!({"dead_letter_topic": "{topic}-dlq"}));
    let args =
        ["-c", &config, "start-consumer", "--consumer-worker", "it_batch_json", "--max-in-flight", max_in_flight];
    let running = InProcess::start(&args);
    let handled = wait_handled(10, |h| h.topic == topic).await;
    let dead = consume(&dead_letters, 1).await;
    running.stop().await.expect("clean stop");

    let mut ids: Vec<u64> = handled.iter().map(|h| h.payload.parse().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, (1..=10).collect::<Vec<_>>(), "every document once");
    assert_eq!(dead[0].payload(), Some(&b"not json"[..]));
    assert_eq!(header(&dead[0], "dlq.attempts"), Some("1"), "never retried");
    assert!(header(&dead[0], "dlq.error").unwrap().contains("cannot decode the payload as JSON"));
    assert_eq!(committed(&group, &topic, 1).await, [Some(11)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_policy_a_named_failure_stops_the_worker_with_what_came_before_committed() {
    let (topic, group) = (unique("batch-stop"), unique("group"));
    create_topics(&[&topic], 1).await;
    produce_in_order(&topic, ["c1", "c2", "poison-2", "c3"].map(Record::new)).await;
    let config = config("it_batch", &topic, &group, serde_json::json!({"take": 4}));
    let args = ["-c", &config, "start-consumer", "--consumer-worker", "it_batch"];

    let err = InProcess::start(&args).finish().await.expect_err("the worker must stop").to_string();
    assert!(err.contains(&format!("at topic {topic}, partition 0, offset 2 (message 2 of a batch of 4)")), "{err}");
    assert!(err.contains("poison-2 cannot be written"), "{err}");
    assert!(err.contains("not committed"), "{err}");
    assert_eq!(committed(&group, &topic, 1).await, [Some(2)], "c1 and c2 are done; poison-2 comes again");
}

#[test]
fn batch_settings_are_checked_at_start_up_and_shown_by_config() {
    let config = write_config(serde_json::json!({"kafka": {"consumer": {"workers": [
        {"name": "it_batch", "topics": ["t"], "take": 10}
    ]}}}));
    let misplaced = write_config(serde_json::json!({"kafka": {"consumer": {"workers": [
        {"name": "it_per_message", "topics": ["t"], "within_ms": 100}
    ]}}}));
    let run_with = |config: &std::path::Path, args: &[&str]| {
        let mut all = vec!["-c", config.to_str().unwrap()];
        all.extend(args);
        run_to_end(Binary::TestWorkers, &all, &[])
    };
    let run = |args: &[&str]| run_with(&config, args);

    let (code, out, _) = run(&["list-workers"]);
    assert_eq!(code, 0);
    let row = out.lines().find(|l| l.starts_with("it_batch ")).expect("it_batch is listed");
    assert!(row.split_whitespace().nth(1) == Some("batch"), "{row}");

    let (code, out, _) = run(&["config", "--consumer-worker", "it_batch"]);
    assert_eq!(code, 0);
    assert!(out.contains("take                             10                   (config.json)"), "{out}");
    assert!(out.contains("within_ms                        5000 ms              (macro)"), "{out}");

    let (code, _, err) = run(&["start-consumer", "--consumer-worker", "it_batch", "--take", "0"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("worker `it_batch`: the command line: `take` = 0: must be between 1 and"), "{err}");

    let (code, _, err) = run_with(&misplaced, &["start-consumer", "--consumer-worker", "it_per_message"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("`within_ms` applies only to batch workers, and `it_per_message` is a per-message"), "{err}");

    let (code, _, err) = run(&["start-consumer", "--consumer-worker", "it_paced", "--consumer-type", "batch"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--consumer-type batch: worker `it_paced` is a per-message worker"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_max_in_flight_batches_of_different_partitions_run_at_once_each_partition_in_order() {
    batches_of_partitions_at_once(serde_json::json!({})).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn under_a_failure_policy_batches_of_different_partitions_run_at_once_too() {
    batches_of_partitions_at_once(serde_json::json!({"retries": 2, "dead_letter_topic": "{topic}-dlq"})).await;
}

async fn batches_of_partitions_at_once(policy: serde_json::Value) {
    let (topic, group) = (unique("batch-parallel"), unique("group"));
    create_topics(&[&topic], 4).await;
    produce(&topic, (0..400).map(|n| Record { partition: Some(n % 4), ..Record::new(format!("m{n:03}")) })).await;
    let config =
        one_worker_config(serde_json::json!({"handler_delay_ms": 100}), "it_timed_batch", &topic, &group, policy);
    let args = ["-c", &config, "start-consumer", "--consumer-worker", "it_timed_batch", "--max-in-flight", "2"];
    let running = InProcess::start(&args);
    wait_handled(400, |h| h.topic == topic && h.payload.starts_with('m')).await;
    running.stop().await.expect("clean stop");

    let log = handled_at(|h| h.topic == topic && !h.payload.starts_with('m'));
    // (partition, first offset, last offset, started, ended) per batch.
    let mut batches = Vec::new();
    for (start, at) in log.iter().filter(|(h, _)| h.payload.starts_with("start:")) {
        assert!(start.partition >= 0, "a batch mixed partitions: {start:?}");
        let end = log
            .iter()
            .find(|(h, _)| h.partition == start.partition && h.offset == start.offset && h.payload.starts_with("end:"))
            .unwrap_or_else(|| panic!("no end for {start:?}"));
        let last: i64 = start.payload.rsplit(':').next().unwrap().parse().unwrap();
        batches.push((start.partition, start.offset, last, *at, end.1));
    }
    assert!(batches.iter().all(|b| b.2 - b.1 < 50), "a batch above take: {batches:?}");
    for partition in 0..4 {
        let mut own: Vec<_> = batches.iter().filter(|b| b.0 == partition).collect();
        own.sort_by_key(|b| b.3);
        for pair in own.windows(2) {
            assert!(pair[0].4 <= pair[1].3, "two batches of partition {partition} overlapped: {own:?}");
            assert_eq!(pair[0].2 + 1, pair[1].1, "partition {partition}'s batches out of offset order: {own:?}");
        }
    }
    // Batches running when each one started (an `end` is recorded just before its batch
    // returns, so this may count one that just ended as ended: never more than ran).
    let overlapping =
        batches.iter().map(|b| batches.iter().filter(|o| o.3 <= b.3 && b.3 < o.4).count()).max().unwrap_or(0);
    assert_eq!(overlapping, 2, "max_in_flight = 2 batches at once (4 partitions ready): {batches:?}");
    let expected: Vec<String> = (0..400).map(|n| format!("m{n:03}")).collect();
    let mut payloads: Vec<String> =
        handled(|h| h.topic == topic && h.payload.starts_with('m')).into_iter().map(|h| h.payload).collect();
    payloads.sort();
    assert_eq!(payloads, expected, "each message handled once");
    assert_eq!(committed(&group, &topic, 4).await, [Some(100); 4], "every partition committed to its end");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_max_in_flight_a_failed_batch_stops_the_worker_and_stays_uncommitted() {
    let (topic, group) = (unique("batch-parallel-fail"), unique("group"));
    create_topics(&[&topic], 2).await;
    produce_in_order(&topic, ["a1", "fail-batch", "a2"].map(|p| Record { partition: Some(0), ..Record::new(p) })).await;
    produce(&topic, (0..5).map(|n| Record { partition: Some(1), ..Record::new(format!("b{n}")) })).await;
    let config = config("it_batch", &topic, &group, serde_json::json!({}));
    let args =
        ["-c", &config, "start-consumer", "--consumer-worker", "it_batch", "--within", "300", "--max-in-flight", "2"];
    let err = InProcess::start(&args).finish().await.expect_err("the worker must stop").to_string();
    let at = format!("batch handler failed on a batch of 3 messages (topic {topic}, partition 0, offsets 0 to 2)");
    assert!(err.contains(&at), "{err}");
    assert!(err.contains("the batch cannot be written") && err.contains("not committed"), "{err}");
    assert_eq!(committed(&group, &topic, 2).await[0], None, "the failed batch was committed");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_max_in_flight_a_rebalance_waits_for_the_running_batches_so_none_is_handled_twice() {
    let (topic, group) = (unique("batch-parallel-rebalance"), unique("group"));
    create_topics(&[&topic], 4).await;
    let total = 2000;
    produce(&topic, (0..total).map(|n| Record { partition: Some(n % 4), ..Record::new(format!("m{n:04}")) })).await;
    let entry = |name: &str| {
        serde_json::json!({"name": name, "path": "workers::timed_batch", "group": group, "topics": [topic],
                           "max_in_flight": 4, "take": 20})
    };
    let config = write_config(serde_json::json!({
        "handler_delay_ms": 20,
        "kafka": {
            "consumer_connection_settings": fast_settings(),
            "consumer": {"workers": [entry("it_timed_batch"), entry("it_timed_batch_second")]}
        }
    }));
    let config = config.to_str().unwrap();
    let first = InProcess::start(&["-c", config, "start-consumer", "--consumer-worker", "it_timed_batch"]);
    wait_handled(100, |h| h.topic == topic && h.payload.starts_with('m')).await;
    let second = InProcess::start(&["-c", config, "start-consumer", "--consumer-worker", "it_timed_batch_second"]);
    wait_handled(1, |h| h.topic == topic && h.worker == "it_timed_batch_second" && h.payload.starts_with('m')).await;
    wait_handled(total as usize, |h| h.topic == topic && h.payload.starts_with('m')).await;
    first.stop().await.expect("clean stop");
    second.stop().await.expect("clean stop");

    let handled = handled(|h| h.topic == topic && h.payload.starts_with('m'));
    let distinct: std::collections::BTreeSet<&str> = handled.iter().map(|h| h.payload.as_str()).collect();
    assert_eq!(distinct.len(), total as usize, "every message handled");
    assert_eq!(handled.len(), total as usize, "a message handled twice across the rebalance");
    assert_eq!(committed(&group, &topic, 4).await, [Some(i64::from(total / 4)); 4]);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_max_in_flight_a_failed_batch_waits_for_its_retry_in_its_slot_while_other_partitions_flow() {
    retried_while_other_partitions_flow("it_flaky_batch", serde_json::json!({"max_in_flight": 2})).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_max_in_flight_a_revoke_during_a_batch_s_retry_wait_ends_the_wait() {
    a_revoke_ends_a_retry_wait("it_flaky_batch", "workers::flaky_batch", serde_json::json!({"max_in_flight": 2})).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_max_in_flight_a_shutdown_ends_the_batches_retry_waits_and_commits_none_of_them() {
    a_shutdown_ends_the_retry_waits_of_every_slot("it_flaky_batch").await;
}
