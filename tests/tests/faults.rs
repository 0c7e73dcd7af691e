//! Faults injected through librdkafka's mock cluster (not the shared broker, so nothing else
//! is disturbed): request errors on OffsetCommit and Fetch, and the broker going down and
//! coming back mid-stream. Nothing may be lost.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kafka_integration_tests::*;
use kafka_runtime::Shutdown;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::ClientConfig;

const TOTAL: usize = 3000;

async fn produce_to(bootstrap: &str, topic: &str, ids: std::ops::Range<usize>) {
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("linger.ms", "5").create().expect("producer");
    let sends: Vec<_> = ids
        .map(|id| {
            let (producer, topic) = (producer.clone(), topic.to_owned());
            tokio::spawn(async move {
                let payload = format!("id{id}");
                producer.send(FutureRecord::<str, str>::to(&topic).payload(&payload), Duration::from_secs(30)).await
            })
        })
        .collect();
    for sent in sends {
        sent.await.expect("send task").map_err(|(err, _)| err).expect("delivered");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn request_errors_and_a_broker_outage_lose_nothing() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    let topic = unique("faults");
    cluster.create_topic(&topic, 3, 1).expect("topic");
    produce_to(&bootstrap, &topic, 0..TOTAL / 2).await;

    let config = write_config(serde_json::json!({
        "handler_delay_ms": 1,
        "kafka": {"consumer_connection_settings": {
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 500, "fetch.wait.max.ms": 10,
            "auto.commit.interval.ms": 200
        }}
    }));
    let config = config.display().to_string();
    let shutdown = Shutdown::new();
    let args = [
        "it",
        "--brokers",
        &bootstrap,
        "-c",
        &config,
        "start-consumer",
        "--consumer-worker",
        "it_paced",
        "--topics",
        &topic,
    ]
    .map(str::to_owned);
    let running = tokio::spawn(kafka_runtime::run_with_args(args, shutdown.clone()));

    wait_handled(200, |h| h.topic == topic).await;
    // Commits fail for a while, then fetches, then the broker goes away and comes back.
    cluster.request_errors(RDKafkaApiKey::OffsetCommit, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT; 5]);
    cluster.request_errors(RDKafkaApiKey::Fetch, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 5]);
    wait_handled(600, |h| h.topic == topic).await;
    cluster.broker_down(1).expect("broker down");
    produce_after_outage(&cluster, &bootstrap, &topic).await;
    wait_handled(TOTAL, |h| h.topic == topic).await;
    shutdown.begin();
    tokio::time::timeout(WAIT, running).await.expect("the command ends").expect("no panic").expect("clean stop");

    let all = handled(|h| h.topic == topic);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for h in &all {
        *counts.entry(h.payload.as_str()).or_default() += 1;
    }
    let expected: BTreeSet<String> = (0..TOTAL).map(|id| format!("id{id}")).collect();
    let seen: BTreeSet<String> = counts.keys().map(|k| (*k).to_owned()).collect();
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    println!("faults: {} handled, {} distinct, {duplicates} duplicates", all.len(), seen.len());
    assert_eq!(seen, expected, "a message was lost");
}

/// Brings the broker back after a moment, then sends the second half.
async fn produce_after_outage(
    cluster: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>,
    bootstrap: &str,
    topic: &str,
) {
    // The outage itself is the point: the consumer must ride it out, whatever it is doing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.broker_up(1).expect("broker up");
    produce_to(bootstrap, topic, TOTAL / 2..TOTAL).await;
}
