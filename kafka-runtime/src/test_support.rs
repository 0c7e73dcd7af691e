//! What the crate's own tests against the broker share: the broker, topics with messages in
//! them, and a consumer built the way the runner builds one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::config::client::client_config;

/// The broker under test: `KAFKA_BROKERS`, which `scripts/test.sh` sets after starting one.
pub(crate) fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").ok().filter(|b| !b.is_empty()).unwrap_or_else(|| {
        panic!("KAFKA_BROKERS is not set: run the tests with scripts/test.sh, which starts a broker")
    })
}

/// A name no other test or run uses.
pub(crate) fn unique(name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{name}-{}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed), nanos % 1_000_000_000)
}

/// A new topic with one partition holding `count` messages, each with a header `n`.
pub(crate) async fn topic_with_messages(name: &str, count: usize) -> String {
    let topic = unique(name);
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers()).create().expect("admin client");
    let created = admin
        .create_topics(&[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .expect("create topic");
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", brokers()).set("linger.ms", "5").create().expect("producer");
    let sends: Vec<_> = (0..count)
        .map(|n| {
            let (producer, topic) = (producer.clone(), topic.clone());
            tokio::spawn(async move {
                let value = n.to_string();
                let headers = OwnedHeaders::new().insert(Header { key: "n", value: Some(&value) });
                let record = FutureRecord::<str, str>::to(&topic).payload(&value).headers(headers);
                producer.send(record, Duration::from_secs(30)).await.map(drop).map_err(|(err, _)| err)
            })
        })
        .collect();
    for sent in sends {
        sent.await.expect("send task").expect("delivered");
    }
    topic
}

/// A consumer's settings as the runner gets them, with a short session so the group joins fast.
pub(crate) fn consumer_config(group: &str) -> ClientConfig {
    let settings = [
        ("group.id", group),
        ("enable.auto.offset.store", "false"),
        ("auto.offset.reset", "earliest"),
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "500"),
    ];
    client_config(&brokers(), settings)
}

/// Waits at most a minute for `future`.
pub(crate) async fn within_a_minute<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), future).await.expect("timed out")
}

/// A registered worker on `app::workers::handler`, for tests that merge configuration.
pub(crate) fn registration(
    name: &'static str,
    topics: &'static [&'static str],
    group: Option<&'static str>,
) -> &'static crate::worker::registry::WorkerRegistration {
    Box::leak(Box::new(crate::worker::registry::WorkerRegistration {
        name,
        rust_path: "app::workers::handler",
        group,
        topics,
        regex_topic: None,
        failure: Default::default(),
        batch: Default::default(),
        concurrency: Default::default(),
        build: || unreachable!("not built in these tests"),
    }))
}
