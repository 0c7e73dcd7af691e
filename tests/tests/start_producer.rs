//! `start-producer` in every mode, as a process of the demo binary, read back with plain
//! rdkafka.

use kafka_integration_tests::*;
use rdkafka::message::{Headers, Message};

fn start_producer(topic: &str, extra: &[&str], input: Option<&str>) -> (i32, String, String) {
    let brokers = brokers();
    let mut args = vec!["--brokers", &brokers, "start-producer", "--topic", topic];
    args.extend_from_slice(extra);
    run_with_input(Binary::Demo, &args, &[], input)
}

#[tokio::test(flavor = "multi_thread")]
async fn data_mode_prints_the_delivery_report() {
    let topic = unique("sp-data");
    create_topics(&[&topic], 1).await;
    let (code, out, err) =
        start_producer(&topic, &["--data", r#"{"a": 1}"#, "--key", "k", "--header", "source=cli"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("delivered to {topic} partition 0 offset 0")), "{out}");
    let message = &consume(&topic, 1).await[0];
    assert_eq!(message.payload(), Some(&br#"{"a": 1}"#[..]));
    assert_eq!(message.key(), Some(&b"k"[..]));
    let header = message.headers().unwrap().get(0);
    assert_eq!((header.key, header.value), ("source", Some(&b"cli"[..])));
}

#[tokio::test(flavor = "multi_thread")]
async fn interactive_mode_sends_lines_until_an_empty_one() {
    let topic = unique("sp-interactive");
    create_topics(&[&topic], 1).await;
    let (code, out, err) = start_producer(&topic, &["-i"], Some("{\"n\": 1}\n{\"n\": 2}\n\n{\"n\": 3}\n"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().filter(|l| l.starts_with("delivered to")).count(), 2, "{out}");
    let read = consume(&topic, 2).await;
    let payloads: Vec<&[u8]> = read.iter().map(|m| m.payload().unwrap()).collect();
    assert_eq!(payloads, [&br#"{"n": 1}"#[..], &br#"{"n": 2}"#[..]]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_mode_sends_every_line_and_reports_bad_json_by_line_number() {
    let topic = unique("sp-bulk");
    create_topics(&[&topic], 3).await;
    let mut input: String = (1..=5000).map(|n| format!("{{\"n\": {n}}}\n")).collect();
    input.insert_str(0, "not json\n");
    let (code, out, err) = start_producer(&topic, &[], Some(&input));
    assert_eq!(code, 1, "a bad line makes the run fail: {out}{err}");
    assert!(err.contains("error: line 1: not valid JSON"), "{err}");
    assert!(out.contains("5001 lines read: 5000 delivered"), "{out}");
    assert!(out.contains("1 invalid"), "{out}");
    assert!(err.contains("1 line was not sent because it is not valid JSON"), "{err}");
    assert_eq!(consume(&topic, 5000).await.len(), 5000);
}

#[tokio::test(flavor = "multi_thread")]
async fn bytes_serializer_sends_text_as_it_is() {
    let topic = unique("sp-bytes");
    create_topics(&[&topic], 1).await;
    let (code, out, err) = start_producer(&topic, &["--serializer", "bytes"], Some("plain text\nmore\n"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2 lines read: 2 delivered"), "{out}");
    let read = consume(&topic, 2).await;
    assert_eq!(read[0].payload(), Some(&b"plain text"[..]));
    assert_eq!(read[1].payload(), Some(&b"more"[..]));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_summary_names_the_topic_as_sent_with_its_prefix() {
    let topic = unique("sp-prefixed");
    let prefixed = format!("p-{topic}");
    create_topics(&[&prefixed], 1).await;
    let (code, out, err) = start_producer(&topic, &["--topic-prefix", "p-"], Some("{\"n\": 1}\n"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("1 line read: 1 delivered to {prefixed}, 0 failed")), "{out}");
    assert_eq!(consume(&prefixed, 1).await.len(), 1);
}

#[test]
fn start_producer_needs_a_broker() {
    let (code, _, err) = run_to_end(Binary::Demo, &["start-producer", "--topic", "t", "--data", "1"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("start-producer needs a broker"), "{err}");
}

/// `start-producer` against `brokers` with a drain timeout of 2 s: (exit code, stderr, how
/// long it ran).
fn start_producer_on(brokers: &str, extra: &[&str], input: Option<&str>) -> (i32, String, std::time::Duration) {
    let mut args = vec!["--brokers", brokers, "--drain-timeout-ms", "2000", "start-producer", "--topic", "t"];
    args.extend_from_slice(extra);
    let started = std::time::Instant::now();
    let (code, _out, err) = run_with_input(Binary::Demo, &args, &[], input);
    (code, err, started.elapsed())
}

#[tokio::test(flavor = "multi_thread")]
async fn data_mode_gives_up_after_the_drain_timeout_when_no_broker_answers() {
    let (code, err, took) = start_producer_on("127.0.0.1:1", &["--data", "{}"], None);
    eprintln!("took {took:?}");
    assert_eq!(code, 1, "{err}");
    assert!(took < std::time::Duration::from_secs(12), "took {took:?} for a drain timeout of 2 s");
    assert!(err.contains("error: not delivered: no delivery report within the drain timeout (2000 ms"), "{err}");
    assert!(err.contains("127.0.0.1:1"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_mode_gives_up_after_the_drain_timeout_when_no_broker_answers() {
    let input: String = (1..=100).map(|n| format!("{{\"n\": {n}}}\n")).collect();
    let (code, err, took) = start_producer_on("127.0.0.1:1", &[], Some(&input));
    eprintln!("took {took:?}");
    assert_eq!(code, 1, "{err}");
    assert!(took < std::time::Duration::from_secs(12), "took {took:?} for a drain timeout of 2 s");
    assert!(err.contains("error: 100 messages were not delivered: no delivery report"), "{err}");
    assert!(err.contains("error: 100 messages were not delivered\n"), "the exit reason: {err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn data_mode_gives_up_after_the_drain_timeout_when_the_broker_is_paused() {
    let broker = OwnBroker::start();
    create_topics_on(&broker.bootstrap, &["t"], 1).await;
    broker.signal("STOP");
    let (code, err, took) = start_producer_on(&broker.bootstrap, &["--data", "{}"], None);
    broker.signal("CONT");
    eprintln!("took {took:?}");
    assert_eq!(code, 1, "{err}");
    assert!(took < std::time::Duration::from_secs(12), "took {took:?} for a drain timeout of 2 s");
    assert!(err.contains("error: not delivered: no delivery report within the drain timeout"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn interactive_mode_gives_up_on_a_line_after_the_drain_timeout_when_no_broker_answers() {
    let (code, err, took) = start_producer_on("127.0.0.1:1", &["-i"], Some("{}\n\n"));
    eprintln!("took {took:?}");
    assert_eq!(code, 1, "{err}");
    assert!(took < std::time::Duration::from_secs(12), "took {took:?} for a drain timeout of 2 s");
    assert!(
        err.contains("error: line 1: not delivered: no delivery report within the drain timeout (2000 ms"),
        "{err}"
    );
    assert!(err.contains("error: 1 message was not delivered"), "{err}");
}
