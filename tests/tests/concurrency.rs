//! Per-message workers with several messages in flight: partitions in parallel, keys in
//! parallel, order kept where it must be, and offsets never committed past an unfinished
//! message.

use std::collections::BTreeMap;
use std::time::Instant;

use kafka_integration_tests::*;

fn config(worker: &str, topic: &str, group: &str, keys: serde_json::Value) -> String {
    one_worker_config(serde_json::json!({"handler_delay_ms": 3}), worker, topic, group, keys)
}

/// One handler call of `it_timed`: where its message sat, its key, and when it ran.
#[derive(Clone, Debug)]
struct Call {
    partition: i32,
    offset: i64,
    key: String,
    start: Instant,
    end: Instant,
}

/// The calls `it_timed` made on `topic`, by offset within each partition.
fn calls(topic: &str) -> Vec<Call> {
    let mut starts = BTreeMap::new();
    let mut calls = Vec::new();
    for (handled, at) in handled_at(|h| h.topic == topic) {
        let (phase, rest) = handled.payload.split_once(':').unwrap();
        let key = rest.split_once(':').unwrap().0.to_owned();
        let place = (handled.partition, handled.offset);
        match phase {
            "start" => assert!(starts.insert(place, at).is_none(), "{place:?} handled twice"),
            _ => calls.push(Call { partition: place.0, offset: place.1, key, start: starts[&place], end: at }),
        }
    }
    calls.sort_by_key(|c| (c.partition, c.offset));
    calls
}

fn overlap(a: &Call, b: &Call) -> bool {
    a.start < b.end && b.start < a.end
}

/// The most calls running at the same moment.
fn most_at_once(calls: &[Call]) -> usize {
    // At one instant, an end comes before a start: those two did not overlap.
    let mut events: Vec<(Instant, i32)> = calls.iter().flat_map(|c| [(c.start, 1), (c.end, -1)]).collect();
    events.sort();
    let (mut now, mut most) = (0, 0);
    for (_, change) in events {
        now += change;
        most = most.max(now);
    }
    most as usize
}

/// Within each group of calls that must not overlap (by `group`), each call starts after the
/// one before it, in offset order, has ended.
fn assert_in_order_without_overlap(calls: &[Call], group: impl Fn(&Call) -> String) {
    let mut by_group: BTreeMap<String, Vec<&Call>> = BTreeMap::new();
    for call in calls {
        by_group.entry(group(call)).or_default().push(call);
    }
    for (name, calls) in by_group {
        for pair in calls.windows(2) {
            assert!(pair[0].offset < pair[1].offset, "{name}: out of offset order: {pair:?}");
            assert!(pair[0].end <= pair[1].start, "{name}: two calls overlap: {pair:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn partitions_run_in_parallel_and_each_stays_in_offset_order() {
    let (topic, group) = (unique("par-partition"), unique("group"));
    create_topics(&[&topic], 4).await;
    produce(&topic, (0..400).map(|n| Record { partition: Some(n % 4), ..Record::new(format!("m{n}")) })).await;
    let config = config("it_timed", &topic, &group, serde_json::json!({}));
    let args = ["-c", &config, "start-consumer", "--consumer-worker", "it_timed"];

    let running = InProcess::start(&args);
    wait_handled(400, |h| h.topic == topic && h.payload.starts_with("end:")).await;
    running.stop().await.expect("clean stop");

    let calls = calls(&topic);
    assert_eq!(calls.len(), 400);
    assert_in_order_without_overlap(&calls, |c| format!("partition {}", c.partition));
    let parallel = calls.iter().any(|a| calls.iter().any(|b| a.partition != b.partition && overlap(a, b)));
    assert!(parallel, "no two partitions ever ran at the same time");
    let offsets = committed(&group, &topic, 4).await;
    assert_eq!(offsets, [Some(100); 4], "every partition committed to its end");
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_run_in_parallel_within_one_partition_and_each_key_stays_in_order() {
    let (topic, group) = (unique("par-key"), unique("group"));
    create_topics(&[&topic], 1).await;
    produce(&topic, (0..300).map(|n| Record::keyed(format!("k{}", n % 15), format!("m{n}")))).await;
    let keys = serde_json::json!({"ordering": "key", "max_in_flight": 8});
    let config = config("it_timed", &topic, &group, keys);
    let args = ["-c", &config, "start-consumer", "--consumer-worker", "it_timed"];

    let running = InProcess::start(&args);
    wait_handled(300, |h| h.topic == topic && h.payload.starts_with("end:")).await;
    running.stop().await.expect("clean stop");

    let calls = calls(&topic);
    assert_eq!(calls.len(), 300);
    assert_in_order_without_overlap(&calls, |c| format!("key {}", c.key));
    let in_flight_at_most = most_at_once(&calls);
    assert!(in_flight_at_most > 1, "keys of one partition never ran at the same time");
    assert!(in_flight_at_most <= 8, "more than max_in_flight at once: {in_flight_at_most}");
    assert_eq!(committed(&group, &topic, 1).await, [Some(300)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_still_running_holds_back_the_commit_of_later_ones_that_finished() {
    let (topic, group) = (unique("par-gate"), unique("group"));
    create_topics(&[&topic], 1).await;
    produce_in_order(&topic, ["a", "gate"].map(Record::new)).await;
    produce(&topic, (0..50).map(|n| Record::new(format!("after{n}")))).await;
    let config = config("it_gate", &topic, &group, serde_json::json!({"ordering": "none"}));
    let args = ["-c", &config, "start-consumer", "--consumer-worker", "it_gate"];

    let running = InProcess::start(&args);
    // Everything after the gate finishes while the gate's message is still in the handler.
    wait_handled(51, |h| h.topic == topic).await;
    open_gate();
    let err = running.finish().await.expect_err("the gate's failure stops the worker").to_string();
    assert!(err.contains(&format!("handler failed at topic {topic}, partition 0, offset 1: the gate failed")), "{err}");
    assert_eq!(committed(&group, &topic, 1).await, [Some(1)], "committed up to the unfinished message, not past it");
}

#[test]
fn concurrency_is_shown_by_config_and_checked_at_start_up() {
    let config = write_config(serde_json::json!({"kafka": {"consumer": {
        "max_in_flight": 16,
        "workers": [{"name": "it_timed", "topics": ["t"], "ordering": "key"}]
    }}}));
    let misplaced = write_config(serde_json::json!({"kafka": {"consumer": {"workers": [
        {"name": "it_stream", "topics": ["t"], "ordering": "key"}
    ]}}}));
    let run = |config: &std::path::Path, args: &[&str]| {
        let mut all = vec!["-c", config.to_str().unwrap()];
        all.extend(args);
        run_to_end(Binary::TestWorkers, &all, &[])
    };
    let (code, out, err) = run(&config, &["config", "--consumer-worker", "it_timed"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ordering                         key                  (config.json)"), "{out}");
    assert!(out.contains("max_in_flight                    16                   (config.json)"), "{out}");

    let (code, _, err) = run(&config, &["start-consumer", "--consumer-worker", "it_timed", "--max-in-flight", "0"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("worker `it_timed`: the command line: `max_in_flight` = 0: must be between 1"), "{err}");

    let (code, _, err) = run(&misplaced, &["start-consumer", "--consumer-worker", "it_stream"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("`ordering` applies only to per-message and batch workers, and `it_stream` is a stream worker"),
        "{err}"
    );
}

/// Two workers on one function and one group, `messages` over 4 partitions: the second joins
/// once the first has handled 100, taking partitions away while it has messages in flight.
/// Returns the first member's calls and the second's.
async fn rebalance_mid_stream(messages: i32, delay_ms: u64, keys: serde_json::Value) -> (Vec<Call>, Vec<Call>) {
    let (topic, group) = (unique("par-rebalance"), unique("group"));
    create_topics(&[&topic], 4).await;
    produce(&topic, (0..messages).map(|n| Record { partition: Some(n % 4), ..Record::new(format!("m{n}")) })).await;
    let entry = |name: &str| {
        let mut entry = serde_json::json!({"name": name, "path": "workers::timed", "group": group, "topics": [topic]});
        entry.as_object_mut().unwrap().extend(keys.as_object().unwrap().clone());
        entry
    };
    let config = write_config(serde_json::json!({
        "handler_delay_ms": delay_ms,
        "kafka": {
            "consumer_connection_settings": fast_settings(),
            "consumer": {"workers": [entry("it_timed"), entry("it_timed_second")]}
        }
    }));
    let config = config.to_str().unwrap();
    let first = InProcess::start(&["-c", config, "start-consumer", "--consumer-worker", "it_timed"]);
    wait_handled(100, |h| h.topic == topic && h.worker == "it_timed").await;
    let second = InProcess::start(&["-c", config, "start-consumer", "--consumer-worker", "it_timed_second"]);
    wait_handled(1, |h| h.topic == topic && h.worker == "it_timed_second").await;
    let total = usize::try_from(messages).unwrap();
    wait_handled(total, |h| h.topic == topic && h.payload.starts_with("end:")).await;
    first.stop().await.expect("clean stop");
    second.stop().await.expect("clean stop");

    // `calls` fails on a message started twice: none may be handled twice across the rebalance.
    let all = calls(&topic);
    assert_eq!(all.len(), total, "every message handled");
    let per_partition = Some(i64::from(messages / 4));
    assert_eq!(committed(&group, &topic, 4).await, [per_partition; 4]);
    let of = |worker: &str| {
        let mine: std::collections::BTreeSet<(i32, i64)> =
            handled(|h| h.topic == topic && h.worker == worker).into_iter().map(|h| (h.partition, h.offset)).collect();
        all.iter().filter(|c| mine.contains(&(c.partition, c.offset))).cloned().collect()
    };
    (of("it_timed"), of("it_timed_second"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rebalance_waits_for_the_messages_in_flight_so_none_is_handled_twice() {
    rebalance_mid_stream(2000, 3, serde_json::json!({})).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rebalance_with_256_messages_in_flight_loses_none_and_repeats_none() {
    // 200 ms each, 256 at once: about 1,280 a second, so the backlog outlasts the rebalance.
    let keys = serde_json::json!({"ordering": "none", "max_in_flight": 256});
    let (first, second) = rebalance_mid_stream(12_000, 200, keys).await;
    let most = most_at_once(&first);
    println!("rebalance with messages in flight: the first member ran at most {most} at once");
    assert!(most >= 200, "the first member never had close to 256 in flight: {most}");
    assert!(!second.is_empty(), "the second member handled nothing");
}
