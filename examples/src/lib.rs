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

/// Stream worker: gets its topic stream and loops itself. It writes what it reads in
/// batches of `WRITE_EVERY`, as a worker that buffers writes to a store would: each message is
/// taken over with `ack_later()` and marked done once written. When told that partitions are
/// being revoked (and at shutdown) it writes what it holds, so that the commit that hands the
/// partitions to another member includes it, as the original's `flush()` on revoke.
#[kafka_worker(name = "default", group = "default_group", topics = ["default-topic"])]
pub async fn default_worker(mut topic: TopicStream, ctx: WorkerContext) -> Result<(), WorkerError> {
    const WRITE_EVERY: usize = 10;
    let mut seen = 0u64;
    let mut unwritten: Vec<Ack> = Vec::new();
    while let Some(event) = topic.next_event().await {
        match event {
            StreamEvent::Message(msg) => {
                seen += 1;
                println!(
                    "default: {}[{}]@{} {} ({} so far)",
                    msg.topic(),
                    msg.partition(),
                    msg.offset(),
                    msg.payload_str().unwrap_or("<binary>"),
                    seen
                );
                unwritten.push(topic.ack_later().ok_or("no message to take over")?);
                if unwritten.len() >= WRITE_EVERY {
                    write(&mut unwritten, "batch full");
                }
            }
            StreamEvent::Assigned(partitions) => tracing::info!("default: assigned {}", list(&partitions)),
            StreamEvent::Revoking(partitions) => {
                write(&mut unwritten, &format!("revoking {}", list(&partitions)));
            }
            _ => {}
        }
    }
    write(&mut unwritten, "shutting down");
    tracing::info!("worker {} saw {seen} messages", ctx.name());
    Ok(())
}

/// Stands for a bulk write: the messages are done once it succeeds.
fn write(unwritten: &mut Vec<Ack>, why: &str) {
    if !unwritten.is_empty() {
        println!("default: wrote {} messages ({why})", unwritten.len());
        unwritten.drain(..).for_each(Ack::done);
    }
}

fn list(partitions: &[Partition]) -> String {
    partitions.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}
