//! The first calls to the shared producer, in a process of their own: before any setup, and
//! 100 setups racing.

use kafka_integration_tests::*;
use kafka_runtime::{producer, ProducerSetup, SendError};

#[tokio::test(flavor = "multi_thread")]
async fn unconfigured_then_one_client_for_100_concurrent_setups() {
    let err = producer().send("anything", &1).await.expect_err("nothing is configured yet");
    assert!(matches!(err, SendError::NotConfigured), "{err}");
    assert!(err.to_string().contains("the producer is not configured"), "{err}");
    assert_eq!(producer().stats().clients_created, 0);

    // A small queue, so that sending below also waits for room instead of failing.
    let setups: Vec<_> = (0..100)
        .map(|_| {
            tokio::spawn(async {
                producer()
                    .setup(ProducerSetup::new().brokers(brokers()).set("queue.buffering.max.messages", "1000"))
                    .await
            })
        })
        .collect();
    for setup in setups {
        setup.await.unwrap().expect("setup");
    }
    assert_eq!(producer().stats().clients_created, 1);

    let topic = unique("room");
    create_topics(&[&topic], 1).await;
    for n in 0..20_000u32 {
        producer().message_bytes(&topic, &n.to_be_bytes()).send_and_forget().await.expect("waits for room");
    }
    assert_eq!(producer().flush(std::time::Duration::from_secs(60)).await, 0);
    assert_eq!(consume(&topic, 20_000).await.len(), 20_000);
    assert_eq!(producer().stats().clients_created, 1);
}
