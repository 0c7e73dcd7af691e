//! The generated command line, run as real processes of the built demo binary.

use kafka_integration_tests::*;

fn demo(args: &[&str]) -> (i32, String, String) {
    run_to_end(Binary::Demo, args, &[])
}

#[test]
fn list_workers_shows_style_group_topics_and_path() {
    let (code, out, err) = demo(&["-c", "/dev/null/none", "list-workers"]);
    assert_eq!(code, 1, "a missing -c file is an error: {out}{err}");
    let (code, out, err) = demo(&["list-workers"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["NAME", "STYLE", "GROUP", "TOPICS", "PATH"]);
    assert!(lines.contains(&vec!["es", "per-message", "es_group", "my-topic", "kafka_demo::es_consumer"]), "{out}");
    assert!(
        lines.contains(&vec!["default", "stream", "default_group", "default-topic", "kafka_demo::default_worker"]),
        "{out}"
    );
}

#[test]
fn unknown_worker_lists_the_registered_ones() {
    let (code, _, err) = demo(&["start-consumer", "--consumer-worker", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("error: unknown worker `nope`; registered workers: default, es"), "{err}");
    let (code, _, err) = demo(&["start-consumers", "--consumer-worker", "es", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown worker `nope`"), "{err}");
}

#[test]
fn bad_config_names_file_line_and_column() {
    let path = test_file(&format!("{}.json", unique("bad-config")));
    std::fs::write(&path, "{\n  \"kafka\": {\n    \"brokers\": [\"a:1\",]\n  }\n}\n").unwrap();
    let (code, _, err) = demo(&["-c", path.to_str().unwrap(), "list-workers"]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("error: {}:3:", path.display())), "{err}");

    let path = write_config(serde_json::json!({"kafka": {"brokerz": ["a:1"]}}));
    let (code, _, err) = demo(&["-c", path.to_str().unwrap(), "list-workers"]);
    assert_eq!(code, 0, "an unknown key is a warning: {err}");
    assert!(err.contains("unknown key `kafka.brokerz`"), "{err}");
}

#[test]
fn a_value_of_the_wrong_kind_names_the_key_and_what_is_expected() {
    let path = test_file(&format!("{}.json", unique("wrong-kind")));
    std::fs::write(&path, "{\n  \"kafka\": {\n    \"brokers\": 5\n  }\n}\n").unwrap();
    let (code, _, err) = demo(&["-c", path.to_str().unwrap(), "list-workers"]);
    assert_eq!(code, 1);
    assert_eq!(
        err.trim_end(),
        format!(
            "error: {}:3:16: kafka.brokers: expected a list of host:port strings or one comma-separated string, \
             not a number",
            path.display()
        )
    );

    let path = write_config(serde_json::json!([{"kafka": {}}]));
    let (code, _, err) = demo(&["-c", path.to_str().unwrap(), "list-workers"]);
    assert_eq!(code, 1);
    assert!(err.contains("the configuration must be a JSON object"), "{err}");
    assert!(err.contains("not an array"), "{err}");

    let path = write_config(serde_json::json!({"kafka": {"http": {"token": 987654321}}}));
    let (code, _, err) = demo(&["-c", path.to_str().unwrap(), "list-workers"]);
    assert_eq!(code, 1);
    assert!(err.contains("kafka.http.token: expected a string, not a number"), "{err}");
    assert!(!err.contains("987654321"), "a value is never echoed: {err}");
}

#[test]
fn topics_and_patterns_are_checked_before_any_client_is_made() {
    // A broker nothing listens on: the check comes first, so nothing waits for it.
    let nowhere = [("KAFKA_BROKERS", "127.0.0.1:1")];
    let start = |extra: &[&str]| {
        let mut args = vec!["start-consumer", "--consumer-worker", "es"];
        args.extend_from_slice(extra);
        run_to_end(Binary::Demo, &args, &nowhere)
    };
    let (code, _, err) = start(&["--topics", ""]);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "error: worker `es`: topic \"\" (from --topics on the command line): a topic name cannot be empty"
        ),
        "{err}"
    );
    let (code, _, err) = start(&["--regex-topic", "("]);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "error: worker `es`: regex_topic \"(\" (from --regex-topic on the command line) is not a valid regular \
             expression (unclosed group)"
        ),
        "{err}"
    );
    let long = "a".repeat(250);
    for bad in ["a b", "..", "tópico", long.as_str()] {
        let (code, _, err) = start(&["--topics", bad]);
        assert_eq!(code, 1, "{bad}: {err}");
        assert!(err.contains(&format!("topic {bad:?} (from --topics on the command line): a topic ")), "{err}");
    }
    let path = write_config(serde_json::json!({"kafka": {"consumer": {"topics": ["with space"]}}}));
    let (code, _, err) = run_to_end(Binary::Demo, &["-c", path.to_str().unwrap(), "list-workers"], &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "error: {}: kafka.consumer.topics: \"with space\": a topic name may hold only",
            path.display()
        )),
        "{err}"
    );
}

#[test]
fn an_entry_whose_path_matches_no_function_says_so_and_lists_the_functions() {
    // The original README's example entry.
    let path = write_config(serde_json::json!({"kafka": {"consumer": {"workers": [
        {"name": "my_consumer", "path": "my_app.consumers.my_consumer"}
    ]}}}));
    let (code, _, err) = demo(&["-c", path.to_str().unwrap(), "start-consumer", "--consumer-worker", "my_consumer"]);
    assert_eq!(code, 1);
    let error = err.lines().find(|l| l.starts_with("error: ")).expect("an error line");
    assert!(error.contains("worker `my_consumer`: its entry in kafka.consumer.workers of"), "{error}");
    assert!(error.contains("its `path` \"my_app.consumers.my_consumer\" matches no registered function"), "{error}");
    assert!(
        error.contains(
            "the registered functions are kafka_demo::default_worker (worker `default`), kafka_demo::es_consumer \
             (worker `es`)"
        ),
        "{error}"
    );
}

#[test]
fn a_bad_failure_policy_value_names_the_key_and_where_it_came_from() {
    let path = write_config(serde_json::json!({"kafka": {"consumer": {"retry_backoff_ms": -5}}}));
    let (code, _, err) = demo(&["-c", path.to_str().unwrap(), "config"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("kafka.consumer: `retry_backoff_ms` = -5: must be between 0"), "{err}");
    // A usage error: clap names the option, and the exit code is 2.
    let (code, _, err) = demo(&["start-consumer", "--consumer-worker", "es", "--retries=-1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid value '-1' for '--retries <N>'"), "{err}");
}

#[test]
fn a_consumer_type_that_does_not_fit_the_worker_is_an_error() {
    let (code, _, err) = demo(&["start-consumer", "--consumer-worker", "es", "--consumer-type", "batch"]);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "--consumer-type batch: worker `es` is a per-message worker; a batch worker's handler takes `Batch`, \
             `Vec<Message>` or `Vec<Json<T>>`; leave --consumer-type out to run it as it is"
        ),
        "{err}"
    );
}

#[test]
fn every_command_has_help() {
    for command in ["start-consumer", "start-consumers", "list-workers", "config", "consumer-stat", "create-topics"] {
        let (code, out, err) = demo(&[command, "--help"]);
        assert_eq!(code, 0, "{command}: {err}");
        assert!(out.contains("Usage:"), "{command}: {out}");
    }
}

#[test]
fn config_shows_where_each_value_comes_from() {
    let path = write_config(serde_json::json!({"kafka": {
        "brokers": ["file:9092"],
        "topic_prefix": "file-",
        "consumer_connection_settings": {"sasl.password": "hunter2"},
        "consumer": {"workers": [{"name": "es", "group": "file-group", "retries": 2}]}
    }}));
    let path = path.to_str().unwrap();
    let (code, out, err) = run_to_end(
        Binary::Demo,
        &["-c", path, "--topic-prefix", "cli-", "config", "--consumer-worker", "es"],
        &[("KAFKA_BROKERS", "env:9092")],
    );
    assert_eq!(code, 0, "{err}");
    let line = |key: &str| out.lines().find(|l| l.trim_start().starts_with(key)).unwrap_or("").to_owned();
    assert!(line("brokers").contains("env:9092") && line("brokers").ends_with("(env KAFKA_BROKERS)"), "{out}");
    assert!(line("topic_prefix").contains("\"cli-\"") && line("topic_prefix").ends_with("(command line)"), "{out}");
    assert!(line("group").contains("file-group") && line("group").ends_with("(config.json)"), "{out}");
    assert!(line("subscribe").contains("my-topic") && line("subscribe").ends_with("(macro)"), "{out}");
    assert!(line("consumer").contains("group file-group <- cli-my-topic"), "{out}");
    assert!(line("sasl.password").contains("*****") && !out.contains("hunter2"), "{out}");
    assert!(line("enable.auto.offset.store").contains("false"), "{out}");
    assert!(line("retries").contains('2') && line("retries").ends_with("(config.json)"), "{out}");
    assert!(line("on_decode_error").contains("stop") && line("on_decode_error").ends_with("(default)"), "{out}");
    let topic = line("cli-my-topic");
    let topic: Vec<&str> = topic.split_whitespace().collect();
    assert_eq!(
        topic,
        ["cli-my-topic", "partitions", "default", "replication", "default", "config", "-", "for", "worker", "es"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn start_consumer_runs_one_worker_until_sigterm() {
    let topic = unique("demo-es");
    create_topics(&[&topic], 3).await;
    produce(&topic, documents(1, 50)).await;
    let config = write_config(serde_json::json!({"kafka": {"consumer_connection_settings": fast_settings()}}));
    let group = unique("g");
    let mut demo = Process::spawn(
        Binary::Demo,
        &[
            "-c",
            config.to_str().unwrap(),
            "start-consumer",
            "--consumer-worker",
            "es",
            "--topics",
            &topic,
            "--consumer-group",
            &group,
        ],
    );
    let lines = demo.wait_lines(50, |l| l.starts_with("es: indexed document")).await;
    demo.signal("TERM");
    assert_eq!(demo.wait_exit().await, Some(0));
    let mut ids: Vec<u64> = lines.iter().map(|l| l.split_whitespace().nth(3).unwrap().parse().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, (1..=50).collect::<Vec<_>>());
    assert_eq!(demo.lines.iter().filter(|l| l.starts_with("es: indexed")).count(), 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn start_consumers_runs_both_demo_workers_until_sigterm() {
    let (es_topic, default_topic) = (unique("demo-es"), unique("demo-default"));
    create_topics(&[&es_topic, &default_topic], 2).await;
    produce(&es_topic, documents(1, 10)).await;
    produce(&default_topic, (0..10).map(|n| Record::new(format!("plain {n}")))).await;
    let config = write_config(serde_json::json!({"kafka": {
        "consumer_connection_settings": fast_settings(),
        "consumer": {"workers": [
            {"name": "es", "group": unique("ges"), "topics": [es_topic]},
            {"name": "default", "group": unique("gdef"), "topics": [default_topic]}
        ]}
    }}));
    let mut demo = Process::spawn(
        Binary::Demo,
        &["-c", config.to_str().unwrap(), "start-consumers", "--consumer-worker", "es", "default"],
    );
    demo.wait_lines(10, |l| l.starts_with("es: indexed document")).await;
    demo.wait_lines(10, |l| l.starts_with(&format!("default: {default_topic}"))).await;
    demo.signal("TERM");
    assert_eq!(demo.wait_exit().await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn with_stop_all_on_failure_a_failing_worker_stops_the_process_with_an_error() {
    let topic = unique("demo-bad");
    create_topics(&[&topic], 1).await;
    produce(&topic, [Record::new("not a document")]).await;
    let config = write_config(serde_json::json!({"kafka": {
        "consumer_connection_settings": fast_settings(),
        "consumer": {"workers": [
            {"name": "es", "group": unique("ges"), "topics": [topic]},
            {"name": "default", "group": unique("gdef"), "topics": [unique("idle")]}
        ]}
    }}));
    let (code, _, err) = run_to_end(
        Binary::Demo,
        &[
            "-c",
            config.to_str().unwrap(),
            "--brokers",
            &brokers(),
            "start-consumers",
            "--stop-all-on-failure",
            "--consumer-worker",
            "es",
            "default",
        ],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    let last = err.lines().last().unwrap_or("");
    assert!(last.starts_with("error: worker `es` failed: handler failed at topic"), "{err}");
    assert!(last.contains("offset 0") && last.contains("cannot decode the payload as JSON"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_broker_is_reported_and_sigterm_still_stops_cleanly() {
    let mut demo = Process::spawn_with_logs(
        Binary::Demo,
        &["--brokers", "127.0.0.1:1", "start-consumer", "--consumer-worker", "es"],
        &[("RUST_LOG", "error")],
    );
    let reported = demo.wait_lines(1, |l| l.contains("cannot reach the brokers 127.0.0.1:1")).await;
    assert!(
        reported[0].contains("check that the address is right (--brokers, KAFKA_BROKERS or kafka.brokers"),
        "{reported:?}"
    );
    demo.signal("TERM");
    assert_eq!(demo.wait_exit().await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_worker_leaves_the_others_running_and_the_exit_code_says_so() {
    let (bad, good) = (unique("demo-bad"), unique("demo-good"));
    create_topics(&[&bad, &good], 1).await;
    produce(&bad, [Record::new("not a document")]).await;
    let config = write_config(serde_json::json!({"kafka": {
        "consumer_connection_settings": fast_settings(),
        "consumer": {"workers": [
            {"name": "es", "group": unique("ges"), "topics": [bad]},
            {"name": "default", "group": unique("gdef"), "topics": [good]}
        ]}
    }}));
    let mut demo = Process::spawn_with_logs(
        Binary::Demo,
        &["-c", config.to_str().unwrap(), "start-consumers", "--consumer-worker", "es", "default"],
        &[("RUST_LOG", "warn")],
    );
    demo.wait_lines(1, |l| l.contains("worker `es` failed: handler failed at topic")).await;
    // The other worker still runs: it handles what comes after the failure.
    produce(&good, (0..5).map(|n| Record::new(format!("after {n}")))).await;
    demo.wait_lines(5, |l| l.starts_with(&format!("default: {good}"))).await;
    demo.signal("TERM");
    assert_eq!(demo.wait_exit().await, Some(1), "a failed worker makes the exit code 1");
    let last = demo.lines.iter().rev().find(|l| l.starts_with("error:")).cloned().unwrap_or_default();
    assert!(last.contains("worker `es` failed"), "{}", demo.lines.join("\n"));
}
