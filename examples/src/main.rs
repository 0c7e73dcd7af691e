//! The demo app: `cargo run -- start-consumers --consumer-worker es default`.

mod feed;

use kafka_runtime::kafka_main;

// Link the workers of the library crate, so they are registered.
use kafka_demo as _;

#[kafka_main]
async fn main() {
    feed::start_on_embedded_cluster();
}
