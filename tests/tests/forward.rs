//! A worker forwards what it receives through the shared producer; with a topic prefix the
//! worker and the producer meet on prefixed topics.

use std::collections::BTreeSet;

use kafka_integration_tests::*;
use rdkafka::message::Message;

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_forwards_every_message_to_another_topic() {
    let prefix = format!("{}-", unique("fwd"));
    let (input, output) = (format!("{prefix}in"), format!("{prefix}out"));
    create_topics(&[&input, &output], 2).await;
    produce(&input, documents(1, 200)).await;
    let config = write_config(serde_json::json!({
        "forward_to": "out",
        "kafka": {
            "topic_prefix": prefix,
            "consumer_connection_settings": fast_settings(),
            "consumer": {"workers": [{"name": "it_forward", "group": unique("g"), "topics": ["in"]}]}
        }
    }));
    let config = config.display().to_string();
    let running = InProcess::start(&["-c", &config, "start-consumer", "--consumer-worker", "it_forward"]);
    let forwarded = consume(&output, 200).await;
    running.stop().await.expect("clean stop");
    let keys: BTreeSet<String> =
        forwarded.iter().map(|m| String::from_utf8_lossy(m.key().unwrap()).into_owned()).collect();
    let expected: BTreeSet<String> = (1..=200).map(|id| format!("k{id}")).collect();
    assert_eq!(keys, expected);
    for message in &forwarded {
        let key = String::from_utf8_lossy(message.key().unwrap()).into_owned();
        assert_eq!(message.payload(), Some(format!(r#"{{"id": {}}}"#, &key[1..]).as_bytes()));
    }
}
