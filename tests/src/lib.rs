//! Support for the integration tests: the broker under test, an independent producer, the
//! test workers and what they handled, and the processes under test.

pub mod workers;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use kafka_runtime::{Error, Shutdown};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

// The demo's workers are registered from another crate: link it.
pub use kafka_demo;

/// How long any wait in these tests may take before it fails.
pub const WAIT: Duration = Duration::from_secs(90);

/// The broker under test: `KAFKA_BROKERS`, which `scripts/test.sh` sets after starting Tansu.
pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").ok().filter(|b| !b.is_empty()).unwrap_or_else(|| {
        panic!(
            "KAFKA_BROKERS is not set: run the tests with scripts/test.sh, which starts a broker, \
             or point KAFKA_BROKERS at one"
        )
    })
}

/// A name no other test or run uses.
pub fn unique(name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{name}-{}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed), nanos % 1_000_000_000)
}

/// Creates topics with `partitions` partitions each.
pub async fn create_topics(topics: &[&str], partitions: i32) {
    create_topics_on(&brokers(), topics, partitions).await
}

/// Creates topics on the broker at `bootstrap`.
pub async fn create_topics_on(bootstrap: &str, topics: &[&str], partitions: i32) {
    create_topics_with(bootstrap, &[], topics, partitions).await
}

/// Creates topics on the broker at `bootstrap`, the admin client having `settings` too (TLS).
pub async fn create_topics_with(bootstrap: &str, settings: &[(&str, &str)], topics: &[&str], partitions: i32) {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for (key, value) in settings {
        config.set(*key, *value);
    }
    let admin: AdminClient<DefaultClientContext> = config.create().expect("admin client");
    let new: Vec<NewTopic<'_>> =
        topics.iter().map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1))).collect();
    let results = admin.create_topics(&new, &AdminOptions::new()).await.expect("create topics");
    for result in results {
        if let Err((topic, code)) = result {
            panic!("cannot create topic {topic}: {code}");
        }
    }
}

/// A Tansu broker for one test alone, stopped when dropped. `scripts/test.sh` installs Tansu
/// and exports its path as `TANSU`.
pub struct OwnBroker {
    child: std::process::Child,
    /// Where it listens.
    pub bootstrap: String,
}

impl OwnBroker {
    /// A broker that advertises the address it listens on.
    pub fn start() -> Self {
        Self::launch(None, &[])
    }

    /// A broker that tells clients to connect to `advertised` (`host:port`) instead of its own
    /// address: for a proxy in front of it.
    pub fn start_advertising(advertised: &str) -> Self {
        Self::launch(Some(advertised), &[])
    }

    /// A broker that requires SASL (SCRAM-SHA-256 or -512) from its clients. It knows no user:
    /// `tansu user create` cannot reach a broker that requires authentication, and the
    /// in-memory storage does not outlive a restart.
    pub fn start_authenticating() -> Self {
        Self::launch(None, &["--authentication"])
    }

    /// A broker on `port`: for a client that was told about it before it started.
    pub fn start_on(port: u16) -> Self {
        Self::launch_on(port, None, &[])
    }

    fn launch(advertised: Option<&str>, extra_args: &[&str]) -> Self {
        Self::launch_on(free_port(), advertised, extra_args)
    }

    fn launch_on(port: u16, advertised: Option<&str>, extra_args: &[&str]) -> Self {
        let binary = std::env::var_os("TANSU")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools/tansu/tansu"));
        assert!(binary.exists(), "no tansu binary at {}: run the tests with scripts/test.sh", binary.display());
        let bootstrap = format!("127.0.0.1:{port}");
        let advertised = format!("tcp://{}", advertised.unwrap_or(&bootstrap));
        let child = std::process::Command::new(&binary)
            .args(["broker", "--listener-url", &format!("tcp://{bootstrap}"), "--advertised-listener-url", &advertised])
            .args(["--storage-engine", "memory://tansu/"])
            .args(extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        wait_listening(&bootstrap, "tansu");
        Self { child, bootstrap }
    }

    /// Sends a signal (`STOP`, `CONT`) to the broker.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        assert!(std::process::Command::new("kill").args(["-s", signal, &pid]).status().unwrap().success());
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.signal("CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until something accepts connections at `address`; `what` names it in the failure.
pub fn wait_listening(address: &str, what: &str) {
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(address).is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "{what} did not listen on {address}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A record for [`produce`].
pub struct Record {
    pub key: Option<String>,
    pub payload: String,
    pub headers: Vec<(String, String)>,
    /// The partition, instead of the partitioner's choice.
    pub partition: Option<i32>,
}

impl Record {
    pub fn new(payload: impl Into<String>) -> Self {
        Self { key: None, payload: payload.into(), headers: Vec::new(), partition: None }
    }

    pub fn keyed(key: impl Into<String>, payload: impl Into<String>) -> Self {
        Self { key: Some(key.into()), payload: payload.into(), headers: Vec::new(), partition: None }
    }
}

/// Sends records with plain rdkafka, independent of the framework, and waits until the
/// broker has acknowledged every one.
pub async fn produce(topic: &str, records: impl IntoIterator<Item = Record>) {
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", brokers()).set("linger.ms", "5").create().expect("producer");
    let mut pending = Vec::new();
    for record in records {
        let producer = producer.clone();
        let topic = topic.to_owned();
        pending.push(tokio::spawn(async move {
            let mut headers = OwnedHeaders::new();
            for (key, value) in &record.headers {
                headers = headers.insert(Header { key, value: Some(value) });
            }
            let mut future = FutureRecord::to(&topic).payload(&record.payload).headers(headers);
            if let Some(key) = &record.key {
                future = future.key(key);
            }
            if let Some(partition) = record.partition {
                future = future.partition(partition);
            }
            producer.send(future, Duration::from_secs(30)).await.map_err(|(err, _)| err)
        }));
    }
    for sent in pending {
        sent.await.expect("send task").expect("delivered");
    }
}

/// Like [`produce`], one record after the other, so that records of one partition land in
/// the order given.
pub async fn produce_in_order(topic: &str, records: impl IntoIterator<Item = Record>) {
    for record in records {
        produce(topic, [record]).await;
    }
}

/// Sends the payloads `id<n>` for every `n` in `ids` to the broker at `bootstrap`, and waits
/// until each is acknowledged.
pub async fn produce_ids(bootstrap: &str, topic: &str, ids: std::ops::Range<usize>) {
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("linger.ms", "5").create().expect("producer");
    let sends: Vec<_> = ids
        .map(|id| {
            let (producer, topic) = (producer.clone(), topic.to_owned());
            tokio::spawn(async move {
                let payload = format!("id{id}");
                producer.send(FutureRecord::<str, str>::to(&topic).payload(&payload), Duration::from_secs(60)).await
            })
        })
        .collect();
    for sent in sends {
        sent.await.expect("send task").map_err(|(err, _)| err).expect("delivered");
    }
}

/// Waits until `total` distinct payloads of `topic` were handled (duplicates do not count).
pub async fn wait_distinct(topic: &str, total: usize) {
    let mut seen = 0;
    loop {
        let all = wait_handled(seen + 1, |h| h.topic == topic).await;
        seen = all.len();
        let distinct: std::collections::BTreeSet<&str> = all.iter().map(|h| h.payload.as_str()).collect();
        if distinct.len() >= total {
            return;
        }
    }
}

/// Checks that the handled payloads of `topic` are exactly `id0` .. `id<total-1>`, each at
/// least once; prints and returns how many were handled twice or more.
pub fn ledger(topic: &str, total: usize) -> usize {
    let all = handled(|h| h.topic == topic);
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for h in &all {
        *counts.entry(h.payload.as_str()).or_default() += 1;
    }
    let missing: Vec<String> =
        (0..total).map(|id| format!("id{id}")).filter(|id| !counts.contains_key(id.as_str())).collect();
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    println!("ledger of {topic}: {} handled, {} distinct, {duplicates} duplicates", all.len(), counts.len());
    assert!(missing.is_empty(), "{} messages were lost, first {:?}", missing.len(), &missing[..missing.len().min(5)]);
    assert_eq!(counts.len(), total, "unexpected payloads handled");
    duplicates
}

/// `count` JSON documents `{"id": n}` with ids from `first`.
pub fn documents(first: u64, count: u64) -> impl Iterator<Item = Record> {
    (first..first + count).map(|id| Record::keyed(format!("k{id}"), format!(r#"{{"id": {id}}}"#)))
}

/// Reads `count` messages of `topic` from the beginning with plain rdkafka (no group
/// join: every partition is assigned directly).
pub async fn consume(topic: &str, count: usize) -> Vec<OwnedMessage> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(30)).expect("metadata");
    let mut assignment = TopicPartitionList::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        assignment.add_partition_offset(topic, partition.id(), Offset::Beginning).expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    let read = async {
        let mut messages = Vec::with_capacity(count);
        while messages.len() < count {
            messages.push(consumer.recv().await.expect("receive").detach());
        }
        messages
    };
    tokio::time::timeout(WAIT, read).await.unwrap_or_else(|_| panic!("timed out reading {count} messages of {topic}"))
}

/// The offsets `group` committed on `topic`, one per partition (`None` where it committed
/// none): the next offset each partition reads from.
pub async fn committed(group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
    let (group, topic) = (group.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut list = TopicPartitionList::new();
        for partition in 0..partitions {
            list.add_partition(&topic, partition);
        }
        let offsets = consumer.committed_offsets(list, Duration::from_secs(30)).expect("committed offsets");
        (0..partitions)
            .map(|p| match offsets.find_partition(&topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(offset)) => Some(offset),
                _ => None,
            })
            .collect()
    })
    .await
    .expect("committed offsets task")
}

fn gate() -> &'static watch::Sender<bool> {
    static GATE: OnceLock<watch::Sender<bool>> = OnceLock::new();
    GATE.get_or_init(|| watch::channel(false).0)
}

/// Lets the `it_gate` worker's waiting messages go on.
pub fn open_gate() {
    gate().send_replace(true);
}

/// Waits until [`open_gate`] is called.
pub async fn gate_opened() {
    let _ = gate().subscribe().wait_for(|open| *open).await;
}

/// A config.json with the app settings `app` and one worker entry, `keys` added to it; its
/// path as a string.
pub fn one_worker_config(
    app: serde_json::Value,
    worker: &str,
    topic: &str,
    group: &str,
    keys: serde_json::Value,
) -> String {
    let mut entry = serde_json::json!({"name": worker, "group": group, "topics": [topic]});
    for (key, value) in keys.as_object().expect("keys is an object") {
        entry[key] = value.clone();
    }
    let mut json = app;
    json["kafka"] = serde_json::json!({
        "consumer_connection_settings": fast_settings(),
        "consumer": {"workers": [entry]}
    });
    write_config(json).display().to_string()
}

/// The value of the first header `name` of a message read back, as text.
pub fn header<'a>(message: &'a OwnedMessage, name: &str) -> Option<&'a str> {
    use rdkafka::message::{Headers as _, Message as _};
    let headers = message.headers()?;
    headers.iter().find(|h| h.key == name).and_then(|h| h.value).map(|v| std::str::from_utf8(v).expect("UTF-8"))
}

/// Writes a config.json for a test, with settings that make groups join fast.
pub fn write_config(json: serde_json::Value) -> PathBuf {
    let path = test_file(&format!("{}.json", unique("kafka-it-config")));
    std::fs::write(&path, serde_json::to_vec_pretty(&json).expect("json")).expect("write config");
    path
}

/// A path for a file or folder a test writes: under `target/<profile>/test-files/`, not the
/// machine's temporary folder, so that `cargo clean` removes what test runs leave.
pub fn test_file(name: &str) -> PathBuf {
    let dir = target_dir().join("test-files");
    std::fs::create_dir_all(&dir).expect("create target/<profile>/test-files");
    dir.join(name)
}

/// The client settings every test uses: a short session so groups join in seconds, and a
/// short metadata refresh so new topics are found fast.
pub fn fast_settings() -> serde_json::Value {
    serde_json::json!({
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "topic.metadata.refresh.interval.ms": 1000
    })
}

/// A message a test worker handled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handled {
    pub worker: String,
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub payload: String,
}

type HandledLog = (Mutex<Vec<(Handled, std::time::Instant)>>, watch::Sender<usize>);

fn handled_log() -> &'static HandledLog {
    static LOG: OnceLock<HandledLog> = OnceLock::new();
    LOG.get_or_init(|| (Mutex::new(Vec::new()), watch::channel(0).0))
}

/// Records a handled message (called by the test workers).
pub fn record_handled(handled: Handled) {
    let (log, changed) = handled_log();
    log.lock().unwrap().push((handled, std::time::Instant::now()));
    changed.send_modify(|n| *n += 1);
}

/// Waits until at least `count` handled messages match `filter`, and returns them all.
pub async fn wait_handled(count: usize, filter: impl Fn(&Handled) -> bool) -> Vec<Handled> {
    let (log, changed) = handled_log();
    let mut receiver = changed.subscribe();
    let wait = async {
        loop {
            let matching: Vec<Handled> =
                log.lock().unwrap().iter().map(|(h, _)| h).filter(|h| filter(h)).cloned().collect();
            if matching.len() >= count {
                return matching;
            }
            receiver.changed().await.expect("log lives forever");
        }
    };
    match tokio::time::timeout(WAIT, wait).await {
        Ok(matching) => matching,
        Err(_) => {
            let seen = log.lock().unwrap().iter().filter(|(h, _)| filter(h)).count();
            panic!("timed out: {seen} of {count} expected messages were handled")
        }
    }
}

/// Everything handled so far that matches `filter`.
pub fn handled(filter: impl Fn(&Handled) -> bool) -> Vec<Handled> {
    handled_log().0.lock().unwrap().iter().map(|(h, _)| h).filter(|h| filter(h)).cloned().collect()
}

/// Like [`handled`], with when each was recorded.
pub fn handled_at(filter: impl Fn(&Handled) -> bool) -> Vec<(Handled, std::time::Instant)> {
    handled_log().0.lock().unwrap().iter().filter(|(h, _)| filter(h)).cloned().collect()
}

/// A command running in this process, as `#[kafka_main]` would run it.
pub struct InProcess {
    pub shutdown: Shutdown,
    task: JoinHandle<Result<(), Error>>,
}

impl InProcess {
    /// Runs `args` (without the program name) against the broker under test.
    pub fn start(args: &[&str]) -> Self {
        Self::start_on(&brokers(), args)
    }

    /// Runs `args` against the broker at `bootstrap`.
    pub fn start_on(bootstrap: &str, args: &[&str]) -> Self {
        let mut all = vec!["it".to_owned(), "--brokers".to_owned(), bootstrap.to_owned()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        let shutdown = Shutdown::new();
        let task = tokio::spawn(kafka_runtime::run_with_args(all, shutdown.clone()));
        Self { shutdown, task }
    }

    /// Begins shutdown and waits for the command to end.
    pub async fn stop(self) -> Result<(), Error> {
        self.shutdown.begin();
        self.finish().await
    }

    /// Waits for the command to end on its own.
    pub async fn finish(self) -> Result<(), Error> {
        tokio::time::timeout(WAIT, self.task).await.expect("the command did not end").expect("the command panicked")
    }
}

/// A binary built from this workspace.
pub enum Binary {
    /// The demo app (`examples/`).
    Demo,
    /// The test workers (`tests/src/bin/it-worker.rs`).
    TestWorkers,
    /// librdkafka's mock cluster as a process (`tests/src/bin/mock-broker.rs`).
    MockBroker,
}

impl Binary {
    pub fn path(&self) -> PathBuf {
        match self {
            // Cargo builds the package's binaries before its integration tests.
            Binary::TestWorkers => target_dir().join(format!("it-worker{}", std::env::consts::EXE_SUFFIX)),
            Binary::MockBroker => target_dir().join(format!("mock-broker{}", std::env::consts::EXE_SUFFIX)),
            Binary::Demo => demo_binary().clone(),
        }
    }
}

/// Builds the demo binary once per test run, with the same registry feature as the tests.
fn demo_binary() -> &'static PathBuf {
    static DEMO: OnceLock<PathBuf> = OnceLock::new();
    DEMO.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = std::process::Command::new(cargo);
        build.args(["build", "--quiet", "-p", "kafka-demo", "--bin", "kafka-demo"]);
        if cfg!(feature = "linkme") {
            build.args(["--features", "linkme"]);
        }
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "cannot build the demo binary");
        target_dir().join(format!("kafka-demo{}", std::env::consts::EXE_SUFFIX))
    })
}

/// `target/<profile>`: test binaries sit in its `deps` folder, other binaries in it.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().and_then(|deps| deps.parent()).expect("target dir").to_path_buf()
}

/// A process under test, with its stdout read line by line.
pub struct Process {
    pub child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    pub lines: Vec<String>,
}

impl Process {
    /// Starts `binary` with `args`; `KAFKA_BROKERS` comes from the environment.
    pub fn spawn(binary: Binary, args: &[&str]) -> Self {
        Self::spawn_with_env(binary, args, &[])
    }

    pub fn spawn_with_env(binary: Binary, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(binary.path());
        command.args(args).stderr(Stdio::inherit());
        Self::start(command, env)
    }

    /// Starts `binary` with its logs (stderr) read as lines too.
    pub fn spawn_with_logs(binary: Binary, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new("sh");
        command.arg("-c").arg(r#"exec "$0" "$@" 2>&1"#).arg(binary.path()).args(args);
        Self::start(command, env)
    }

    fn start(mut command: Command, env: &[(&str, &str)]) -> Self {
        let mut child = command
            // The process's logs go to the test's stderr; keep them to what matters.
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the binary");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Self { child, stdout, lines: Vec::new() }
    }

    /// Reads stdout until `count` lines satisfy `filter`; returns those lines.
    pub async fn wait_lines(&mut self, count: usize, filter: impl Fn(&str) -> bool) -> Vec<String> {
        let read = async {
            loop {
                let matching: Vec<String> = self.lines.iter().filter(|l| filter(l)).cloned().collect();
                if matching.len() >= count {
                    return matching;
                }
                match self.stdout.next_line().await.expect("read stdout") {
                    Some(line) => self.lines.push(line),
                    None => panic!(
                        "the process ended after {} of {count} expected lines; its output:\n{}",
                        self.lines.iter().filter(|l| filter(l)).count(),
                        self.lines.join("\n")
                    ),
                }
            }
        };
        tokio::time::timeout(WAIT, read).await.expect("timed out waiting for output")
    }

    /// Sends a signal (`SIGTERM`, `SIGKILL`) to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("process is running").to_string();
        let status = std::process::Command::new("kill").args(["-s", signal, &pid]).status().expect("kill");
        assert!(status.success(), "kill -s {signal} {pid} failed");
    }

    /// Waits for the exit, reading the rest of stdout; returns the exit code (`None` if killed).
    pub async fn wait_exit(&mut self) -> Option<i32> {
        let rest = async {
            while let Some(line) = self.stdout.next_line().await.expect("read stdout") {
                self.lines.push(line);
            }
            self.child.wait().await.expect("wait")
        };
        let status = tokio::time::timeout(WAIT, rest).await.expect("the process did not exit");
        status.code()
    }
}

/// Runs a binary to completion and returns (exit code, stdout, stderr). `KAFKA_BROKERS` is
/// not passed on unless `env` sets it.
pub fn run_to_end(binary: Binary, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    run_with_input(binary, args, env, None)
}

/// Like [`run_to_end`], with `input` piped to stdin.
pub fn run_with_input(
    binary: Binary,
    args: &[&str],
    env: &[(&str, &str)],
    input: Option<&str>,
) -> (i32, String, String) {
    use std::io::Write as _;
    let mut child = std::process::Command::new(binary.path())
        .args(args)
        .env_remove("KAFKA_BROKERS")
        .envs(env.iter().copied())
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the binary");
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.as_bytes()).expect("write stdin");
    }
    let output = child.wait_with_output().expect("wait for the binary");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn kept_log() -> &'static (Mutex<Vec<kafka_runtime::Message>>, watch::Sender<usize>) {
    static KEPT: OnceLock<(Mutex<Vec<kafka_runtime::Message>>, watch::Sender<usize>)> = OnceLock::new();
    KEPT.get_or_init(|| (Mutex::new(Vec::new()), watch::channel(0).0))
}

/// Keeps a message past the worker that got it (called by the `it_keep` worker).
pub fn keep(message: kafka_runtime::Message) {
    let (kept, changed) = kept_log();
    kept.lock().unwrap().push(message);
    changed.send_modify(|n| *n += 1);
}

/// Waits until at least `count` kept messages of `topic` are there, and takes them.
pub async fn take_kept(topic: &str, count: usize) -> Vec<kafka_runtime::Message> {
    let (kept, changed) = kept_log();
    let mut receiver = changed.subscribe();
    let wait = async {
        loop {
            if kept.lock().unwrap().iter().filter(|m| m.topic() == topic).count() >= count {
                let mut all = kept.lock().unwrap();
                let (mine, others) = std::mem::take(&mut *all).into_iter().partition(|m| m.topic() == topic);
                *all = others;
                return mine;
            }
            receiver.changed().await.expect("lives forever");
        }
    };
    tokio::time::timeout(WAIT, wait).await.unwrap_or_else(|_| panic!("timed out waiting for {count} kept messages"))
}

/// One HTTP request (`GET` when `body` is `None`, else `POST`), off the async threads:
/// the status and the body, whatever the status.
pub async fn http(url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> (u16, String) {
    try_http(url, headers, body).await.unwrap_or_else(|err| panic!("{url}: {err}"))
}

/// [`http`], with a failure to connect as an error.
async fn try_http(url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Result<(u16, String), String> {
    let url = url.to_owned();
    let headers: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let body = body.map(<[u8]>::to_vec);
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let response = match body {
            None => {
                let mut request = agent.get(&url);
                for (name, value) in &headers {
                    request = request.header(name, value);
                }
                request.call()
            }
            Some(body) => {
                let mut request = agent.post(&url);
                for (name, value) in &headers {
                    request = request.header(name, value);
                }
                request.send(&body[..])
            }
        };
        let mut response = response.map_err(|err| err.to_string())?;
        let status = response.status().as_u16();
        Ok((status, response.body_mut().read_to_string().unwrap_or_default()))
    })
    .await
    .expect("http task")
}

/// Asks `url` until it answers `status` (a state the process reaches on its own, such as
/// readiness after a group join); returns the body.
pub async fn wait_status(url: &str, status: u16) -> String {
    let wait = async {
        loop {
            // Not listening yet counts as not there yet.
            if let Ok((got, body)) = try_http(url, &[], None).await {
                if got == status {
                    return body;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(WAIT, wait).await.unwrap_or_else(|_| panic!("{url} never answered {status}"))
}

/// The payloads handled on `topic` by tries that succeeded (failed tries record
/// `failed:<payload>`), sorted.
pub fn handled_successfully(topic: &str) -> Vec<String> {
    let mut payloads: Vec<String> =
        handled(|h| h.topic == topic && !h.payload.starts_with("failed:")).into_iter().map(|h| h.payload).collect();
    payloads.sort();
    payloads
}

/// `worker` (`it_flaky` or `it_flaky_batch`: the first try of a `flaky` message fails) with
/// `max_in_flight = 2` and a 20 s retry backoff, on 2 partitions that each start with a
/// `flaky` message: both slots wait for a next try, so the loop reads nothing, and a
/// shutdown must still end it at once, committing neither. After a restart, both succeed.
pub async fn a_shutdown_ends_the_retry_waits_of_every_slot(worker: &str) {
    let (topic, group) = (unique("retry-stop"), unique("group"));
    create_topics(&[&topic], 2).await;
    for partition in 0..2 {
        for payload in [format!("flaky-{partition}"), format!("after-{partition}")] {
            produce(&topic, [Record { partition: Some(partition), ..Record::new(payload) }]).await;
        }
    }
    let keys = serde_json::json!({"retries": 3, "retry_backoff_ms": 20000, "retry_backoff_max_ms": 20000,
                                  "max_in_flight": 2});
    let config = one_worker_config(serde_json::json!({"flaky_tries": 1}), worker, &topic, &group, keys);
    let args = ["-c", &config, "start-consumer", "--consumer-worker", worker];
    let running = InProcess::start(&args);
    wait_handled(2, |h| h.topic == topic && h.payload.starts_with("failed:flaky-")).await;
    let stopping = std::time::Instant::now();
    running.stop().await.expect("clean stop");
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(10), "the shutdown waited for the retry waits: {took:?}");
    assert_eq!(committed(&group, &topic, 2).await, [None, None], "a waiting message was committed");
    assert!(handled_successfully(&topic).is_empty(), "{:?}", handled_successfully(&topic));

    // After a restart both are tried again (their second try succeeds), then the rest.
    let running = InProcess::start(&args);
    wait_handled(4, |h| h.topic == topic && !h.payload.starts_with("failed:")).await;
    running.stop().await.expect("clean stop");
    assert_eq!(handled_successfully(&topic), ["after-0", "after-1", "flaky-0", "flaky-1"]);
    assert_eq!(committed(&group, &topic, 2).await, [Some(2), Some(2)]);
}

/// Partition 0 of `topic` gets `flaky-1` and 5 messages after it, one `produce` call each to
/// keep their order (`produce` sends its records concurrently).
pub async fn flaky_first_on_partition_0(topic: &str) {
    for payload in std::iter::once("flaky-1".to_owned()).chain((0..5).map(|n| format!("after-{n}"))) {
        produce(topic, [Record { partition: Some(0), ..Record::new(payload) }]).await;
    }
}

/// `worker` (`it_flaky` or `it_flaky_batch`: the first 3 tries of a `flaky` message fail)
/// with 3 retries from 200 ms and the concurrency in `concurrency`: partition 0's `flaky-1`
/// waits for each next try (200, 400, 800 ms) while partition 1's messages flow, and the
/// messages behind it in its partition are handled after it, in order, each once.
pub async fn retried_while_other_partitions_flow(worker: &str, concurrency: serde_json::Value) {
    let (topic, group) = (unique("retry"), unique("group"));
    create_topics(&[&topic], 2).await;
    flaky_first_on_partition_0(&topic).await;
    let mut keys = serde_json::json!({"retries": 3, "retry_backoff_ms": 200, "retry_backoff_max_ms": 1000});
    keys.as_object_mut().unwrap().extend(concurrency.as_object().unwrap().clone());
    let config = one_worker_config(serde_json::json!({}), worker, &topic, &group, keys);
    let running = InProcess::start(&["-c", &config, "start-consumer", "--consumer-worker", worker]);
    wait_handled(1, |h| h.topic == topic && h.payload == "failed:flaky-1").await;
    // Partition 1 flows while partition 0 waits.
    produce(&topic, (0..20).map(|n| Record { partition: Some(1), ..Record::new(format!("other-{n}")) })).await;
    wait_handled(26, |h| h.topic == topic && !h.payload.starts_with("failed:")).await;
    running.stop().await.expect("clean stop");

    let log = handled_at(|h| h.topic == topic);
    let tries: Vec<_> = log.iter().filter(|(h, _)| h.payload.ends_with("flaky-1")).collect();
    assert_eq!(tries.len(), 4, "3 failed tries and one that succeeded: {tries:?}");
    assert_eq!(tries[3].0.payload, "flaky-1");
    for (retry, pair) in tries.windows(2).enumerate() {
        let waited = pair[1].1 - pair[0].1;
        let full = Duration::from_millis(200 << retry);
        assert!(waited >= full * 8 / 10, "retry {} came after {waited:?}, before its backoff {full:?}", retry + 1);
    }
    let (first_failure, success) = (tries[0].1, tries[3].1);
    let others: Vec<_> = log.iter().filter(|(h, _)| h.payload.starts_with("other-")).collect();
    assert_eq!(others.len(), 20);
    assert!(others.iter().any(|(_, at)| *at > first_failure && *at < success), "partition 1 waited for partition 0");
    // Partition 0's later messages waited, and kept their order.
    let after: Vec<_> = log.iter().filter(|(h, _)| h.payload.starts_with("after-")).collect();
    assert!(after.iter().all(|(_, at)| *at > success), "a message of the waiting partition was handled before it");
    let order: Vec<&str> = after.iter().map(|(h, _)| h.payload.as_str()).collect();
    assert_eq!(order, ["after-0", "after-1", "after-2", "after-3", "after-4"]);
    assert_eq!(handled_successfully(&topic).len(), 26, "each message handled once successfully");
    assert_eq!(committed(&group, &topic, 2).await, [Some(6), Some(20)]);
}

/// Two members of one group run `worker` (`it_flaky` or `it_flaky_batch`, whose Rust path is
/// `path`; the first try of a `flaky` message fails) with the concurrency in `concurrency`
/// and a 20 s retry backoff. The second joins while `flaky-1` waits: the rebalance ends the
/// wait, and partition 0's messages are all handled, whoever owns it then, well before 20 s.
pub async fn a_revoke_ends_a_retry_wait(worker: &str, path: &str, concurrency: serde_json::Value) {
    let (topic, group) = (unique("retry-revoke"), unique("group"));
    create_topics(&[&topic], 2).await;
    flaky_first_on_partition_0(&topic).await;
    let second_worker = format!("{worker}_second");
    let entry = |name: &str| {
        let mut entry = serde_json::json!({"name": name, "path": path, "group": group, "topics": [topic],
                                           "retries": 3, "retry_backoff_ms": 20000, "retry_backoff_max_ms": 20000});
        for (key, value) in concurrency.as_object().unwrap() {
            entry[key] = value.clone();
        }
        entry
    };
    // One failed try: the next try succeeds, whoever makes it.
    let config = write_config(serde_json::json!({"flaky_tries": 1, "kafka": {
        "consumer_connection_settings": fast_settings(),
        "consumer": {"workers": [entry(worker), entry(&second_worker)]}
    }}));
    let config = config.to_str().unwrap();
    let started = std::time::Instant::now();
    let first = InProcess::start(&["-c", config, "start-consumer", "--consumer-worker", worker]);
    wait_handled(1, |h| h.topic == topic && h.payload == "failed:flaky-1").await;
    // The group rebalances: the waiting message's partition is revoked (and maybe given back).
    let second = InProcess::start(&["-c", config, "start-consumer", "--consumer-worker", &second_worker]);
    produce(&topic, [Record { partition: Some(1), ..Record::new("other") }]).await;
    // Partition 0's messages are all handled, whoever owns it now: nothing stays waiting.
    wait_handled(7, |h| h.topic == topic && !h.payload.starts_with("failed:")).await;
    let took = started.elapsed();
    first.stop().await.expect("clean stop");
    second.stop().await.expect("clean stop");
    assert!(took < Duration::from_secs(20), "the revoke did not end the 20 s wait: {took:?}");
    let mut payloads = handled_successfully(&topic);
    payloads.dedup();
    assert_eq!(payloads, ["after-0", "after-1", "after-2", "after-3", "after-4", "flaky-1", "other"]);
    assert_eq!(committed(&group, &topic, 2).await, [Some(6), Some(1)]);
}
