//! `create-topics` as a process, against the broker under test; the partitions it made are
//! read back with plain rdkafka.

use std::time::{Duration, Instant};

use kafka_integration_tests::*;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::ClientConfig;

/// Each line, its cells one space apart.
fn words(text: &str) -> Vec<String> {
    text.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect()
}

/// How many partitions each topic has, as the broker's metadata says (`None`: no such topic).
async fn partitions(topics: &[&str]) -> Vec<Option<usize>> {
    let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers()).create().expect("client");
        let metadata = client.fetch_metadata(None, Duration::from_secs(30)).expect("metadata");
        topics
            .iter()
            .map(|name| metadata.topics().iter().find(|t| t.name() == name).map(|t| t.partitions().len()))
            .collect()
    })
    .await
    .expect("metadata task")
}

/// A config whose `it_per_message` worker reads `orders` with a dead-letter topic, under
/// `prefix`, with `kafka.topics` as given.
fn config_with(prefix: &str, topics: serde_json::Value) -> String {
    let json = serde_json::json!({"kafka": {
        "topic_prefix": prefix,
        "topics": topics,
        "consumer": {"workers": [{"name": "it_per_message", "topics": ["orders"], "dead_letter_topic": "{topic}-dlq"}]}
    }});
    write_config(json).display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn creates_the_configured_partitions_then_reports_them_as_there() {
    let prefix = format!("{}-", unique("ct"));
    let config = config_with(
        &prefix,
        serde_json::json!({"*": {"partitions": 2},
                           "orders": {"partitions": 3, "replication_factor": 1, "config": {"retention.ms": 600000}}}),
    );
    let (orders, dead_letters) = (format!("{prefix}orders"), format!("{prefix}orders-dlq"));
    let args = ["-c", &config, "create-topics", "--consumer-worker", "it_per_message"];
    let brokers = brokers();
    let env = [("KAFKA_BROKERS", brokers.as_str())];
    let table = |status: &str| {
        vec![
            "TOPIC STATUS PARTITIONS REPLICATION CONFIG FOR".to_owned(),
            format!("{orders} {status} 3 1 retention.ms=600000 worker it_per_message"),
            format!("{dead_letters} {status} 2 default - dead letters of it_per_message"),
        ]
    };

    let (code, out, err) = run_to_end(Binary::TestWorkers, &args, &env);
    assert_eq!(code, 0, "{err}");
    assert_eq!(words(&out), table("created"), "{out}");
    assert_eq!(partitions(&[&orders, &dead_letters]).await, [Some(3), Some(2)]);

    let (code, out, err) = run_to_end(Binary::TestWorkers, &args, &env);
    assert_eq!(code, 0, "an existing topic is not an error: {err}");
    assert_eq!(words(&out), table("already exists"), "{out}");
}

#[test]
fn dry_run_shows_the_plan_without_connecting() {
    let prefix = format!("{}-", unique("dry"));
    let config = config_with(&prefix, serde_json::json!({"orders": {"partitions": 4}, "audit": {}}));
    let started = Instant::now();
    // Nothing listens on port 1: a connection attempt would fail or wait.
    let args = ["-c", &config, "--brokers", "127.0.0.1:1", "create-topics", "--dry-run"];
    let (code, out, err) = run_to_end(Binary::TestWorkers, &args, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    let lines = words(&out);
    assert_eq!(lines[0], "TOPIC STATUS PARTITIONS REPLICATION CONFIG FOR");
    // Every worker's topics, the dead-letter topics and the `kafka.topics` entries.
    for line in [
        format!("{prefix}audit to create default default - kafka.topics"),
        format!("{prefix}orders to create 4 default - worker it_per_message"),
        format!("{prefix}orders-dlq to create default default - dead letters of it_per_message"),
        format!("{prefix}my-topic to create default default - worker es"),
    ] {
        assert!(lines.contains(&line), "{line:?} missing from\n{out}");
    }
    assert_eq!(lines.last().map(String::as_str), Some("dry run: nothing was created"));
}

#[test]
fn a_bad_topic_entry_and_an_unreachable_broker_are_clear_errors() {
    let config = config_with("", serde_json::json!({"orders": {"partitons": 3}}));
    let (code, _, err) = run_to_end(Binary::TestWorkers, &["-c", &config, "create-topics", "--dry-run"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("error: {config}:")), "names the file: {err}");
    assert!(err.contains("kafka.topics.orders: unknown field `partitons`, expected one of"), "{err}");

    let config = config_with("", serde_json::json!({"orders": {"replication_factor": 0}}));
    let (code, _, err) = run_to_end(Binary::TestWorkers, &["-c", &config, "create-topics", "--dry-run"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("kafka.topics.orders: `replication_factor` = 0: must be at least 1"), "{err}");

    let config = config_with("", serde_json::json!({}));
    let started = Instant::now();
    let args = ["-c", &config, "--brokers", "127.0.0.1:1", "create-topics", "--consumer-worker", "it_per_message"];
    let (code, _, err) = run_to_end(Binary::TestWorkers, &args, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(
            "error: create-topics: creating the topics: no answer from the brokers at 127.0.0.1:1 within 10 s"
        ),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
}
