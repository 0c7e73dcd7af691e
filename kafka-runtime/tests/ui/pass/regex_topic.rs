// A worker subscribed to a pattern instead of a list of topics.
use kafka_runtime::{kafka_worker, Message, WorkerError};

#[kafka_worker(name = "events", group = "g", regex_topic = "^events-.*")]
async fn events(_msg: Message) -> Result<(), WorkerError> {
    Ok(())
}

fn main() {}
