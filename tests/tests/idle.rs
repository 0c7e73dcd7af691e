//! A consumer with nothing to read stays in its group: waiting for messages counts as polling
//! for librdkafka's `max.poll.interval.ms`.

use std::time::Duration;

use kafka_integration_tests::*;

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_consumer_outlives_max_poll_interval_in_its_group() {
    let topic = unique("idle");
    let group = unique("group");
    create_topics(&[&topic], 2).await;
    produce(&topic, [Record::new("first")]).await;
    let mut settings = fast_settings();
    settings["max.poll.interval.ms"] = 7000.into();
    let config = write_config(serde_json::json!({"kafka": {"consumer_connection_settings": settings}}));
    let config = config.display().to_string();
    let args = [
        "-c",
        &config,
        "start-consumer",
        "--consumer-worker",
        "it_per_message",
        "--topics",
        &topic,
        "--consumer-group",
        &group,
    ];
    let running = InProcess::start(&args);
    wait_handled(1, |h| h.topic == topic).await;
    let status = || kafka_runtime::running_workers().into_iter().find(|w| w.group == group).expect("running");
    let before = status();
    assert_eq!(before.assigned.len(), 2, "{before:?}");

    // Idle for longer than max.poll.interval.ms: nothing to await but the time itself.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = status();
    assert_eq!(after.assignments, before.assignments, "the consumer left its group and joined again: {after:?}");
    assert_eq!(after.assigned.len(), 2, "{after:?}");

    produce(&topic, [Record::new("second")]).await;
    wait_handled(2, |h| h.topic == topic).await;
    running.stop().await.expect("clean stop");
}
