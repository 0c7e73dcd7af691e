use kafka_runtime::{kafka_worker, Message};

#[kafka_worker(group = "a", topics = ["t"], group = "b")]
async fn worker(_msg: Message) {}

fn main() {}
