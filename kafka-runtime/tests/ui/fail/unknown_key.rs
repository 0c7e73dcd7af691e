use kafka_runtime::{kafka_worker, Message};

#[kafka_worker(nme = "x", topics = ["t"])]
async fn worker(_msg: Message) {}

fn main() {}
