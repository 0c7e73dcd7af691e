//! Workers the tests start. They live in this crate, apart from the demo's, which also
//! checks that workers from several crates are all registered.

use std::time::Duration;

use kafka_runtime::prelude::*;
use serde::Deserialize;

use crate::{record_handled, Handled};

fn record(ctx: &WorkerContext, msg: &Message) {
    record_as(ctx, msg, msg.payload_str().unwrap_or("<binary>").to_owned());
}

/// Records a value that does not come with its message's place: the consumer's topics stand
/// for the topic, and partition and offset are -1.
fn record_value(ctx: &WorkerContext, payload: String) {
    record_handled(Handled {
        worker: ctx.name().to_owned(),
        group: ctx.group().to_owned(),
        topic: ctx.topics().join(","),
        partition: -1,
        offset: -1,
        payload,
    });
}

fn record_as(ctx: &WorkerContext, msg: &Message, payload: String) {
    record_handled(Handled {
        worker: ctx.name().to_owned(),
        group: ctx.group().to_owned(),
        topic: msg.topic().to_owned(),
        partition: msg.partition(),
        offset: msg.offset(),
        payload,
    });
}

/// Per-message handler that records every message.
#[kafka_worker(name = "it_per_message")]
pub async fn per_message(msg: Message, ctx: WorkerContext) -> Result<(), WorkerError> {
    record(&ctx, &msg);
    Ok(())
}

/// Per-message handler that records every message, then pauses for the app setting
/// `handler_delay_ms` (none without it): a worker still busy with a backlog.
#[kafka_worker(name = "it_paced")]
pub async fn paced(msg: Message, ctx: WorkerContext) -> Result<(), WorkerError> {
    record(&ctx, &msg);
    let delay: u64 = ctx.setting("handler_delay_ms").transpose()?.unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    Ok(())
}

/// Stream worker that records every message.
#[kafka_worker(name = "it_stream")]
pub async fn stream(mut topic: TopicStream, ctx: WorkerContext) -> Result<(), WorkerError> {
    while let Some(msg) = topic.next().await {
        record(&ctx, &msg);
    }
    Ok(())
}

/// Stream worker that hands each message to a task of its own, which records it and marks it
/// done ([`Ack`](kafka_runtime::Ack)); a message whose payload is `gate` waits until
/// [`crate::open_gate`] is called. Tasks still waiting at shutdown are dropped, their
/// messages not done.
#[kafka_worker(name = "it_stream_tasks")]
pub async fn stream_tasks(mut topic: TopicStream, ctx: WorkerContext) -> Result<(), WorkerError> {
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(msg) = topic.next().await {
        let ack = topic.ack_later().ok_or("no message to take over")?;
        let ctx = ctx.clone();
        tasks.spawn(async move {
            if msg.payload_str().ok() == Some("gate") {
                crate::gate_opened().await;
            }
            record(&ctx, &msg);
            ack.done();
        });
        while tasks.try_join_next().is_some() {}
    }
    Ok(())
}

/// A stream worker that buffers its messages (recording `got:PAYLOAD`) and writes them
/// (recording `flushed:PAYLOAD`, then marking them done) only when told that partitions are
/// being revoked, and at shutdown; a message whose payload starts with `keep` is not written
/// on revoke, only at shutdown. Records `assigned:N` and `revoking:N` for the events.
#[kafka_worker(name = "it_buffered")]
pub async fn buffered(mut topic: TopicStream, ctx: WorkerContext) -> Result<(), WorkerError> {
    use kafka_runtime::{Ack, StreamEvent};
    fn flush(ctx: &WorkerContext, buffer: &mut Vec<(Message, Ack)>, all: bool) {
        let (written, kept) = std::mem::take(buffer)
            .into_iter()
            .partition(|(msg, _)| all || !msg.payload_str().unwrap_or("").starts_with("keep"));
        *buffer = kept;
        for (msg, ack) in written {
            record_as(ctx, &msg, format!("flushed:{}", msg.payload_str().unwrap_or("")));
            ack.done();
        }
    }
    let mut buffer = Vec::new();
    while let Some(event) = topic.next_event().await {
        match event {
            StreamEvent::Message(msg) => {
                record_as(&ctx, &msg, format!("got:{}", msg.payload_str()?));
                buffer.push((msg, topic.ack_later().ok_or("no message to take over")?));
            }
            StreamEvent::Assigned(partitions) => record_value(&ctx, format!("assigned:{}", partitions.len())),
            StreamEvent::Revoking(partitions) => {
                record_value(&ctx, format!("revoking:{}", partitions.len()));
                flush(&ctx, &mut buffer, false);
            }
            _ => {}
        }
    }
    flush(&ctx, &mut buffer, true);
    Ok(())
}

#[derive(Debug, Deserialize)]
pub struct Doc {
    pub id: u64,
}

/// Typed handler: decodes JSON, records key, id and the `trace` header (`-` without one)
/// as the payload.
#[kafka_worker(name = "it_json")]
pub async fn json(Json(doc): Json<Doc>, key: Key, headers: Headers, ctx: WorkerContext) -> Result<(), WorkerError> {
    let trace = headers.get("trace").map_or("-".into(), String::from_utf8_lossy);
    record_value(&ctx, format!("{}:{}:{trace}", key.0.unwrap_or_default(), doc.id));
    Ok(())
}

/// A handler with a bug.
#[kafka_worker(name = "it_panics")]
pub async fn panics(msg: Message) {
    panic!("bug in the handler at offset {}", msg.offset());
}

/// For process tests: prints each message it handles, after a pause set by the app
/// setting `handler_delay_ms`.
#[kafka_worker(name = "it_slow")]
pub async fn slow(msg: Message, ctx: WorkerContext) -> Result<(), WorkerError> {
    let delay: u64 = ctx.setting("handler_delay_ms").transpose()?.unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    println!("handled {} {} {} {}", msg.topic(), msg.partition(), msg.offset(), msg.payload_str()?);
    Ok(())
}

/// Prints `handled TOPIC PARTITION OFFSET PAYLOAD` once done, after `handler_delay_ms`; a
/// message whose offset is a multiple of 25 takes 20 times as long, so that with
/// `ordering = key` later messages of other keys finish before it; one whose payload is
/// `stuck` takes `stuck_ms`.
#[kafka_worker(name = "it_uneven")]
pub async fn uneven(msg: Message, ctx: WorkerContext) -> Result<(), WorkerError> {
    let delay: u64 = ctx.setting("handler_delay_ms").transpose()?.unwrap_or(0);
    let delay = if msg.payload_str()? == "stuck" {
        ctx.setting("stuck_ms").transpose()?.unwrap_or(0)
    } else if msg.offset() % 25 == 0 {
        20 * delay
    } else {
        delay
    };
    tokio::time::sleep(Duration::from_millis(delay)).await;
    println!("handled {} {} {} {}", msg.topic(), msg.partition(), msg.offset(), msg.payload_str()?);
    Ok(())
}

/// `it_uneven` as a stream worker: each message handled in a task of its own (at most 64 at
/// once) and acknowledged there with its `Ack`, so that they finish out of order.
#[kafka_worker(name = "it_uneven_stream")]
pub async fn uneven_stream(mut topic: TopicStream, ctx: WorkerContext) -> Result<(), WorkerError> {
    let room = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(msg) = topic.next().await {
        let ack = topic.ack_later().ok_or("no message to take over")?;
        let permit = std::sync::Arc::clone(&room).acquire_owned().await.map_err(|_| "closed")?;
        let ctx = ctx.clone();
        tasks.spawn(async move {
            let done = uneven(msg, ctx).await;
            ack.done();
            drop(permit);
            done
        });
        while let Some(done) = tasks.try_join_next() {
            done.map_err(|err| err.to_string())??;
        }
    }
    Ok(())
}

/// Forwards every message, key and payload as they are, to the topic named by the app
/// setting `forward_to` (prefixed like every topic).
#[kafka_worker(name = "it_forward")]
pub async fn forward(msg: Message, ctx: WorkerContext) -> Result<(), WorkerError> {
    let to: String = ctx.setting("forward_to").ok_or("the setting forward_to is missing")??;
    let mut message = producer().message_bytes(&to, msg.payload().unwrap_or_default());
    if let Some(key) = msg.key() {
        message = message.key(key);
    }
    message.send().await?;
    Ok(())
}

/// Per-message handler that keeps the CPU busy for the app setting `busy_us` microseconds per
/// message without ever waiting, and records the message: a worker that never yields by itself.
#[kafka_worker(name = "it_busy")]
pub async fn busy(msg: Message, ctx: WorkerContext) -> Result<(), WorkerError> {
    let busy: u64 = ctx.setting("busy_us").transpose()?.unwrap_or(0);
    let until = std::time::Instant::now() + Duration::from_micros(busy);
    while std::time::Instant::now() < until {
        std::hint::spin_loop();
    }
    record(&ctx, &msg);
    Ok(())
}

/// Stream worker that keeps every message it is handed in [`crate::kept`], past its own end.
#[kafka_worker(name = "it_keep")]
pub async fn keep(mut topic: TopicStream) -> Result<(), WorkerError> {
    while let Some(msg) = topic.next().await {
        crate::keep(msg);
    }
    Ok(())
}

/// How many times the message has been tried, this one included.
fn try_number(msg: &Message) -> u32 {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    type Tries = Mutex<HashMap<(String, i32, i64), u32>>;
    static TRIES: OnceLock<Tries> = OnceLock::new();
    let mut all = TRIES.get_or_init(Mutex::default).lock().unwrap();
    let tries = all.entry((msg.topic().to_owned(), msg.partition(), msg.offset())).or_insert(0);
    *tries += 1;
    *tries
}

/// Per-message handler that fails the first 3 tries (the app setting `flaky_tries`) of every
/// message whose payload starts with `flaky`, and records every try (failed ones with the payload `failed:<payload>`).
#[kafka_worker(name = "it_flaky")]
pub async fn flaky(msg: Message, ctx: WorkerContext) -> Result<(), WorkerError> {
    let payload = msg.payload_str()?.to_owned();
    let tries = try_number(&msg);
    let failing: u32 = ctx.setting("flaky_tries").transpose()?.unwrap_or(3);
    if payload.starts_with("flaky") && tries <= failing {
        record_as(&ctx, &msg, format!("failed:{payload}"));
        return Err(format!("{payload} is not ready yet (try {tries})").into());
    }
    record(&ctx, &msg);
    Ok(())
}

/// Batch handler that fails a batch as a unit while a message of it whose payload starts with
/// `flaky` has had at most `flaky_tries` tries (default 3), recording every message of every
/// try (those of failed tries as `failed:<payload>`).
#[kafka_worker(name = "it_flaky_batch", take = 50, within_ms = 100)]
pub async fn flaky_batch(messages: Vec<Message>, ctx: WorkerContext) -> Result<(), WorkerError> {
    let failing: u32 = ctx.setting("flaky_tries").transpose()?.unwrap_or(3);
    let mut not_ready = None;
    for msg in &messages {
        let payload = msg.payload_str()?;
        if payload.starts_with("flaky") {
            let tries = try_number(msg);
            if tries <= failing {
                not_ready.get_or_insert(format!("{payload} is not ready yet (try {tries})"));
            }
        }
    }
    for msg in &messages {
        match &not_ready {
            Some(_) => record_as(&ctx, msg, format!("failed:{}", msg.payload_str()?)),
            None => record(&ctx, msg),
        }
    }
    match not_ready {
        Some(why) => Err(why.into()),
        None => Ok(()),
    }
}

/// Stream worker that records every message and fails, message in hand, on one whose payload
/// is `poison`.
#[kafka_worker(name = "it_stream_poison")]
pub async fn stream_poison(mut topic: TopicStream, ctx: WorkerContext) -> Result<(), WorkerError> {
    while let Some(msg) = topic.next().await {
        if msg.payload_str()? == "poison" {
            return Err("poison found".into());
        }
        record(&ctx, &msg);
    }
    Ok(())
}

/// Batch worker: records a `batch:<size>` marker (partition -1), then every message. A
/// payload starting with `fail-batch` fails the whole batch; one starting with `poison`
/// fails, named by its index, while the rest of the batch counts as done.
#[kafka_worker(name = "it_batch", take = 100, within_ms = 5000)]
pub async fn batch(batch: Batch, ctx: WorkerContext) -> Result<(), WorkerError> {
    let topic = batch.first().map(|m| m.topic().to_owned()).unwrap_or_default();
    record_handled(Handled {
        worker: ctx.name().to_owned(),
        group: ctx.group().to_owned(),
        topic,
        partition: -1,
        offset: -1,
        payload: format!("batch:{}", batch.len()),
    });
    let mut poisoned = None;
    for (index, msg) in batch.iter().enumerate() {
        let payload = msg.payload_str()?;
        if payload.starts_with("fail-batch") {
            return Err("the batch cannot be written".into());
        }
        if payload.starts_with("poison") {
            poisoned.get_or_insert((index, payload.to_owned()));
            continue;
        }
        record(&ctx, msg);
    }
    match poisoned {
        // Every other message is handled: only this one failed.
        Some((index, payload)) => Err(WorkerError::at(index, format!("{payload} cannot be written"))),
        None => Ok(()),
    }
}

/// Batch worker of decoded JSON documents: records each document's id.
#[kafka_worker(name = "it_batch_json", take = 50, within_ms = 1000)]
pub async fn batch_json(docs: Vec<Json<Doc>>, ctx: WorkerContext) {
    for Json(doc) in docs {
        record_value(&ctx, doc.id.to_string());
    }
}

/// For process tests: a batch worker that waits for the app setting `handler_delay_ms`, then
/// prints every message of the batch as `handled ...`. It prints `batch <size>` when it starts.
#[kafka_worker(name = "it_slow_batch", take = 200, within_ms = 200)]
pub async fn slow_batch(messages: Vec<Message>, ctx: WorkerContext) -> Result<(), WorkerError> {
    println!("batch {}", messages.len());
    let delay: u64 = ctx.setting("handler_delay_ms").transpose()?.unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    for msg in &messages {
        println!("handled {} {} {} {}", msg.topic(), msg.partition(), msg.offset(), msg.payload_str()?);
    }
    Ok(())
}

/// Records `start:<key>:<payload>` when called and `end:<key>:<payload>` when done, with the
/// pause of the app setting `handler_delay_ms` in between: `handled_at` then tells which
/// calls overlapped.
#[kafka_worker(name = "it_timed")]
pub async fn timed(msg: Message, ctx: WorkerContext) -> Result<(), WorkerError> {
    let key = msg.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
    let payload = msg.payload_str()?.to_owned();
    record_as(&ctx, &msg, format!("start:{key}:{payload}"));
    let delay: u64 = ctx.setting("handler_delay_ms").transpose()?.unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    record_as(&ctx, &msg, format!("end:{key}:{payload}"));
    Ok(())
}

/// Records every message; one whose payload is `gate` waits until [`crate::open_gate`] is
/// called, then fails.
#[kafka_worker(name = "it_gate")]
pub async fn gate(msg: Message, ctx: WorkerContext) -> Result<(), WorkerError> {
    if msg.payload_str()? == "gate" {
        crate::gate_opened().await;
        return Err("the gate failed".into());
    }
    record(&ctx, &msg);
    Ok(())
}

/// Logs one line per message with `tracing`, inside the message's span.
#[kafka_worker(name = "it_logs")]
pub async fn logs(msg: Message) {
    tracing::warn!("handling payload {}", msg.payload_str().unwrap_or("<binary>"));
}

/// Records `start:<len>:<last offset>` when called and `end:<len>:<last offset>` when done,
/// under its first message's partition and offset (partition -2 when the batch mixes
/// partitions), with the pause of `handler_delay_ms` in between; each message is recorded
/// too. `handled_at` then tells which batches overlapped.
#[kafka_worker(name = "it_timed_batch", take = 50, within_ms = 100)]
pub async fn timed_batch(messages: Vec<Message>, ctx: WorkerContext) -> Result<(), WorkerError> {
    let first = &messages[0];
    let last = messages.last().map_or(-1, |m| m.offset());
    let one_partition = messages.iter().all(|m| m.partition() == first.partition());
    let mark = |what: &str| Handled {
        worker: ctx.name().to_owned(),
        group: ctx.group().to_owned(),
        topic: first.topic().to_owned(),
        partition: if one_partition { first.partition() } else { -2 },
        offset: first.offset(),
        payload: format!("{what}:{}:{last}", messages.len()),
    };
    record_handled(mark("start"));
    let delay: u64 = ctx.setting("handler_delay_ms").transpose()?.unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    for msg in &messages {
        record(&ctx, msg);
    }
    record_handled(mark("end"));
    Ok(())
}
