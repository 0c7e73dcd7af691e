//! When a handler fails: retries with backoff while the other partitions flow, dead-letter
//! topics, and a dead-letter topic that cannot be written.

use std::collections::BTreeSet;

use kafka_integration_tests::*;
use rdkafka::message::Message as _;

fn config(worker: &str, topic: &str, group: &str, keys: serde_json::Value) -> String {
    one_worker_config(serde_json::json!({}), worker, topic, group, keys)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_message_goes_to_the_dead_letter_topic_and_everything_else_is_handled() {
    let (topic, group) = (unique("poison-dlq"), unique("group"));
    let dead_letters = format!("{topic}-dlq");
    create_topics(&[&topic], 3).await;
    create_topics(&[&dead_letters], 1).await;
    produce(&topic, documents(1, 1000)).await;
    let mut poison = Record::keyed("bad-key", "not json");
    poison.headers = vec![("trace".into(), "t-1".into())];
    produce(&topic, [poison]).await;
    produce(&topic, documents(1001, 1000)).await;
    let config =
        config("it_json", &topic, &group, serde_json::json!({"dead_letter_topic": "{topic}-dlq", "retries": 2}));
    let args = ["-c", &config, "start-consumer", "--consumer-worker", "it_json"];

    let running = InProcess::start(&args);
    let handled = wait_handled(2000, |h| h.topic == topic).await;
    let dead = consume(&dead_letters, 1).await;
    running.stop().await.expect("the worker kept running and stops cleanly");
    let ids: BTreeSet<&str> = handled.iter().map(|h| h.payload.as_str()).collect();
    assert_eq!(ids.len(), 2000, "every good message is handled once");

    let message = &dead[0];
    assert_eq!(message.payload(), Some(&b"not json"[..]));
    assert_eq!(message.key(), Some(&b"bad-key"[..]));
    assert_eq!(header(message, "trace"), Some("t-1"));
    assert_eq!(header(message, "dlq.original.topic"), Some(topic.as_str()));
    assert_eq!(header(message, "dlq.worker"), Some("it_json"));
    // Undecodable: never retried.
    assert_eq!(header(message, "dlq.attempts"), Some("1"));
    assert!(header(message, "dlq.error").unwrap().contains("cannot decode the payload as JSON"), "{message:?}");
    for name in kafka_runtime::DEAD_LETTER_HEADERS {
        assert!(header(message, name).is_some(), "{name} is missing");
    }

    // Committed: a restart in the same group sees neither the poison nor anything before it.
    produce(&topic, documents(5000, 5)).await;
    let running = InProcess::start(&args);
    wait_handled(2005, |h| h.topic == topic).await;
    running.stop().await.expect("clean stop");
    assert_eq!(handled_where(&topic), 2005, "a committed message was handled again");
    let again = consume(&dead_letters, 1).await;
    assert_eq!(again.len(), 1);
}

fn handled_where(topic: &str) -> usize {
    handled(|h| h.topic == topic && !h.payload.starts_with("failed:")).len()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_message_is_retried_with_backoff_while_other_partitions_flow() {
    // The default `max_in_flight`: the message's tries run in its partition's lane.
    retried_while_other_partitions_flow("it_flaky", serde_json::json!({})).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_message_at_a_time_a_failing_message_pauses_only_its_partition() {
    retried_while_other_partitions_flow("it_flaky", serde_json::json!({"max_in_flight": 1})).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_letter_topic_that_cannot_be_written_stops_the_worker_uncommitted() {
    let (topic, group) = (unique("dlq-broken"), unique("group"));
    create_topics(&[&topic], 1).await;
    produce(&topic, documents(1, 2)).await;
    produce(&topic, [Record::new("not json")]).await;
    // A topic name no broker accepts.
    let config = config("it_json", &topic, &group, serde_json::json!({"dead_letter_topic": "bad topic name!"}));
    let args = ["-c", &config, "start-consumer", "--consumer-worker", "it_json"];
    let err = InProcess::start(&args).finish().await.expect_err("the worker must stop").to_string();
    assert!(err.contains(&format!("at topic {topic}, partition 0, offset 2")), "{err}");
    assert!(err.contains("sending the message to the dead-letter topic `bad topic name!` failed"), "{err}");
    assert!(err.contains("not committed"), "{err}");
    // Not committed: it comes first again.
    let err = InProcess::start(&args).finish().await.expect_err("the worker must stop again").to_string();
    assert!(err.contains("offset 2"), "{err}");
    assert_eq!(handled(|h| h.topic.contains(&topic)).len(), 2, "the good ones were committed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoke_during_a_retry_wait_ends_the_wait_and_the_partition_flows_again() {
    a_revoke_ends_a_retry_wait("it_flaky", "workers::flaky", serde_json::json!({})).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_message_at_a_time_a_revoke_during_a_retry_wait_ends_the_wait() {
    a_revoke_ends_a_retry_wait("it_flaky", "workers::flaky", serde_json::json!({"max_in_flight": 1})).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_ordering_key_a_failing_message_holds_back_only_its_key() {
    let (topic, group) = (unique("retry-key"), unique("group"));
    create_topics(&[&topic], 1).await;
    // One partition: key `a`'s flaky message and 5 more of `a`, then 20 of key `b`.
    // (`produce` sends its records concurrently: one call per record keeps their order.)
    let records = std::iter::once(Record::keyed("a", "flaky-a"))
        .chain((0..5).map(|n| Record::keyed("a", format!("a-{n}"))))
        .chain((0..20).map(|n| Record::keyed("b", format!("b-{n}"))));
    for record in records {
        produce(&topic, [record]).await;
    }
    let keys = serde_json::json!({"retries": 2, "retry_backoff_ms": 400, "retry_backoff_max_ms": 1000,
                                  "ordering": "key", "max_in_flight": 8});
    let config = one_worker_config(serde_json::json!({"flaky_tries": 2}), "it_flaky", &topic, &group, keys);
    let running = InProcess::start(&["-c", &config, "start-consumer", "--consumer-worker", "it_flaky"]);
    wait_handled(26, |h| h.topic == topic && !h.payload.starts_with("failed:")).await;
    running.stop().await.expect("clean stop");

    let log = handled_at(|h| h.topic == topic);
    let tries: Vec<_> = log.iter().filter(|(h, _)| h.payload.ends_with("flaky-a")).collect();
    assert_eq!(tries.len(), 3, "2 failed tries and one that succeeded: {tries:?}");
    let (first_failure, success) = (tries[0].1, tries[2].1);
    let b: Vec<_> = log.iter().filter(|(h, _)| h.payload.starts_with("b-")).collect();
    assert_eq!(b.len(), 20);
    assert!(
        b.iter().all(|(_, at)| *at > first_failure && *at < success),
        "key b, in the same partition, waited for key a's retries"
    );
    let a: Vec<_> = log.iter().filter(|(h, _)| h.payload.starts_with("a-")).collect();
    assert!(a.iter().all(|(_, at)| *at > success), "a message of the waiting key was handed out");
    let order: Vec<&str> = a.iter().map(|(h, _)| h.payload.as_str()).collect();
    assert_eq!(order, ["a-0", "a-1", "a-2", "a-3", "a-4"]);
    assert_eq!(handled_where(&topic), 26, "each message handled once successfully");
    // Committed past all of them: the partition's commit is its end.
    assert_eq!(committed(&group, &topic, 1).await, [Some(26)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shutdown_ends_the_retry_waits_that_hold_every_slot_and_commits_none_of_them() {
    a_shutdown_ends_the_retry_waits_of_every_slot("it_flaky").await;
}
