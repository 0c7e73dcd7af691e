use kafka_runtime::{kafka_worker, Message};

#[kafka_worker(topics = ["t"])]
fn worker(_msg: Message) {}

fn main() {}
