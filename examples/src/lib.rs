//! The demo app's workers: `es` and `default`, as in guillotina_kafka's examples.

use kafka_runtime::prelude::*;
use serde::Deserialize;

/// A document the `es` worker indexes.
#[derive(Debug, Deserialize)]
pub struct Document {
    pub id: u64,
    #[serde(default)]
    pub text: String,
}

/// Per-message handler: called once per message, its offset committed after it returns Ok.
/// A payload that is not a JSON `Document` stops the worker with an error that names the
/// message; it is not committed, so nothing is lost.
#[kafka_worker(name = "es", group = "es_group", topics = ["my-topic"])]
pub async fn es_consumer(Json(doc): Json<Document>, msg_key: Key, ctx: WorkerContext) -> Result<(), WorkerError> {
    println!(
        "es: indexed document {} ({:?}) key={} into group {}",
        doc.id,
        doc.text,
        msg_key.0.as_deref().unwrap_or("-"),
        ctx.group()
    );
    Ok(())
}

/// Stream worker: gets its topic stream and loops itself. Each message's offset is stored
/// when the next one is asked for.
#[kafka_worker(name = "default", group = "default_group", topics = ["default-topic"])]
pub async fn default_worker(mut topic: TopicStream, ctx: WorkerContext) -> Result<(), WorkerError> {
    let mut seen = 0u64;
    while let Some(msg) = topic.next().await {
        seen += 1;
        println!(
            "default: {}[{}]@{} {} ({} so far)",
            msg.topic(),
            msg.partition(),
            msg.offset(),
            msg.payload_str().unwrap_or("<binary>"),
            seen
        );
    }
    tracing::info!("worker {} saw {seen} messages", ctx.name());
    Ok(())
}
