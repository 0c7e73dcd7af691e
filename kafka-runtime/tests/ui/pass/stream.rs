// Stream workers: the topic stream alone, or with the worker context.
use kafka_runtime::{kafka_worker, TopicStream, WorkerContext, WorkerError};

#[kafka_worker(name = "default", topics = ["default-topic"])]
async fn with_context(mut topic: TopicStream, ctx: WorkerContext) -> Result<(), WorkerError> {
    while let Some(msg) = topic.next().await {
        let _ = (ctx.name(), msg.offset());
    }
    Ok(())
}

#[kafka_worker(topics = ["other-topic"])]
async fn alone(mut topic: TopicStream) {
    while topic.next().await.is_some() {}
}

fn main() {}
