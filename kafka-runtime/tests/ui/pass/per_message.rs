// Per-message handlers: every accepted first argument, extractors after it, and every
// accepted return type.
use kafka_runtime::extract::{Headers, Json, Key, Text};
use kafka_runtime::{kafka_worker, Message, WorkerContext, WorkerError};

#[derive(serde::Deserialize)]
struct Order {
    id: u64,
}

#[kafka_worker(name = "raw", group = "g", topics = ["a", "b"])]
async fn raw(msg: Message, ctx: WorkerContext) -> Result<(), WorkerError> {
    let _ = (msg.offset(), ctx.name());
    Ok(())
}

#[kafka_worker(topics = ["orders"])]
async fn orders(Json(order): Json<Order>, key: Key, headers: Headers, _ctx: WorkerContext) -> Result<(), String> {
    let _ = (order.id, key.0, headers.get("h"));
    Ok(())
}

#[kafka_worker(topics = ["values"])]
async fn values(Json(value): Json<serde_json::Value>) -> Result<(), &'static str> {
    let _ = value;
    Ok(())
}

#[kafka_worker(topics = ["text"])]
async fn text(Text(text): Text) {
    let _ = text;
}

#[kafka_worker(topics = ["keys"])]
async fn keys(key: Key, headers: Headers) -> Result<(), std::io::Error> {
    let _ = (key, headers);
    Ok(())
}

#[kafka_worker(topics = ["ctx"])]
async fn context_first(ctx: WorkerContext, headers: Headers) {
    let _ = (ctx, headers);
}

fn main() {}
