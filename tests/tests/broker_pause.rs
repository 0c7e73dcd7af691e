//! The broker stops answering for 10 s mid-stream (SIGSTOP, then SIGCONT): the worker
//! recovers by itself and finishes, nothing lost. The test starts a Tansu broker of its own,
//! so the shared one is never paused.

use std::time::Duration;

use kafka_integration_tests::*;

const TOTAL: usize = 4000;

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_paused_for_10_s_mid_stream_loses_nothing() {
    let broker = OwnBroker::start();
    let topic = unique("paused");
    create_topics_on(&broker.bootstrap, &[&topic], 3).await;
    produce_ids(&broker.bootstrap, &topic, 0..TOTAL).await;
    let config = write_config(serde_json::json!({
        "handler_delay_ms": 1,
        "kafka": {"consumer_connection_settings": fast_settings()}
    }));
    let config = config.display().to_string();
    let args = ["-c", &config, "start-consumer", "--consumer-worker", "it_paced", "--topics", &topic];
    let running = InProcess::start_on(&broker.bootstrap, &args);

    wait_handled(500, |h| h.topic == topic).await;
    broker.signal("STOP");
    // The pause is the fault itself: its length is the point, not a guess at an event.
    tokio::time::sleep(Duration::from_secs(10)).await;
    broker.signal("CONT");
    wait_distinct(&topic, TOTAL).await;
    running.stop().await.expect("clean stop");
    ledger(&topic, TOTAL);
}
