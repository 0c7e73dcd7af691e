use kafka_runtime::{kafka_worker, Message};

#[kafka_worker(topics = ["t"], retries = -1, on_decode_error = "skip")]
async fn worker(_msg: Message) {}

fn main() {}
