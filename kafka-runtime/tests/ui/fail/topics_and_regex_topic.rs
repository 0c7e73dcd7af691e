use kafka_runtime::{kafka_worker, Message};

#[kafka_worker(topics = ["orders"], regex_topic = "^orders-.*")]
async fn worker(_msg: Message) {}

fn main() {}
