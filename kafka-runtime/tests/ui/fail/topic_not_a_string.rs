use kafka_runtime::{kafka_worker, Message};

#[kafka_worker(topics = [1])]
async fn worker(_msg: Message) {}

fn main() {}
