//! The demo app: `cargo run -- start-consumers --consumer-worker es default`.

mod feed;

use std::time::Duration;

use kafka_runtime::hooks::{add_message_hook, MessageEvent, MessageHook};
use kafka_runtime::kafka_main;

// Link the workers of the library crate, so they are registered.
use kafka_demo as _;

/// Runs around every message the per-message workers handle: warns about slow handlers
/// and failures, naming the message.
struct SlowOrFailed;

impl MessageHook for SlowOrFailed {
    fn after(&self, event: &MessageEvent<'_>) {
        if event.elapsed > Duration::from_millis(500) || event.outcome.is_err() {
            tracing::warn!(
                "{}: topic {}, partition {}, offset {} took {:?} ({})",
                event.worker,
                event.topic,
                event.partition,
                event.offset,
                event.elapsed,
                if event.outcome.is_ok() { "ok" } else { "failed" }
            );
        }
    }
}

#[kafka_main]
async fn main() {
    add_message_hook(SlowOrFailed);
    feed::start_on_embedded_cluster();
}
