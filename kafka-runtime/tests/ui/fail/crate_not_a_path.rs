// `crate` takes the name the app's Cargo.toml gives kafka-runtime, as a Rust path: the
// package name with its hyphen is not one.
use kafka_runtime::{kafka_worker, Message};

#[kafka_worker(crate = "kafka-runtime", topics = ["t"])]
async fn worker(_msg: Message) {}

#[kafka_runtime::kafka_main(crate = "kafka-runtime")]
async fn main() {}
