//! The worker and the entry point, built with kafka-runtime renamed to `renamed_kafka`, are
//! registered and run.

use std::process::Command;

// Link the workers of the library crate, so they are registered.
use kafka_renamed_test as _;

#[test]
fn the_worker_is_registered() {
    let workers = renamed_kafka::registered_workers().unwrap();
    let names: Vec<(&str, &str)> = workers.iter().map(|w| (w.name, w.rust_path)).collect();
    assert_eq!(names, [("renamed", "kafka_renamed_test::renamed_worker")]);
    let worker = workers[0];
    assert_eq!(worker.group, Some("renamed_group"));
    assert_eq!(worker.topics, ["renamed-topic"]);
}

#[test]
fn the_binary_lists_the_worker() {
    let output = Command::new(env!("CARGO_BIN_EXE_kafka-renamed-test"))
        .arg("list-workers")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let (out, err) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{out}{err}");
    let lines: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        lines,
        [
            vec!["NAME", "STYLE", "GROUP", "TOPICS", "PATH"],
            vec!["renamed", "per-message", "renamed_group", "renamed-topic", "kafka_renamed_test::renamed_worker"]
        ],
        "{out}"
    );
}
