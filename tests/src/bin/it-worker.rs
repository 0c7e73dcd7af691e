//! The test workers as a process, for tests that kill or signal it.

use kafka_integration_tests as _;
use kafka_runtime::hooks::{add_message_hook, MessageEvent, MessageHook};
use kafka_runtime::Message;

/// On topics whose name holds `hooked`: skips messages whose payload is `skip-me`, and
/// prints `hook TOPIC PARTITION OFFSET ok|failed` after each handled one.
struct PrintingHook;

impl MessageHook for PrintingHook {
    fn before(&self, message: &Message) -> bool {
        !(message.topic().contains("hooked") && message.payload() == Some(b"skip-me"))
    }

    fn after(&self, event: &MessageEvent<'_>) {
        if event.topic.contains("hooked") {
            let outcome = if event.outcome.is_ok() { "ok" } else { "failed" };
            println!("hook {} {} {} {outcome}", event.topic, event.partition, event.offset);
        }
    }
}

#[kafka_runtime::kafka_main]
async fn main() {
    add_message_hook(PrintingHook);
}
