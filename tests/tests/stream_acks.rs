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
