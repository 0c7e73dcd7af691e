//! The app's entry point, with kafka-runtime renamed: `cargo run -p kafka-renamed-test -- list-workers`.

// Link the workers of the library crate, so they are registered.
use kafka_renamed_test as _;

#[renamed_kafka::kafka_main(crate = "renamed_kafka")]
async fn main() {}
