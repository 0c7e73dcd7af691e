// Every attribute argument is optional: the name defaults to the function's.
use kafka_runtime::{kafka_worker, Message};

#[kafka_worker]
async fn bare(_msg: Message) {}

#[kafka_worker()]
async fn empty_parens(_msg: Message) {}

pub mod nested {
    #[kafka_runtime::kafka_worker(group = "g")]
    pub async fn in_module(_topic: kafka_runtime::TopicStream) {}
}

fn main() {}
