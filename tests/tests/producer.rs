//! The shared producer against the real broker, read back with plain rdkafka.

use std::time::Duration;

use kafka_integration_tests::*;
use kafka_runtime::{producer, ProducerSetup, Topic};
use rdkafka::message::{Headers, Message};

const PREFIX: &str = "it-prefixed-";

/// Every test in this process shares the one producer; each asks for it the same way.
async fn ready() -> &'static kafka_runtime::Producer {
    let producer = producer();
    producer.setup(ProducerSetup::new().brokers(brokers()).topic_prefix(PREFIX)).await.expect("setup");
    producer
}

#[tokio::test(flavor = "multi_thread")]
async fn key_headers_and_json_value_arrive_intact() {
    let producer = ready().await;
    let name = unique("values");
    let topic = format!("{PREFIX}{name}");
    create_topics(&[&topic], 2).await;
    let value = serde_json::json!({"id": 7, "tags": ["a", "b"], "nested": {"ok": true}});
    let report = producer
        .message(&name, &value)
        .key("the-key")
        .header("trace", "abc")
        .header("empty", "")
        .partition(1)
        .send()
        .await
        .expect("delivered");
    assert_eq!((report.topic.as_str(), report.partition), (topic.as_str(), 1));

    let read = consume(&topic, 1).await;
    let message = &read[0];
    assert_eq!((message.partition(), message.offset()), (report.partition, report.offset));
    assert_eq!(message.key(), Some(&b"the-key"[..]));
    let payload: serde_json::Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
    assert_eq!(payload, value);
    let headers = message.headers().expect("headers");
    let headers: Vec<(String, Vec<u8>)> =
        headers.iter().map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec())).collect();
    assert_eq!(headers, vec![("trace".into(), b"abc".to_vec()), ("empty".into(), Vec::new())]);
}

#[tokio::test(flavor = "multi_thread")]
async fn exact_topics_skip_the_prefix() {
    let producer = ready().await;
    let topic = unique("exact");
    create_topics(&[&topic], 1).await;
    let report = producer.send(Topic::exact(&topic), "plain").await.expect("delivered");
    assert_eq!(report.topic, topic);
    assert_eq!(consume(&topic, 1).await[0].payload(), Some(&br#""plain""#[..]));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_shutdown_flush_loses_nothing_with_100_000_queued() {
    let producer = ready().await;
    let name = unique("flush");
    let topic = format!("{PREFIX}{name}");
    create_topics(&[&topic], 3).await;
    let before = producer.stats();
    for n in 0..100_000u32 {
        producer.message_bytes(&name, &n.to_be_bytes()).send_and_forget().await.expect("queued");
    }
    assert_eq!(producer.flush(Duration::from_secs(60)).await, 0, "messages were lost in the flush");
    let after = producer.stats();
    assert!(after.delivered - before.delivered >= 100_000);
    assert_eq!(after.forgotten_failed, before.forgotten_failed);
    let mut seen: Vec<u32> = consume(&topic, 100_000)
        .await
        .iter()
        .map(|m| u32::from_be_bytes(m.payload().unwrap().try_into().unwrap()))
        .collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 100_000);
}
