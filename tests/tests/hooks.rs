//! What runs around every message: the app's hooks (registered in `#[kafka_main]`'s body)
//! and the span each message runs in, seen from a running process.

use kafka_integration_tests::*;

#[tokio::test(flavor = "multi_thread")]
async fn hooks_run_around_every_message_and_a_skipped_one_is_committed_unhandled() {
    let topic = unique("hooked");
    let group = unique("group");
    create_topics(&[&topic], 1).await;
    produce_in_order(&topic, ["first", "skip-me", "third"].map(Record::new)).await;
    let config = one_worker_config(serde_json::json!({}), "it_slow", &topic, &group, serde_json::json!({}));
    let mut worker =
        Process::spawn(Binary::TestWorkers, &["-c", &config, "start-consumer", "--consumer-worker", "it_slow"]);
    let hooked = worker.wait_lines(2, |l| l.starts_with("hook ")).await;
    worker.signal("TERM");
    assert_eq!(worker.wait_exit().await, Some(0));

    assert_eq!(hooked, [format!("hook {topic} 0 0 ok"), format!("hook {topic} 0 2 ok")]);
    let handled: Vec<&String> = worker.lines.iter().filter(|l| l.starts_with("handled ")).collect();
    assert_eq!(handled, [&format!("handled {topic} 0 0 first"), &format!("handled {topic} 0 2 third")]);
    // Each hook line follows its message's handling.
    let at = |line: &str| worker.lines.iter().position(|l| l == line).unwrap();
    assert!(at(&format!("handled {topic} 0 2 third")) < at(&format!("hook {topic} 0 2 ok")));
    assert_eq!(committed(&group, &topic, 1).await, [Some(3)], "the skipped message counts as done");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_apps_log_lines_carry_the_messages_worker_topic_partition_and_offset() {
    let topic = unique("spans");
    create_topics(&[&topic], 1).await;
    produce_in_order(&topic, ["a", "b"].map(Record::new)).await;
    let config = one_worker_config(serde_json::json!({}), "it_logs", &topic, &unique("group"), serde_json::json!({}));
    let args = ["-c", &config, "start-consumer", "--consumer-worker", "it_logs"];
    let env = [("RUST_LOG", "warn,kafka_message=debug"), ("NO_COLOR", "1")];
    let mut worker = Process::spawn_with_logs(Binary::TestWorkers, &args, &env);
    let lines = worker.wait_lines(2, |l| l.contains("handling payload")).await;
    worker.signal("TERM");
    assert_eq!(worker.wait_exit().await, Some(0));
    for (offset, line) in lines.iter().enumerate() {
        for field in ["worker=\"it_logs\"", &format!("topic=\"{topic}\""), "partition=0", &format!("offset={offset}")] {
            assert!(line.contains(field), "{field} missing in {line}");
        }
    }
}
