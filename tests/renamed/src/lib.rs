//! A worker of an app that depends on kafka-runtime as `renamed_kafka`.

use renamed_kafka::{Message, WorkerError};

#[renamed_kafka::kafka_worker(crate = "renamed_kafka", name = "renamed", group = "renamed_group", topics = ["renamed-topic"])]
pub async fn renamed_worker(msg: Message) -> Result<(), WorkerError> {
    let _ = msg.offset();
    Ok(())
}
