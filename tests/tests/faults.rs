//! Faults injected through librdkafka's mock cluster (not the shared broker, so nothing else
//! is disturbed): request errors on OffsetCommit and Fetch, and the broker going down and
//! coming back mid-stream. Nothing may be lost.

use std::time::Duration;

use kafka_integration_tests::*;
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

const TOTAL: usize = 3000;

#[tokio::test(flavor = "multi_thread")]
async fn request_errors_and_a_broker_outage_lose_nothing() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    let topic = unique("faults");
    cluster.create_topic(&topic, 3, 1).expect("topic");
    produce_ids(&bootstrap, &topic, 0..TOTAL / 2).await;

    let config = write_config(serde_json::json!({
        "handler_delay_ms": 1,
        "kafka": {"consumer_connection_settings": {
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 500, "fetch.wait.max.ms": 10,
            "auto.commit.interval.ms": 200
        }}
    }));
    let config = config.display().to_string();
    let args = ["-c", &config, "start-consumer", "--consumer-worker", "it_paced", "--topics", &topic];
    let running = InProcess::start_on(&bootstrap, &args);

    wait_handled(200, |h| h.topic == topic).await;
    // Commits fail for a while, then fetches, then the broker goes away and comes back.
    cluster.request_errors(RDKafkaApiKey::OffsetCommit, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT; 5]);
    cluster.request_errors(RDKafkaApiKey::Fetch, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 5]);
    wait_handled(600, |h| h.topic == topic).await;
    cluster.broker_down(1).expect("broker down");
    produce_after_outage(&cluster, &bootstrap, &topic).await;
    wait_distinct(&topic, TOTAL).await;
    running.stop().await.expect("clean stop");

    ledger(&topic, TOTAL);
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
    produce_ids(bootstrap, topic, TOTAL / 2..TOTAL).await;
}
