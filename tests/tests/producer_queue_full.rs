//! A producer whose broker never answers: `send` waits for room up to the queue timeout,
//! and the shutdown flush reports what was not delivered.

use std::time::{Duration, Instant};

use kafka_runtime::{producer, ProducerSetup, SendError};

#[tokio::test(flavor = "multi_thread")]
async fn a_full_queue_waits_then_fails_and_flush_reports_the_rest() {
    let timeout = Duration::from_millis(300);
    producer()
        .setup(
            ProducerSetup::new()
                .brokers("127.0.0.1:1")
                .set("queue.buffering.max.messages", "10")
                .set("message.timeout.ms", "600000")
                .queue_timeout(timeout),
        )
        .await
        .expect("setup");
    for n in 0..10u8 {
        producer().message_bytes("nowhere", &[n]).send_and_forget().await.expect("room for 10");
    }
    let started = Instant::now();
    let err = producer().message_bytes("nowhere", b"one too many").send_and_forget().await.expect_err("full");
    assert!(matches!(err, SendError::QueueFull(_)), "{err}");
    assert!(started.elapsed() >= timeout, "it must wait before failing, waited {:?}", started.elapsed());

    let lost = producer().flush(Duration::from_millis(500)).await;
    assert_eq!(lost, 10, "every queued message is reported as failed");
    assert_eq!(producer().stats().forgotten_failed, 10);
}
