// The failure policy keys: each one, and the registration they end up in.
use kafka_runtime::{kafka_worker, Message, TopicStream, WorkerError};

#[kafka_worker(
    name = "orders",
    topics = ["orders"],
    retries = 3,
    retry_backoff_ms = 100,
    retry_backoff_max_ms = 30_000,
    dead_letter_topic = "dlq-{topic}",
    on_decode_error = "dead_letter"
)]
async fn orders(msg: Message) -> Result<(), WorkerError> {
    let _ = msg.offset();
    Ok(())
}

// Suffixed numbers, `stop`, and `dead_letter` without a topic (the configuration may give it).
#[kafka_worker(topics = ["events"], retries = 0u32, retry_backoff_ms = 5u64, on_decode_error = "stop")]
async fn events(_topic: TopicStream) {}

#[kafka_worker(topics = ["audit"], on_decode_error = "dead_letter")]
async fn audit(_msg: Message) {}

fn main() {}
