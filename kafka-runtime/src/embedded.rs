//! The embedded default: librdkafka's in-process mock cluster, used when no broker is
//! configured anywhere. Nothing is persisted.

use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread::JoinHandle;

use rdkafka::mocking::MockCluster;
use tokio::sync::watch;

use crate::error::Error;

/// Partitions of each topic the embedded cluster creates up front.
pub const EMBEDDED_PARTITIONS: i32 = 3;

/// A running mock cluster. It lives on a thread of its own (librdkafka's mock handle must
/// stay on one thread) and stops when this is dropped.
pub(crate) struct EmbeddedCluster {
    bootstrap: String,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// What the embedded cluster offers once it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbeddedInfo {
    /// Its bootstrap address, for any Kafka client in this process or on this machine.
    pub bootstrap_servers: String,
    /// The topics it created, prefixed.
    pub topics: Vec<String>,
}

fn announced() -> &'static watch::Sender<Option<EmbeddedInfo>> {
    static ANNOUNCED: OnceLock<watch::Sender<Option<EmbeddedInfo>>> = OnceLock::new();
    ANNOUNCED.get_or_init(|| watch::channel(None).0)
}

/// Waits until this process starts the embedded cluster, and returns its address. Never
/// resolves when a real broker is configured.
pub async fn embedded_cluster() -> EmbeddedInfo {
    let mut receiver = announced().subscribe();
    loop {
        if let Some(info) = receiver.borrow_and_update().clone() {
            return info;
        }
        if receiver.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl EmbeddedCluster {
    /// Starts a one-broker mock cluster with `topics` created up front.
    pub(crate) fn start(topics: Vec<String>) -> Result<Self, Error> {
        let (ready_tx, ready_rx) = mpsc::channel::<Result<String, String>>();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let created = topics.clone();
        let thread = std::thread::Builder::new()
            .name("kafka-embedded".into())
            .spawn(move || {
                let cluster = match MockCluster::new(1) {
                    Ok(cluster) => cluster,
                    Err(err) => {
                        let _ = ready_tx.send(Err(err.to_string()));
                        return;
                    }
                };
                for topic in &created {
                    if let Err(err) = cluster.create_topic(topic, EMBEDDED_PARTITIONS, 1) {
                        let _ = ready_tx.send(Err(format!("cannot create topic {topic}: {err}")));
                        return;
                    }
                }
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                // Keep the cluster until the handle is dropped (or the process ends).
                let _ = stop_rx.recv();
                drop(cluster);
            })
            .map_err(|err| Error::Config(format!("cannot start the embedded mock cluster: {err}")))?;
        let bootstrap = match ready_rx.recv() {
            Ok(Ok(bootstrap)) => bootstrap,
            Ok(Err(reason)) => return Err(Error::Config(format!("cannot start the embedded mock cluster: {reason}"))),
            Err(_) => return Err(Error::Config("the embedded mock cluster stopped while starting".into())),
        };
        tracing::warn!(
            "no brokers configured: using the embedded in-process mock cluster at {bootstrap}. \
             Nothing is persisted; everything is lost when the process exits. Set kafka.brokers \
             in config.json, KAFKA_BROKERS or --brokers to use a real cluster."
        );
        announced().send_replace(Some(EmbeddedInfo { bootstrap_servers: bootstrap.clone(), topics }));
        Ok(Self { bootstrap, stop: Some(stop_tx), thread: Some(thread) })
    }

    pub(crate) fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }
}

impl Drop for EmbeddedCluster {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
