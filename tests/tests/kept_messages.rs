//! Messages a worker keeps after it ends: readable from several threads at once, and never
//! keeping the consumer in its group.

use std::sync::atomic::{AtomicUsize, Ordering};

use kafka_integration_tests::*;

/// librdkafka parses a message's headers on first use and writes them into the message:
/// threads reading the headers of one message at once must all see the one parsed list.
#[tokio::test(flavor = "multi_thread")]
async fn headers_read_from_several_threads_at_once_are_parsed_once() {
    const COUNT: usize = 2000;
    let topic = unique("headers-race");
    create_topics(&[&topic], 1).await;
    produce(
        &topic,
        (0..COUNT).map(|n| {
            let mut record = Record::new(format!("m{n}"));
            record.headers = vec![("a".into(), format!("{n}")), ("b".into(), "x".into())];
            record
        }),
    )
    .await;
    let config = write_config(serde_json::json!({"kafka": {"consumer_connection_settings": fast_settings()}}));
    let config = config.display().to_string();
    let running =
        InProcess::start(&["-c", &config, "start-consumer", "--consumer-worker", "it_keep", "--topics", &topic]);
    let messages = take_kept(&topic, COUNT).await;
    running.stop().await.expect("clean stop");

    let mut mismatches = 0;
    for message in &messages {
        // Both threads spin until the other is ready, then read the headers at once.
        let ready = AtomicUsize::new(0);
        let read = || {
            ready.fetch_add(1, Ordering::AcqRel);
            while ready.load(Ordering::Acquire) < 2 {
                std::hint::spin_loop();
            }
            message
                .headers()
                .map(|(name, value)| (name.as_ptr() as usize, value.map(<[u8]>::to_vec)))
                .collect::<Vec<_>>()
        };
        let (first, second) = std::thread::scope(|s| {
            let other = s.spawn(read);
            (read(), other.join().unwrap())
        });
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].1.as_deref(), Some(&message.payload_str().unwrap().as_bytes()[1..]));
        if first != second || message.headers().next().map(|(name, _)| name.as_ptr() as usize) != Some(first[0].0) {
            mismatches += 1;
        }
    }
    assert_eq!(mismatches, 0, "threads saw different parsed headers for {mismatches} of {COUNT} messages");
}
