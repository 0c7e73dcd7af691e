// A `crate` path that does not resolve (here: the app forgot to rename the dependency in
// Cargo.toml) is reported once per macro, on the path.
use kafka_runtime::{kafka_worker, Message};

#[kafka_worker(crate = "my_kafka", topics = ["t"])]
async fn worker(_msg: Message) {}

#[kafka_runtime::kafka_main(crate = "my_kafka")]
async fn main() {}
