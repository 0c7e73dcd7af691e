//! A demo feed: when the app runs on the embedded mock cluster, sends a JSON document to
//! each topic it created every second, so the workers visibly do work. Any Kafka client can
//! send more to the bootstrap address the app logs.

use std::time::Duration;

use kafka_runtime::rdkafka::client::ClientContext;
use kafka_runtime::rdkafka::config::RDKafkaLogLevel;
use kafka_runtime::rdkafka::error::KafkaError;
use kafka_runtime::rdkafka::producer::{FutureProducer, FutureRecord, ProducerContext};
use kafka_runtime::rdkafka::ClientConfig;

/// Keeps the feed quiet when the embedded cluster goes away at shutdown.
struct QuietFeed;

impl ClientContext for QuietFeed {
    fn log(&self, _level: RDKafkaLogLevel, fac: &str, message: &str) {
        tracing::debug!("demo feed: {fac}: {message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!("demo feed: {error}: {reason}");
    }
}

impl ProducerContext for QuietFeed {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &kafka_runtime::rdkafka::message::DeliveryResult<'_>, _: ()) {}
}

pub fn start_on_embedded_cluster() {
    if std::env::var_os("KAFKA_DEMO_FEED").is_some_and(|v| v == "0") {
        return;
    }
    tokio::spawn(async {
        let cluster = kafka_runtime::embedded_cluster().await;
        let producer: FutureProducer<QuietFeed> = match ClientConfig::new()
            .set("bootstrap.servers", &cluster.bootstrap_servers)
            .create_with_context(QuietFeed)
        {
            Ok(producer) => producer,
            Err(err) => {
                tracing::warn!("demo feed disabled: {err}");
                return;
            }
        };
        tracing::info!(
            "demo feed: one document a second to {} (set KAFKA_DEMO_FEED=0 to turn it off)",
            cluster.topics.join(", ")
        );
        for id in 1u64.. {
            for topic in &cluster.topics {
                let payload = format!(r#"{{"id": {id}, "text": "demo document {id}"}}"#);
                let key = format!("doc-{id}");
                let record = FutureRecord::to(topic).key(&key).payload(&payload);
                if let Err((err, _)) = producer.send(record, Duration::from_secs(5)).await {
                    tracing::warn!("demo feed: cannot send to {topic}: {err}");
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}
