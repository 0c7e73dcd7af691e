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
