//! Consumer overhead of kafka-runtime against raw rdkafka and aiokafka.
//!
//! `bench/run.sh` is the one command that builds this, starts a broker and runs it; see
//! `bench/README.md` for what is measured and how.
//!
//! ```text
//! kafka-bench run   --brokers HOST:PORT [--smoke] [...]     the whole benchmark
//! kafka-bench child --variant V --brokers ... [--hold]      one consume in its own process
//!                                                           (peak RSS, callgrind)
//! ```

mod broker;
mod concurrency;
mod probe;
mod producers;
mod report;
mod variants;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::producers::{PVariant, ProducerResults};
use crate::variants::{Consume, Variant};

#[global_allocator]
static ALLOC: probe::CountingAlloc = probe::CountingAlloc;

/// Options of `run`.
#[derive(Clone, Debug)]
struct Options {
    brokers: String,
    smoke: bool,
    messages: u64,
    rounds: usize,
    sizes: Vec<usize>,
    aiokafka_python: Option<PathBuf>,
    aiokafka_script: PathBuf,
    aiokafka_messages: u64,
    aiokafka_version: String,
    callgrind: bool,
    callgrind_messages: u64,
    callgrind_reps: usize,
    latency_rate: u64,
    latency_seconds: u64,
    latency_rounds: usize,
    /// Consumer settings added in the latency runs, framework and raw alike.
    latency_settings: Vec<(String, String)>,
    latency_linger_ms: u64,
    out_dir: PathBuf,
    work_dir: PathBuf,
    broker_name: String,
    /// Messages per producer run of 1 KiB and larger payloads (smaller ones: `messages`).
    producer_messages_large: u64,
    producer_rounds: usize,
    /// Awaited sends in flight at once in (p-a) and (p-raw-a).
    producer_window: usize,
    /// Producer variants to run (development, e.g. one per process under callgrind).
    producer_variants: Vec<PVariant>,
    /// Parts to run (development): throughput, latency, rss, callgrind, producer.
    only: Option<Vec<String>>,
    /// Throughput variants to run (development, e.g. (a) against (f) only).
    variants: Vec<Variant>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let mut o = Options {
            brokers: std::env::var("KAFKA_BROKERS").unwrap_or_default(),
            smoke: false,
            messages: 1_000_000,
            rounds: 9,
            sizes: vec![100, 1024],
            aiokafka_python: None,
            aiokafka_script: here.join("aiokafka_consumer.py"),
            // aiokafka reads ~270k msg/s here: the whole 1M backlog fits the time budget.
            aiokafka_messages: 1_000_000,
            aiokafka_version: "unknown".into(),
            callgrind: true,
            callgrind_messages: 100_000,
            callgrind_reps: 2,
            latency_rate: 10_000,
            latency_seconds: 3,
            latency_rounds: 3,
            // Tansu answers a fetch only when fetch.wait.max.ms runs out, even when data
            // arrives: with librdkafka's 500 ms the latency is Tansu's long poll (~130 ms p50).
            latency_settings: vec![("fetch.wait.max.ms".into(), "10".into())],
            latency_linger_ms: 5,
            out_dir: here.join("results"),
            work_dir: here.join("../target/bench"),
            broker_name: std::env::var("BENCH_BROKER_NAME").unwrap_or_else(|_| "external".into()),
            // 1 KiB runs are ~4x slower per message than 100 B: 300,000 keeps them to ~1 s each.
            producer_messages_large: 300_000,
            producer_rounds: 7,
            producer_window: 10_000,
            producer_variants: PVariant::ALL.to_vec(),
            only: None,
            variants: Variant::THROUGHPUT.to_vec(),
        };
        let mut smoke_defaults = false;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || it.next().cloned().ok_or_else(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--brokers" => o.brokers = value()?,
                "--smoke" => smoke_defaults = true,
                "--messages" => o.messages = num(&value()?)?,
                "--rounds" => o.rounds = num(&value()?)? as usize,
                "--aiokafka-python" => o.aiokafka_python = Some(value()?.into()),
                "--no-aiokafka" => o.aiokafka_python = None,
                "--aiokafka-script" => o.aiokafka_script = value()?.into(),
                "--aiokafka-messages" => o.aiokafka_messages = num(&value()?)?,
                "--aiokafka-version" => o.aiokafka_version = value()?,
                "--no-callgrind" => o.callgrind = false,
                "--callgrind-messages" => o.callgrind_messages = num(&value()?)?,
                "--callgrind-reps" => o.callgrind_reps = num(&value()?)? as usize,
                "--latency-rate" => o.latency_rate = num(&value()?)?,
                "--latency-seconds" => o.latency_seconds = num(&value()?)?,
                "--out-dir" => o.out_dir = value()?.into(),
                "--work-dir" => o.work_dir = value()?.into(),
                "--broker-name" => o.broker_name = value()?,
                "--broker-pid" => probe::set_broker_pid(num(&value()?)? as u32),
                "--latency-rounds" => o.latency_rounds = num(&value()?)? as usize,
                "--latency-linger-ms" => o.latency_linger_ms = num(&value()?)?,
                "--latency-settings" => {
                    o.latency_settings = value()?
                        .split(',')
                        .filter(|kv| !kv.is_empty())
                        .map(|kv| kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
                        .collect::<Option<_>>()
                        .ok_or("--latency-settings key=value,...")?
                }
                "--producer-messages-large" => o.producer_messages_large = num(&value()?)?,
                "--producer-rounds" => o.producer_rounds = num(&value()?)? as usize,
                "--producer-window" => o.producer_window = (num(&value()?)? as usize).max(1),
                "--producer-variants" => {
                    o.producer_variants = value()?
                        .split(',')
                        .map(|key| PVariant::parse(key).ok_or_else(|| format!("unknown producer variant {key}")))
                        .collect::<Result<_, _>>()?
                }
                "--only" => o.only = Some(value()?.split(',').map(str::to_owned).collect()),
                "--sizes" => {
                    o.sizes = value()?.split(',').map(|size| num(size).map(|n| n as usize)).collect::<Result<_, _>>()?
                }
                "--variants" => {
                    o.variants = value()?
                        .split(',')
                        .map(|key| Variant::parse(key).ok_or_else(|| format!("unknown variant {key}")))
                        .collect::<Result<_, _>>()?
                }
                other => return Err(format!("unknown option {other}")),
            }
        }
        if smoke_defaults {
            // Checks that everything still runs; asserts no speed.
            o.smoke = true;
            o.messages = o.messages.min(20_000);
            o.rounds = 1;
            o.producer_rounds = 1;
            o.callgrind = false;
            o.aiokafka_python = None;
            o.latency_seconds = 1;
            o.latency_rounds = 1;
        }
        if o.brokers.is_empty() {
            return Err("no broker: pass --brokers or set KAFKA_BROKERS".into());
        }
        Ok(o)
    }
}

impl Options {
    fn latency_extra(&self) -> Vec<(&str, &str)> {
        self.latency_settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    fn runs(&self, part: &str) -> bool {
        self.only.as_ref().is_none_or(|only| only.iter().any(|p| p == part))
    }

    /// Messages per producer run of `size`-byte payloads.
    fn producer_messages(&self, size: usize) -> u64 {
        if size >= 1024 {
            self.messages.min(self.producer_messages_large)
        } else {
            self.messages
        }
    }
}

fn num(s: &str) -> Result<u64, String> {
    s.replace('_', "").parse().map_err(|_| format!("not a number: {s}"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => Options::parse(&args[1..]).and_then(|o| runtime().block_on(run(o))),
        Some("child") => child(&args[1..]),
        _ => Err("usage: kafka-bench run --brokers HOST:PORT [--smoke] | kafka-bench child ...".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The same runtime `#[kafka_main]` builds: multi-threaded, one worker per core.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime")
}

fn log(msg: impl AsRef<str>) {
    eprintln!("[bench {:>7.1}s] {}", started().elapsed().as_secs_f64(), msg.as_ref());
}

fn started() -> Instant {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *START.get_or_init(Instant::now)
}

fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{name}-{}-{}", std::process::id(), nanos % 1_000_000_000_000)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

#[allow(clippy::manual_is_multiple_of)] // is_multiple_of needs Rust 1.87; the workspace says 1.85
fn size_label(size: usize) -> String {
    if size % 1024 == 0 {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

/// One throughput measurement.
#[derive(Clone, Debug)]
pub struct Run {
    pub round: usize,
    pub measured: probe::Measured,
}

async fn run(o: Options) -> Result<(), String> {
    started();
    std::fs::create_dir_all(&o.work_dir).map_err(|e| format!("{}: {e}", o.work_dir.display()))?;
    std::fs::create_dir_all(&o.out_dir).map_err(|e| format!("{}: {e}", o.out_dir.display()))?;
    let load_start = loadavg();
    log(format!("broker {} ({}); load average {load_start}", o.brokers, o.broker_name));
    let config = o.work_dir.join("framework-config.json");
    variants::write_framework_config(&config, &[]).map_err(|e| e.to_string())?;
    let latency_config = o.work_dir.join("framework-config-latency.json");
    variants::write_framework_config(&latency_config, &o.latency_extra()).map_err(|e| e.to_string())?;

    // Backlogs, once per size.
    let mut topics = BTreeMap::new();
    let mut backlog_json = serde_json::Map::new();
    // (Only the consumer throughput and RSS parts read them.)
    for &size in o.sizes.iter().filter(|_| o.runs("throughput") || o.runs("rss")) {
        let topic = unique(&format!("bench-{size}b"));
        broker::create_topic(&o.brokers, &topic).await?;
        let (brokers, t, n) = (o.brokers.clone(), topic.clone(), o.messages);
        let secs = tokio::task::spawn_blocking(move || broker::produce_backlog(&brokers, &t, n, size))
            .await
            .map_err(|e| e.to_string())??;
        log(format!(
            "backlog {topic}: {n} x {} produced in {secs:.2} s ({:.0} msg/s, raw BaseProducer)",
            size_label(size),
            n as f64 / secs
        ));
        backlog_json.insert(size.to_string(), json!({"topic": topic, "messages": n, "produce_seconds": secs}));
        topics.insert(size, topic);
    }

    // Callgrind reads a topic of exactly its message count, so that once librdkafka has
    // prefetched it nothing is left to fetch during the counted window.
    let callgrind_topic = if o.callgrind && o.runs("callgrind") {
        let topic = unique("bench-callgrind-100b");
        broker::create_topic(&o.brokers, &topic).await?;
        let (brokers, t, n) = (o.brokers.clone(), topic.clone(), o.callgrind_messages);
        tokio::task::spawn_blocking(move || broker::produce_backlog(&brokers, &t, n, 100))
            .await
            .map_err(|e| e.to_string())??;
        Some(topic)
    } else {
        None
    };

    // Throughput: every round runs each variant once per size, interleaved.
    let window = (o.messages / 10, o.messages * 9 / 10);
    let mut rust_runs: BTreeMap<(usize, Variant), Vec<Run>> = BTreeMap::new();
    let mut aio_runs: BTreeMap<usize, Vec<Value>> = BTreeMap::new();
    for round in 0..if o.runs("throughput") { o.rounds } else { 0 } {
        for &size in &o.sizes {
            let topic = &topics[&size];
            // The order rotates every round, so that no variant always runs first, or right
            // after aiokafka, or while the broker still cleans up after the same neighbour.
            let order = &o.variants;
            for variant in order.iter().cycle().skip(round % order.len()).take(order.len()) {
                let variant = *variant;
                let group = unique(&format!("g-{}-{size}-r{round}", variant.key()));
                probe::reset_throughput(o.messages, window);
                let consume = Consume {
                    brokers: &o.brokers,
                    topic,
                    group: &group,
                    config: &config,
                    extra: &[],
                    worker_args: &[],
                    timeout: Duration::from_secs(180),
                };
                variants::consume(variant, &consume).await?;
                let measured = probe::measured();
                log(format!(
                    "round {}/{} {:>6} {:<22} {:>10.0} msg/s {:>7.1} MB/s  {:.3} allocs/msg",
                    round + 1,
                    o.rounds,
                    size_label(size),
                    variant.key(),
                    measured.msgs_per_sec(),
                    measured.mb_per_sec(),
                    measured.allocs_per_msg()
                ));
                rust_runs.entry((size, variant)).or_default().push(Run { round, measured });
            }
            if let Some(python) = &o.aiokafka_python {
                let group = unique(&format!("g-aiokafka-{size}-r{round}"));
                let result = aiokafka(python, &o, topic, &group, false).await?;
                log(format!(
                    "round {}/{} {:>6} {:<22} {:>10.0} msg/s {:>7.1} MB/s  ({} messages)",
                    round + 1,
                    o.rounds,
                    size_label(size),
                    "aiokafka",
                    result["msgs_per_sec"].as_f64().unwrap_or(0.0),
                    result["mb_per_sec"].as_f64().unwrap_or(0.0),
                    result["messages"]
                ));
                aio_runs.entry(size).or_default().push(result);
            }
        }
    }

    // Slow handlers: sequential, partitions in parallel, keys in parallel.
    let slow = if o.runs("concurrency") { Some(concurrency::run(&o.brokers, o.smoke, &config).await?) } else { None };

    // End-to-end latency at a fixed rate, framework per-message and raw, interleaved.
    let mut latency_runs: BTreeMap<Variant, Vec<Vec<u64>>> = BTreeMap::new();
    let mut ack_runs: Vec<Vec<u64>> = Vec::new();
    for round in 0..if o.runs("latency") { o.latency_rounds } else { 0 } {
        for variant in [Variant::PerMessage, Variant::Raw] {
            let (lat, acked) = latency(variant, &o, &latency_config, round).await?;
            let s = report::percentiles(&lat);
            let a = report::percentiles(&acked);
            log(format!(
                "latency round {}/{} {:<22} p50 {:.2} ms  p99 {:.2} ms  ({} msgs at {}/s; produce ack p50 {:.2} ms p99 {:.2} ms)",
                round + 1,
                o.latency_rounds,
                variant.key(),
                s.p50_ms,
                s.p99_ms,
                lat.len(),
                o.latency_rate,
                a.p50_ms,
                a.p99_ms
            ));
            latency_runs.entry(variant).or_default().push(lat);
            ack_runs.push(acked);
        }
    }

    // Peak RSS of a worker process consuming the whole backlog.
    let mut rss: BTreeMap<(usize, String), Value> = BTreeMap::new();
    for &size in o.sizes.iter().filter(|_| o.runs("rss")) {
        let topic = &topics[&size];
        for variant in Variant::RUST {
            let value = child_rss(variant, &o, topic, &config).await?;
            log(format!(
                "peak RSS {:>6} {:<22} {:.1} MiB",
                size_label(size),
                variant.key(),
                value["vm_hwm_kib"].as_f64().unwrap_or(0.0) / 1024.0
            ));
            rss.insert((size, variant.key().to_owned()), value);
        }
        if let Some(python) = &o.aiokafka_python {
            let group = unique(&format!("g-aiokafka-rss-{size}"));
            let value = aiokafka(python, &o, topic, &group, true).await?;
            log(format!(
                "peak RSS {:>6} {:<22} {:.1} MiB ({} messages)",
                size_label(size),
                "aiokafka",
                value["vm_hwm_kib"].as_f64().unwrap_or(0.0) / 1024.0,
                value["messages"]
            ));
            rss.insert((size, "aiokafka".to_owned()), value);
        }
    }

    // Instructions per message under callgrind.
    let mut callgrind: BTreeMap<Variant, Vec<Value>> = BTreeMap::new();
    if let Some(topic) = &callgrind_topic {
        for rep in 0..o.callgrind_reps {
            for variant in Variant::RUST {
                let value = child_callgrind(variant, &o, topic, &config, rep).await?;
                log(format!(
                    "callgrind {:<22} {:.0} instructions/msg (tokio tasks {:.0}) over {} msgs",
                    variant.key(),
                    value["instructions_per_msg"].as_f64().unwrap_or(0.0),
                    value["task_instructions_per_msg"].as_f64().unwrap_or(0.0),
                    value["window_messages"]
                ));
                callgrind.entry(variant).or_default().push(value);
            }
        }
    }

    let producer = producer_throughput(&o).await?;

    let load_end = loadavg();
    log(format!("done; load average {load_end}"));
    let results = report::Results {
        smoke: o.smoke,
        brokers: o.brokers.clone(),
        broker_name: o.broker_name.clone(),
        load_start,
        load_end,
        messages: o.messages,
        rounds: o.rounds,
        sizes: o.sizes.clone(),
        window,
        aiokafka_version: o.aiokafka_python.as_ref().map(|_| o.aiokafka_version.clone()),
        aiokafka_messages: o.aiokafka_messages.min(o.messages),
        backlogs: Value::Object(backlog_json),
        rust_runs,
        aio_runs,
        latency_runs,
        ack_runs,
        latency_rate: o.latency_rate,
        latency_seconds: o.latency_seconds,
        latency_settings: o.latency_settings.clone(),
        latency_linger_ms: o.latency_linger_ms,
        rss,
        callgrind,
        callgrind_messages: o.callgrind_messages,
        elapsed_seconds: started().elapsed().as_secs_f64(),
        producer,
    };
    let (table, mut json) = report::render(&results);
    println!("{table}");
    if let Some((slow_table, slow_json)) = slow {
        println!("{slow_table}");
        if let Some(root) = json.as_object_mut() {
            root.insert("slow_handler".into(), slow_json);
        }
    }
    let (ceiling_table, ceiling_json) = ratios_to_ceiling(&results.rust_runs, o.smoke);
    if ceiling_json.as_object().is_some_and(|sizes| !sizes.is_empty()) {
        println!("{ceiling_table}");
        if let Some(root) = json.as_object_mut() {
            root.insert("per_message_to_ceiling".into(), ceiling_json);
        }
    }
    // A smoke or partial (--only) run never replaces the results of a full run.
    let name = if o.smoke {
        "smoke"
    } else if o.only.is_some() {
        "partial"
    } else {
        "latest"
    };
    let json_path = o.out_dir.join(format!("{name}.json"));
    std::fs::write(&json_path, serde_json::to_string_pretty(&json).unwrap() + "\n")
        .map_err(|e| format!("{}: {e}", json_path.display()))?;
    let png_path =
        o.out_dir.join(if name == "latest" { "throughput.png".into() } else { format!("{name}-throughput.png") });
    match report::plot(&results, &png_path) {
        Ok(()) => log(format!("wrote {} and {}", json_path.display(), png_path.display())),
        Err(err) => return Err(format!("plot {}: {err}", png_path.display())),
    }
    Ok(())
}

/// The zero-latency per-message handler (default `ordering = partition`, `max_in_flight` 64)
/// against the librdkafka batch ceiling (f): the median of the per-round ratios, per size.
fn ratios_to_ceiling(runs: &BTreeMap<(usize, Variant), Vec<Run>>, smoke: bool) -> (String, Value) {
    let mut table = String::from("\nZERO-LATENCY HANDLER against (f), default ordering = partition (target >= 0.95)\n");
    let mut all = serde_json::Map::new();
    let sizes: std::collections::BTreeSet<usize> = runs.keys().map(|(size, _)| *size).collect();
    for size in sizes {
        let (Some(framework), Some(ceiling)) =
            (runs.get(&(size, Variant::PerMessage)), runs.get(&(size, Variant::Ceiling)))
        else {
            continue;
        };
        let mut ratios: Vec<f64> = framework
            .iter()
            .filter_map(|run| {
                let ceiling = ceiling.iter().find(|c| c.round == run.round)?;
                Some(run.measured.msgs_per_sec() / ceiling.measured.msgs_per_sec())
            })
            .collect();
        ratios.sort_by(f64::total_cmp);
        let Some(&median) = ratios.get(ratios.len() / 2) else { continue };
        let mark = if smoke {
            "not evaluated (smoke)"
        } else if median >= 0.95 {
            "MET"
        } else {
            "MISSED"
        };
        let _ = std::fmt::Write::write_fmt(
            &mut table,
            format_args!("  {:<7} framework_per_message / (f): {median:.3} [{mark}]\n", size_label(size)),
        );
        all.insert(size.to_string(), json!({"median_ratio": median, "ratios": ratios}));
    }
    (table, Value::Object(all))
}

/// Producer throughput: kafka-runtime's shared producer against raw rdkafka with the same
/// settings. Every round runs, per size, (p-a) (p-raw-a) (p-b) (p-raw-b), each into a fresh
/// topic of 3 partitions created beforehand, timed from the first send to the last delivery
/// report. The shared producer is set up once for the process and reused, as apps use it;
/// the raw clients are created once too.
async fn producer_throughput(o: &Options) -> Result<Option<ProducerResults>, String> {
    if !o.runs("producer") {
        return Ok(None);
    }
    let clients = producers::Clients::new(&o.brokers).await?;
    // Warm-up, not counted: connections, first metadata, allocator and page faults.
    let warm = o.messages.min(20_000);
    for &variant in &o.producer_variants {
        let topic = unique(&format!("bench-produce-warmup-{}", variant.key()));
        broker::create_topic(&o.brokers, &topic).await?;
        producers::run(variant, &clients, &topic, warm, 100, o.producer_window, 0).await?;
        broker::delete_topic(&o.brokers, &topic).await;
    }
    let messages: BTreeMap<usize, u64> = o.sizes.iter().map(|&size| (size, o.producer_messages(size))).collect();
    let mut runs: BTreeMap<(usize, PVariant), Vec<producers::PRun>> = BTreeMap::new();
    for round in 0..o.producer_rounds {
        for &size in &o.sizes {
            for &variant in &o.producer_variants {
                let topic = unique(&format!("bench-produce-{size}b-{}-r{round}", variant.key()));
                broker::create_topic(&o.brokers, &topic).await?;
                let run =
                    producers::run(variant, &clients, &topic, messages[&size], size, o.producer_window, round).await?;
                log(format!(
                    "producer round {}/{} {:>6} {:<32} {:>10.0} msg/s {:>7.1} MB/s  {:.3} allocs/msg ({} msgs; all queued \
                     after {:.3} s of {:.3} s)",
                    round + 1,
                    o.producer_rounds,
                    size_label(size),
                    variant.key(),
                    run.msgs_per_sec(),
                    run.mb_per_sec(),
                    run.allocs_per_msg,
                    run.messages,
                    run.queued_seconds,
                    run.seconds
                ));
                runs.entry((size, variant)).or_default().push(run);
                // The memory store keeps every message: free them for the next runs.
                broker::delete_topic(&o.brokers, &topic).await;
            }
        }
    }
    Ok(Some(ProducerResults {
        rounds: o.producer_rounds,
        window: o.producer_window,
        messages,
        runs,
        shared_stats: {
            let stats = kafka_runtime::producer().stats();
            json!({"clients_created": stats.clients_created, "delivered": stats.delivered,
                   "failed": stats.failed, "forgotten_failed": stats.forgotten_failed})
        },
    }))
}

/// One latency run: a fresh topic, the consumer started, then the paced producer.
async fn latency(variant: Variant, o: &Options, config: &Path, round: usize) -> Result<(Vec<u64>, Vec<u64>), String> {
    let topic = unique(&format!("bench-latency-{}-r{round}", variant.key()));
    broker::create_topic(&o.brokers, &topic).await?;
    let count = o.latency_rate * o.latency_seconds;
    probe::reset_latency(count);
    let (brokers, t, rate, linger) = (o.brokers.clone(), topic.clone(), o.latency_rate, o.latency_linger_ms);
    let producing = tokio::task::spawn_blocking(move || broker::produce_paced(&brokers, &t, rate, count, 100, linger));
    let group = unique(&format!("g-latency-{}", variant.key()));
    let consume = Consume {
        brokers: &o.brokers,
        topic: &topic,
        group: &group,
        config,
        extra: &o.latency_extra(),
        worker_args: &[],
        timeout: Duration::from_secs(120),
    };
    let consumed = variants::consume(variant, &consume).await;
    let acked = producing.await.map_err(|e| e.to_string())??;
    consumed?;
    Ok((probe::latencies(), acked))
}

/// `kafka-bench child`: one consume in this process, then its result as a JSON line.
fn child(args: &[String]) -> Result<(), String> {
    let mut variant = None;
    let (mut brokers, mut topic, mut group, mut config) = (String::new(), String::new(), String::new(), PathBuf::new());
    let mut messages = 0u64;
    let mut window = (0, 0);
    let mut hold = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--variant" => variant = Some(Variant::parse(&value()?).ok_or("unknown variant")?),
            "--brokers" => brokers = value()?,
            "--topic" => topic = value()?,
            "--group" => group = value()?,
            "--config" => config = value()?.into(),
            "--messages" => messages = num(&value()?)?,
            "--window" => {
                let v = value()?;
                let (a, b) = v.split_once(':').ok_or("--window A:B")?;
                window = (num(a)?, num(b)?);
            }
            "--hold" => hold = true,
            other => return Err(format!("unknown option {other}")),
        }
    }
    let variant = variant.ok_or("--variant is required")?;
    runtime().block_on(async {
        probe::reset_throughput(messages, window);
        let consume = Consume {
            brokers: &brokers,
            topic: &topic,
            group: &group,
            config: &config,
            extra: &[],
            worker_args: &[],
            timeout: Duration::from_secs(900),
        };
        variants::consume(variant, &consume).await
    })?;
    let measured = probe::measured();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", measured.to_json()).map_err(|e| e.to_string())?;
    if hold {
        // The parent reads VmHWM from /proc/<pid>/status now, then closes stdin.
        writeln!(out, "HOLD").map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
        let _ = std::io::stdin().lines().count();
    }
    Ok(())
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs a command that prints a JSON result line and, with `hold`, then `HOLD` and waits for
/// its stdin to close; returns the JSON, with `vm_hwm_kib` read from /proc while it holds.
fn run_holding(mut command: Command, hold: bool, timeout: Duration) -> Result<Value, String> {
    let described = format!("{command:?}");
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = command.spawn().map_err(|e| format!("{described}: {e}"))?;
    let pid = child.id();
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().unwrap();
    // Kill it if it runs past the timeout.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if rx.recv_timeout(timeout).is_err() {
            // SAFETY-free: kill(1) the child we started, by its pid.
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
        }
    });
    let mut result = None;
    let mut hwm = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| e.to_string())?;
        if line == "HOLD" {
            hwm = vm_hwm_kib(pid);
            break;
        }
        if line.starts_with('{') {
            result = Some(line);
            if !hold {
                break;
            }
        }
    }
    drop(stdin);
    let status = child.wait().map_err(|e| e.to_string())?;
    let _ = tx.send(());
    let _ = watchdog.join();
    if !status.success() {
        return Err(format!("{described} failed: {status}"));
    }
    let mut value: Value = serde_json::from_str(&result.ok_or_else(|| format!("{described}: no result line"))?)
        .map_err(|e| e.to_string())?;
    if hold {
        value["vm_hwm_kib"] = json!(hwm.ok_or("could not read VmHWM")?);
    }
    Ok(value)
}

async fn child_rss(variant: Variant, o: &Options, topic: &str, config: &Path) -> Result<Value, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = Command::new(exe);
    command.args(["child", "--variant", variant.key(), "--brokers", &o.brokers, "--topic", topic]);
    command.args(["--group", &unique(&format!("g-rss-{}", variant.key()))]);
    command.arg("--config").arg(config);
    command.args(["--messages", &o.messages.to_string(), "--hold"]);
    tokio::task::spawn_blocking(move || run_holding(command, true, Duration::from_secs(300)))
        .await
        .map_err(|e| e.to_string())?
}

async fn child_callgrind(
    variant: Variant,
    o: &Options,
    topic: &str,
    config: &Path,
    rep: usize,
) -> Result<Value, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = o.work_dir.join("callgrind");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let out = dir.join(format!("{}-{rep}.out", variant.key()));
    // Old dumps of the same name would be read as this run's.
    for entry in std::fs::read_dir(&dir).map_err(|e| e.to_string())?.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&*out.file_name().unwrap().to_string_lossy()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let n = o.callgrind_messages;
    let window = (n / 10, n * 9 / 10);
    let mut command = Command::new("valgrind");
    command.args([
        "--tool=callgrind",
        "--zero-before=kafka_bench_window_start",
        "--dump-before=kafka_bench_window_end",
    ]);
    command.arg(format!("--callgrind-out-file={}", out.display()));
    command.args(["--quiet"]);
    command.arg(exe);
    command.args(["child", "--variant", variant.key(), "--brokers", &o.brokers, "--topic", topic]);
    command.args(["--group", &unique(&format!("g-cg-{}", variant.key()))]);
    command.arg("--config").arg(config);
    command.args(["--messages", &n.to_string(), "--window", &format!("{}:{}", window.0, window.1)]);
    let mut value = tokio::task::spawn_blocking(move || run_holding(command, false, Duration::from_secs(900)))
        .await
        .map_err(|e| e.to_string())??;
    // The dump taken at the window's end: `<out>.1`.
    let dump = dir.join(format!("{}.1", out.file_name().unwrap().to_string_lossy()));
    let text = std::fs::read_to_string(&dump).map_err(|e| format!("{}: {e}", dump.display()))?;
    let total: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("summary:").or_else(|| l.strip_prefix("totals:")))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("{}: no summary line", dump.display()))?;
    let msgs = window.1 - window.0;
    // The part spent in tokio tasks (the consumer loop, the framework, rdkafka's poll).
    let tasks = callgrind_inclusive(&dump, "tokio::runtime::scheduler::multi_thread::worker::Context::run_task");
    value["task_instructions"] = json!(tasks);
    value["task_instructions_per_msg"] = json!(tasks.map(|t| t as f64 / (window.1 - window.0) as f64));
    value["instructions"] = json!(total);
    value["window_messages"] = json!(msgs);
    value["instructions_per_msg"] = json!(total as f64 / msgs as f64);
    value["dump"] = json!(dump.display().to_string());
    Ok(value)
}

/// The inclusive instruction count of `function` in a callgrind dump, via callgrind_annotate.
fn callgrind_inclusive(dump: &Path, function: &str) -> Option<u64> {
    let out =
        Command::new("callgrind_annotate").args(["--inclusive=yes", "--threshold=100"]).arg(dump).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter(|l| l.contains(&format!(":{function} ")))
        .filter_map(|l| l.split_whitespace().next()?.replace(',', "").parse::<u64>().ok())
        .max()
}

/// Runs the aiokafka consumer script; `hold` also measures its peak RSS.
async fn aiokafka(python: &Path, o: &Options, topic: &str, group: &str, hold: bool) -> Result<Value, String> {
    let mut command = Command::new(python);
    command.arg(&o.aiokafka_script);
    command.args(["--brokers", &o.brokers, "--topic", topic, "--group", group]);
    command.args(["--messages", &o.aiokafka_messages.min(o.messages).to_string(), "--session-timeout-ms", "6000"]);
    if hold {
        command.arg("--hold");
    }
    tokio::task::spawn_blocking(move || run_holding(command, hold, Duration::from_secs(300)))
        .await
        .map_err(|e| e.to_string())?
}
