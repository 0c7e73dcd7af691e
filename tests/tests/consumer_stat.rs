//! `consumer-stat` as a process. Exact numbers are checked on librdkafka's mock cluster (a
//! process of its own): Tansu answers ListOffsets(latest) with less than the log end (the
//! last batch's base offset plus one), so there it runs as a smoke test while a worker runs.

use std::time::{Duration, Instant};

use kafka_integration_tests::*;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const PER_MESSAGE: &str = "kafka_integration_tests::workers::per_message";

/// Starts a mock cluster with `topics` (`name:partitions`); returns it and its address.
async fn mock_broker(topics: &[String]) -> (Process, String) {
    let args: Vec<&str> = topics.iter().map(String::as_str).collect();
    let mut broker = Process::spawn(Binary::MockBroker, &args);
    let bootstrap = broker.wait_lines(1, |l| l.starts_with("bootstrap ")).await[0]["bootstrap ".len()..].to_owned();
    (broker, bootstrap)
}

/// Sends `count` messages to each `(topic, partition, count)`, and waits until all are acknowledged.
async fn fill(bootstrap: &str, counts: &[(&str, i32, usize)]) {
    let bootstrap = bootstrap.to_owned();
    let counts: Vec<(String, i32, usize)> = counts.iter().map(|(t, p, n)| ((*t).to_owned(), *p, *n)).collect();
    tokio::task::spawn_blocking(move || {
        let producer: BaseProducer =
            ClientConfig::new().set("bootstrap.servers", &bootstrap).create().expect("producer");
        for (topic, partition, count) in &counts {
            for n in 0..*count {
                let payload = format!("id{n}");
                let mut record = BaseRecord::<(), str>::to(topic).payload(&payload).partition(*partition);
                while let Err((_, back)) = producer.send(record) {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        producer.flush(Duration::from_secs(30)).expect("flushed");
    })
    .await
    .expect("fill task");
}

/// Commits `offsets` (`(topic, partition, offset)`) for `group` with plain rdkafka, without
/// joining the group.
async fn commit(bootstrap: &str, group: &str, offsets: &[(&str, i32, i64)]) {
    let mut list = TopicPartitionList::new();
    for (topic, partition, offset) in offsets {
        list.add_partition_offset(topic, *partition, Offset::Offset(*offset)).expect("offset");
    }
    let (bootstrap, group) = (bootstrap.to_owned(), group.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        consumer.commit(&list, CommitMode::Sync).expect("commit");
    })
    .await
    .expect("commit task");
}

/// Each line, its cells one space apart.
fn words(text: &str) -> Vec<String> {
    text.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect()
}

/// A worker entry running the per-message test worker under another name.
fn entry(name: &str, group: &str, topics: serde_json::Value) -> serde_json::Value {
    let mut entry = serde_json::json!({"name": name, "path": PER_MESSAGE, "group": group});
    if topics.is_string() {
        entry["regex_topic"] = topics;
    } else {
        entry["topics"] = topics;
    }
    entry
}

fn config(workers: Vec<serde_json::Value>) -> String {
    let json = serde_json::json!({"kafka": {"consumer_connection_settings": fast_settings(),
                                            "consumer": {"workers": workers}}});
    write_config(json).display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn shows_commits_log_ends_and_lags_exactly_for_every_kind_of_worker() {
    let base = unique("stat");
    let (a, b, missing) = (format!("{base}-a"), format!("{base}-b"), format!("{base}-none"));
    let (broker, bootstrap) = mock_broker(&[format!("{a}:3"), format!("{b}:1")]).await;
    fill(&bootstrap, &[(&a, 0, 10), (&a, 1, 20), (&a, 2, 5), (&b, 0, 7)]).await;
    let groups = [unique("committed"), unique("never"), unique("above"), unique("regex")];
    let [committed, never, above, regex] = groups.each_ref().map(String::as_str);
    let (per_topic_a, per_topic_b) = (format!("pt-{a}"), format!("pt-{b}"));
    commit(&bootstrap, committed, &[(&a, 0, 4), (&a, 1, 20)]).await;
    // A commit past the log end: what a broker whose reported end is too low looks like.
    commit(&bootstrap, above, &[(&b, 0, 50)]).await;
    commit(&bootstrap, &per_topic_a, &[(&a, 0, 10), (&a, 1, 10), (&a, 2, 5)]).await;
    commit(&bootstrap, &per_topic_b, &[(&b, 0, 7)]).await;
    commit(&bootstrap, regex, &[(&b, 0, 3)]).await;
    let config = config(vec![
        entry("it_per_message", committed, serde_json::json!([a])),
        entry("stat_never", never, serde_json::json!([a, missing])),
        entry("stat_above", above, serde_json::json!([b])),
        entry("stat_per_topic", "pt-{topic}", serde_json::json!([a, b])),
        entry("stat_regex", regex, serde_json::json!(format!("{base}-b"))),
    ]);
    let env = [("KAFKA_BROKERS", bootstrap.as_str())];
    let workers = ["it_per_message", "stat_never", "stat_above", "stat_per_topic", "stat_regex"];
    let mut args = vec!["-c", &config, "consumer-stat", "--consumer-worker"];
    args.extend(workers);

    let (code, out, err) = run_to_end(Binary::TestWorkers, &args, &env);
    assert_eq!(code, 0, "{err}");
    let expected = [
        "WORKER GROUP TOPIC PARTITION COMMITTED LOG-START LOG-END LAG NOTE".to_owned(),
        format!("it_per_message {committed} {a} 0 4 0 10 6"),
        format!("it_per_message {committed} {a} 1 20 0 20 0"),
        format!("it_per_message {committed} {a} 2 no commit 0 5 -"),
        "it_per_message (total) 6 not counted: 1 partition without a commit".to_owned(),
        format!("stat_never {never} {a} 0 no commit 0 10 -"),
        format!("stat_never {never} {a} 1 no commit 0 20 -"),
        format!("stat_never {never} {a} 2 no commit 0 5 -"),
        format!("stat_never {never} {missing} - - - - - no such topic"),
        "stat_never (total) 0 not counted: 3 partitions without a commit".to_owned(),
        format!("stat_above {above} {b} 0 50 0 7 ? log end below commit: the broker's reported end is too low"),
        "stat_above (total) 0 not counted: 1 partition with the log end below the commit".to_owned(),
        format!("stat_per_topic {per_topic_a} {a} 0 10 0 10 0"),
        format!("stat_per_topic {per_topic_a} {a} 1 10 0 20 10"),
        format!("stat_per_topic {per_topic_a} {a} 2 5 0 5 0"),
        format!("stat_per_topic {per_topic_b} {b} 0 7 0 7 0"),
        "stat_per_topic (total) 10".to_owned(),
        format!("stat_regex {regex} {b} 0 3 0 7 4"),
        "stat_regex (total) 4".to_owned(),
    ];
    assert_eq!(words(&out), expected, "{out}");

    let args = ["-c", &config, "consumer-stat", "--json", "--consumer-worker", "it_per_message", "stat_above"];
    let (code, out, err) = run_to_end(Binary::TestWorkers, &args, &env);
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let row = |group: &str, topic: &str, partition: i32, committed: Option<i64>, end: i64, lag: Option<i64>| {
        let (status, note) = match (committed, lag) {
            (None, _) => ("no_commit", None),
            (Some(_), None) => {
                ("log_end_below_commit", Some("log end below commit: the broker's reported end is too low"))
            }
            _ => ("committed", None),
        };
        serde_json::json!({"group": group, "topic": topic, "partition": partition, "committed": committed,
                           "log_start": 0, "log_end": end, "lag": lag, "status": status, "note": note,
                           "lag_shrink_per_s": null})
    };
    let expected = serde_json::json!({"workers": [
        {"worker": "it_per_message", "lag": 6, "partitions_without_commit": 1,
         "partitions_with_log_end_below_commit": 0, "lag_shrink_per_s": null, "missing_topics": [],
         "partitions": [row(committed, &a, 0, Some(4), 10, Some(6)), row(committed, &a, 1, Some(20), 20, Some(0)),
                        row(committed, &a, 2, None, 5, None)]},
        {"worker": "stat_above", "lag": 0, "partitions_without_commit": 0,
         "partitions_with_log_end_below_commit": 1, "lag_shrink_per_s": null, "missing_topics": [],
         "partitions": [row(above, &b, 0, Some(50), 7, None)]},
    ]});
    assert_eq!(json, expected, "{out}");
    broker.signal("KILL");
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_shows_how_fast_the_lag_shrinks_and_ends_on_sigint() {
    let topic = unique("watch");
    let (broker, bootstrap) = mock_broker(&[format!("{topic}:1")]).await;
    fill(&bootstrap, &[(&topic, 0, 10)]).await;
    let group = unique("g");
    commit(&bootstrap, &group, &[(&topic, 0, 4)]).await;
    let config = config(vec![entry("it_per_message", &group, serde_json::json!([topic]))]);
    let args = ["-c", &config, "consumer-stat", "--consumer-worker", "it_per_message", "--json", "--watch", "1"];
    let mut watch = Process::spawn_with_env(Binary::TestWorkers, &args, &[("KAFKA_BROKERS", bootstrap.as_str())]);
    let first: serde_json::Value = serde_json::from_str(&watch.wait_lines(1, |_| true).await[0]).expect("JSON");
    assert_eq!(first["workers"][0]["partitions"][0]["lag"], 6);
    assert_eq!(first["workers"][0]["lag_shrink_per_s"], serde_json::Value::Null, "no rate without a previous reading");

    // The group moves on by 6 messages: the first reading that shows it has a rate of 6 per
    // the time since the one before (at least the 1 s between refreshes).
    commit(&bootstrap, &group, &[(&topic, 0, 10)]).await;
    let moved = |line: &str| line.contains(r#""committed":10"#);
    let lines = watch.wait_lines(1, moved).await;
    let after: serde_json::Value = serde_json::from_str(&lines[0]).expect("JSON");
    let worker = &after["workers"][0];
    assert_eq!(worker["partitions"][0]["lag"], 0);
    let rate = worker["lag_shrink_per_s"].as_f64().expect("a rate");
    assert!(rate > 0.0 && rate <= 6.0, "6 messages over at least a second: {rate}");
    assert_eq!(worker["partitions"][0]["lag_shrink_per_s"].as_f64(), Some(rate));
    let readings = watch.lines.len();
    assert!(readings >= 2, "one JSON document per line and reading");

    watch.signal("INT");
    assert_eq!(watch.wait_exit().await, Some(0), "SIGINT ends the watch cleanly");
    broker.signal("KILL");
}

#[test]
fn an_unknown_worker_a_missing_broker_and_an_unreachable_one_are_clear_errors() {
    let (code, _, err) = run_to_end(Binary::TestWorkers, &["consumer-stat", "--consumer-worker", "nope"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("error: unknown worker `nope`; registered workers: "), "{err}");

    let (code, _, err) = run_to_end(Binary::TestWorkers, &["consumer-stat", "--consumer-worker", "it_slow"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("consumer-stat needs a broker: set kafka.brokers in config.json, KAFKA_BROKERS or --brokers"));

    let config = config(vec![entry("it_slow", "g", serde_json::json!(["t"]))]);
    let started = Instant::now();
    let args = ["-c", &config, "--brokers", "127.0.0.1:1", "consumer-stat", "--consumer-worker", "it_slow"];
    let (code, _, err) = run_to_end(Binary::TestWorkers, &args, &[]);
    let took = started.elapsed();
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(
            "error: consumer-stat: worker `it_slow`, group `g`: reading the topics' metadata: no answer from the \
             brokers at 127.0.0.1:1 within 10 s"
        ),
        "{err}"
    );
    assert!(took < Duration::from_secs(20), "gave up after {took:?}");
}

/// On Tansu, with the worker running: its commit as it is, the log end as Tansu reports it.
#[tokio::test(flavor = "multi_thread")]
async fn on_tansu_it_reads_a_running_workers_commit() {
    let (topic, group) = (unique("stat-tansu"), unique("g"));
    create_topics(&[&topic], 1).await;
    let mut settings = fast_settings();
    settings["auto.commit.interval.ms"] = 100.into();
    let config = write_config(serde_json::json!({"kafka": {"consumer_connection_settings": settings,
        "consumer": {"workers": [{"name": "it_slow", "group": group, "topics": [topic]}]}}}));
    let config = config.display().to_string();
    let mut worker =
        Process::spawn(Binary::TestWorkers, &["-c", &config, "start-consumer", "--consumer-worker", "it_slow"]);
    produce_ids(&brokers(), &topic, 0..30).await;
    worker.wait_lines(30, |l| l.starts_with("handled ")).await;
    let deadline = Instant::now() + WAIT;
    while committed(&group, &topic, 1).await != [Some(30)] {
        assert!(Instant::now() < deadline, "the worker never committed 30");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let args = ["-c", &config, "consumer-stat", "--json", "--consumer-worker", "it_slow"];
    let (code, out, err) = run_to_end(Binary::TestWorkers, &args, &[("KAFKA_BROKERS", &brokers())]);
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let partition = &json["workers"][0]["partitions"][0];
    assert_eq!((&partition["group"], &partition["topic"]), (&group.as_str().into(), &topic.as_str().into()));
    assert_eq!(partition["committed"], 30);
    let end = partition["log_end"].as_i64().expect("log end");
    println!("Tansu, 30 messages all committed: log end reported {end}, {partition}");
    if end >= 30 {
        assert_eq!(partition["lag"], end - 30);
    } else {
        assert_eq!(partition["status"], "log_end_below_commit");
        assert_eq!(partition["lag"], serde_json::Value::Null);
    }
    worker.signal("TERM");
    assert_eq!(worker.wait_exit().await, Some(0));
}
