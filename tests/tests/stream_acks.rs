//! A stream worker that finishes its messages in tasks of its own ([`kafka_runtime::Ack`]):
//! offsets are committed only up to the first message not done, whatever order the tasks
//! finish in.

use kafka_integration_tests::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_task_still_running_holds_back_the_commit_of_later_messages_done_by_other_tasks() {
    let (topic, group) = (unique("stream-acks"), unique("group"));
    create_topics(&[&topic], 1).await;
    produce_in_order(&topic, ["a", "gate"].map(Record::new)).await;
    produce(&topic, (0..50).map(|n| Record::new(format!("after{n}")))).await;
    let config = one_worker_config(serde_json::json!({}), "it_stream_tasks", &topic, &group, serde_json::json!({}));
    let args = ["-c", &config, "start-consumer", "--consumer-worker", "it_stream_tasks"];

    // Every task but the gate's finishes, after the gate's message was handed out.
    let running = InProcess::start(&args);
    wait_handled(51, |h| h.topic == topic).await;
    running.stop().await.expect("clean stop");
    assert_eq!(committed(&group, &topic, 1).await, [Some(1)], "committed up to the unfinished message, not past it");

    // After a restart the gate's message comes again, and what followed it (at-least-once);
    // once every task is done, the commit reaches the end.
    open_gate();
    let running = InProcess::start(&args);
    wait_handled(1, |h| h.topic == topic && h.payload == "gate").await;
    wait_handled(102, |h| h.topic == topic).await;
    running.stop().await.expect("clean stop");
    let gate = handled(|h| h.topic == topic && h.payload == "gate");
    assert_eq!(gate.len(), 1, "the gate's message was done once");
    assert_eq!(committed(&group, &topic, 1).await, [Some(52)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn what_a_stream_worker_flushes_when_told_of_a_revoke_is_committed_and_nothing_after_it() {
    let (topic, group) = (unique("stream-revoke"), unique("group"));
    create_topics(&[&topic], 2).await;
    let on = |partition: i32, payload: String| Record { partition: Some(partition), ..Record::new(payload) };
    // Partition 0: m0..m98, then `keep`, which the worker does not flush on revoke.
    produce_in_order(&topic, (0..99).map(|n| on(0, format!("m{n}"))).chain([on(0, "keep".into())])).await;
    produce(&topic, (0..100).map(|n| on(1, format!("p1-{n}")))).await;
    let config = write_config(serde_json::json!({
        "kafka": {
            "consumer_connection_settings": fast_settings(),
            "consumer": {"workers": [
                {"name": "it_buffered", "group": group, "topics": [topic]},
                {"name": "it_buffered_second", "path": "workers::buffered", "group": group, "topics": [topic]}
            ]}
        }
    }));
    let config = config.to_str().unwrap();
    let first = InProcess::start(&["-c", config, "start-consumer", "--consumer-worker", "it_buffered"]);
    // Everything is buffered, nothing written yet.
    wait_handled(200, |h| h.topic == topic && h.payload.starts_with("got:")).await;
    assert!(handled(|h| h.topic == topic && h.payload.starts_with("flushed:")).is_empty());
    let second = InProcess::start(&["-c", config, "start-consumer", "--consumer-worker", "it_buffered_second"]);
    wait_handled(1, |h| h.worker == "it_buffered_second" && h.payload.starts_with("assigned:")).await;
    produce(&topic, (0..2).flat_map(|p| (0..50).map(move |n| on(p, format!("new{p}-{n}"))))).await;
    wait_handled(100, |h| h.topic == topic && h.payload.starts_with("got:new")).await;
    second.stop().await.expect("clean stop");
    first.stop().await.expect("clean stop");

    let log = handled(|h| h.topic == topic || h.payload.contains(':') && h.partition == -1 && h.group == group);
    let revoke =
        log.iter().position(|h| h.worker == "it_buffered" && h.payload.starts_with("revoking:")).expect("a revoke");
    let flushed_before: Vec<&str> = log[..revoke]
        .iter()
        .filter(|h| h.topic == topic && h.payload.starts_with("flushed:"))
        .map(|h| &h.payload[..])
        .collect();
    assert!(flushed_before.is_empty(), "nothing written before the revoke: {flushed_before:?}");
    // After the revoke, whoever holds a partition reads it from the commit made then.
    let first_after = |partition: i32| {
        log[revoke..]
            .iter()
            .filter(|h| h.topic == topic && h.partition == partition && h.payload.starts_with("got:"))
            .map(|h| h.offset)
            .min()
    };
    assert_eq!(first_after(0), Some(99), "partition 0: committed up to `keep`, which was not flushed, not past it");
    assert_eq!(first_after(1), Some(100), "partition 1: everything flushed on revoke was committed");
    let mut flushed = std::collections::BTreeMap::new();
    for h in log.iter().filter(|h| h.topic == topic && h.payload.starts_with("flushed:")) {
        *flushed.entry(h.payload.clone()).or_insert(0) += 1;
    }
    assert_eq!(flushed.len(), 300, "every message written");
    let twice: Vec<_> = flushed.iter().filter(|(_, n)| **n > 1).collect();
    assert_eq!(twice, [(&"flushed:keep".to_owned(), &2)], "only `keep`, not committed on revoke, is written twice");
    // Partition 1 has nothing held back: every revoke and the stops committed all of it.
    // (Partition 0's end depends on which member held `keep` when the members stopped.)
    assert_eq!(committed(&group, &topic, 2).await[1], Some(150));
}
