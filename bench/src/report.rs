//! Statistics, the printed table, `latest.json` and `throughput.png`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};

use crate::producers::{PRun, PVariant, ProducerResults, PRODUCER_SETTINGS};
use crate::variants::Variant;
use crate::{size_label, Run};

/// The extra instructions per message the framework may cost (from the issue).
pub const TARGET_EXTRA_INSTRUCTIONS: f64 = 1000.0;
/// Throughput the framework must keep, relative to raw rdkafka (from the issue).
pub const TARGET_RATIO_TO_RAW: f64 = 0.95;
/// How much faster than aiokafka the framework must be (from the issue).
pub const TARGET_RATIO_TO_AIOKAFKA: f64 = 10.0;
/// "No allocation per message": fewer than one extra allocation per this many messages.
pub const TARGET_EXTRA_ALLOCS_PER_MSG: f64 = 0.01;

pub struct Results {
    pub smoke: bool,
    pub brokers: String,
    pub broker_name: String,
    pub load_start: String,
    pub load_end: String,
    pub messages: u64,
    pub rounds: usize,
    pub sizes: Vec<usize>,
    pub window: (u64, u64),
    pub aiokafka_version: Option<String>,
    pub aiokafka_messages: u64,
    pub backlogs: Value,
    pub rust_runs: BTreeMap<(usize, Variant), Vec<Run>>,
    pub aio_runs: BTreeMap<usize, Vec<Value>>,
    pub latency_runs: BTreeMap<Variant, Vec<Vec<u64>>>,
    /// Produce call -> delivery report, every latency run pooled: the broker's share.
    pub ack_runs: Vec<Vec<u64>>,
    pub latency_rate: u64,
    pub latency_seconds: u64,
    pub latency_settings: Vec<(String, String)>,
    pub latency_linger_ms: u64,
    pub rss: BTreeMap<(usize, String), Value>,
    pub callgrind: BTreeMap<Variant, Vec<Value>>,
    pub callgrind_messages: u64,
    pub elapsed_seconds: f64,
    /// From `producer_throughput` in main.rs; `None` when `--only` left it out.
    pub producer: Option<ProducerResults>,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

pub fn stats(values: &[f64]) -> Stats {
    if values.is_empty() {
        return Stats::default();
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    Stats { median, min: v[0], max: v[n - 1], n }
}

impl Stats {
    fn json(&self) -> Value {
        json!({"median": self.median, "min": self.min, "max": self.max, "n": self.n,
               "spread_pct": self.spread_pct()})
    }
    /// Half the range, relative to the median.
    fn spread_pct(&self) -> f64 {
        if self.median == 0.0 {
            0.0
        } else {
            (self.max - self.min) / 2.0 / self.median * 100.0
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub n: usize,
}

pub fn percentiles(ns: &[u64]) -> Percentiles {
    if ns.is_empty() {
        return Percentiles::default();
    }
    let mut v = ns.to_vec();
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1] as f64 / 1e6;
    Percentiles { p50_ms: at(0.50), p99_ms: at(0.99), max_ms: at(1.0), n: v.len() }
}

fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn grouped(v: f64) -> String {
    let s = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn label(variant: Variant) -> &'static str {
    match variant {
        Variant::PerMessage => "(a) framework per-message handler",
        Variant::Stream => "(b) framework stream worker",
        Variant::Raw => "(d) raw rdkafka StreamConsumer",
        Variant::Ceiling => "(f) librdkafka batch API (ceiling)",
    }
}

/// Throughput numbers of one (size, variant): msg/s and MB/s stats, and per-round ratios to raw.
struct Row {
    msgs: Stats,
    mbs: Stats,
    ratio: Option<Stats>,
    ratio_of_medians: Option<f64>,
    allocs: Stats,
}

fn rust_row(r: &Results, size: usize, variant: Variant) -> Option<Row> {
    let runs = r.rust_runs.get(&(size, variant))?;
    let msgs = stats(&runs.iter().map(|run| run.measured.msgs_per_sec()).collect::<Vec<_>>());
    let mbs = stats(&runs.iter().map(|run| run.measured.mb_per_sec()).collect::<Vec<_>>());
    let allocs = stats(&runs.iter().map(|run| run.measured.allocs_per_msg()).collect::<Vec<_>>());
    let raw = r.rust_runs.get(&(size, Variant::Raw));
    let (ratio, ratio_of_medians) = match raw {
        Some(raw) => {
            let paired: Vec<f64> = runs
                .iter()
                .filter_map(|run| {
                    let base = raw.iter().find(|b| b.round == run.round)?;
                    Some(run.measured.msgs_per_sec() / base.measured.msgs_per_sec())
                })
                .collect();
            let raw_median = stats(&raw.iter().map(|b| b.measured.msgs_per_sec()).collect::<Vec<_>>()).median;
            (Some(stats(&paired)), Some(msgs.median / raw_median))
        }
        None => (None, None),
    };
    Some(Row { msgs, mbs, ratio, ratio_of_medians, allocs })
}

fn aio_row(r: &Results, size: usize) -> Option<(Stats, Stats)> {
    let runs = r.aio_runs.get(&size)?;
    let get = |key: &str| stats(&runs.iter().filter_map(|v| v[key].as_f64()).collect::<Vec<_>>());
    Some((get("msgs_per_sec"), get("mb_per_sec")))
}

/// Producer numbers of one (size, variant), with per-round ratios to its raw counterpart.
fn producer_row(p: &ProducerResults, size: usize, variant: PVariant) -> Option<Row> {
    let runs = p.runs.get(&(size, variant))?;
    let of = |f: fn(&PRun) -> f64| stats(&runs.iter().map(f).collect::<Vec<_>>());
    let msgs = of(PRun::msgs_per_sec);
    let (ratio, ratio_of_medians) = match variant.baseline().and_then(|b| p.runs.get(&(size, b))) {
        Some(raw) => {
            let paired: Vec<f64> = runs
                .iter()
                .filter_map(|run| {
                    let base = raw.iter().find(|b| b.round == run.round)?;
                    Some(run.msgs_per_sec() / base.msgs_per_sec())
                })
                .collect();
            let raw_median = stats(&raw.iter().map(PRun::msgs_per_sec).collect::<Vec<_>>()).median;
            (Some(stats(&paired)), Some(msgs.median / raw_median))
        }
        None => (None, None),
    };
    Some(Row { msgs, mbs: of(PRun::mb_per_sec), ratio, ratio_of_medians, allocs: of(|run| run.allocs_per_msg) })
}

fn callgrind_median(r: &Results, variant: Variant, key: &str) -> Option<f64> {
    let values: Vec<f64> = r.callgrind.get(&variant)?.iter().filter_map(|v| v[key].as_f64()).collect();
    (!values.is_empty()).then(|| stats(&values).median)
}

/// The table printed at the end, and the JSON written to `latest.json`.
pub fn render(r: &Results) -> (String, Value) {
    let mut t = String::new();
    let mut targets: Vec<Value> = Vec::new();
    let mut target = |t: &mut String, name: String, met: Option<bool>, detail: String| {
        let mark = match (r.smoke, met) {
            (true, _) => "not evaluated (smoke)",
            (false, Some(true)) => "MET",
            (false, Some(false)) => "MISSED",
            (false, None) => "not measured",
        };
        let _ = writeln!(t, "  [{mark}] {name}: {detail}");
        targets.push(json!({"target": name, "met": if r.smoke { Value::Null } else { json!(met) }, "detail": detail}));
    };

    let _ = writeln!(
        t,
        "\nkafka-runtime consumer benchmark ({}) - broker {} at {}, {} cores, load avg {} -> {}, {:.0} s",
        if r.smoke { "SMOKE: checks that it runs, asserts no speed" } else { "full run" },
        r.broker_name,
        r.brokers,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        r.load_start,
        r.load_end,
        r.elapsed_seconds
    );
    let _ = writeln!(
        t,
        "\nCONSUMER THROUGHPUT: {} msgs per run over 3 partitions, fresh group per run, timed from the first \
         message to the last;\nmedian [min - max] of {} interleaved round(s); 'x raw' = median of the per-round \
         ratios to (d) (ratio of medians in brackets);\n'client'/'thread'/'broker' = cores kept busy during the \
         steady-state window (messages {}-{}) by the benchmark process (all its threads), by its busiest thread,\nand by \
         the broker process ({} cores in all)",
        grouped(r.messages as f64),
        r.rounds,
        r.messages / 10,
        r.messages * 9 / 10,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    );
    let _ = writeln!(
        t,
        "{:<7} {:<38} {:>9} {:>11} {:>19} {:>8} {:>15} {:>7} {:>8} {:>7}",
        "size", "variant", "msgs/run", "msg/s", "[min - max]", "MB/s", "x raw", "client", "thread", "broker"
    );
    let mut json_tp = serde_json::Map::new();
    for &size in &r.sizes {
        let mut per_size = serde_json::Map::new();
        for variant in [Variant::PerMessage, Variant::Stream] {
            if let Some(row) = rust_row(r, size, variant) {
                print_rust_row(&mut t, r, size, variant, &row);
                per_size.insert(variant.key().into(), rust_row_json(r, size, variant, &row));
            }
            if variant == Variant::Stream {
                let _ = writeln!(
                    t,
                    "{:<7} {:<38} not measured yet (the benchmark does not run the batch worker)",
                    size_label(size),
                    "(c) framework batch"
                );
                per_size.insert(
                    "framework_batch".into(),
                    json!("not measured yet (the benchmark does not run the batch worker)"),
                );
            }
        }
        if let Some(row) = rust_row(r, size, Variant::Raw) {
            print_rust_row(&mut t, r, size, Variant::Raw, &row);
            per_size.insert(Variant::Raw.key().into(), rust_row_json(r, size, Variant::Raw, &row));
        }
        match (aio_row(r, size), &r.aiokafka_version) {
            (Some((msgs, mbs)), Some(version)) => {
                let raw = rust_row(r, size, Variant::Raw).map(|row| row.msgs.median).unwrap_or(f64::NAN);
                let _ = writeln!(
                    t,
                    "{:<7} {:<38} {:>9} {:>11} {:>19} {:>8.1} {:>15}",
                    size_label(size),
                    format!(
                        "(e) aiokafka {version}{}",
                        if r.aiokafka_messages < r.messages { " (fewer msgs)" } else { "" }
                    ),
                    grouped(r.aiokafka_messages as f64),
                    grouped(msgs.median),
                    format!("[{} - {}]", si(msgs.min), si(msgs.max)),
                    mbs.median,
                    format!("{:.3}", msgs.median / raw)
                );
                per_size.insert(
                    "aiokafka".into(),
                    json!({"version": version, "messages_per_run": r.aiokafka_messages,
                           "msgs_per_sec": msgs.json(), "mb_per_sec": mbs.json(),
                           "ratio_of_medians_to_raw": msgs.median / raw,
                           "runs": r.aio_runs.get(&size)}),
                );
            }
            _ => {
                let _ = writeln!(t, "{:<7} {:<38} skipped", size_label(size), "(e) aiokafka");
                per_size.insert("aiokafka".into(), json!("skipped"));
            }
        }
        if let Some(row) = rust_row(r, size, Variant::Ceiling) {
            print_rust_row(&mut t, r, size, Variant::Ceiling, &row);
            per_size.insert(Variant::Ceiling.key().into(), rust_row_json(r, size, Variant::Ceiling, &row));
        }
        json_tp.insert(size.to_string(), Value::Object(per_size));
    }
    let _ = writeln!(
        t,
        "(f) is no competitor: librdkafka's C batch API with the partitions assigned directly (no group, no Rust \
         layer, no per-message event),\n    the most any client gets from this broker here; the framework's batch style \
         will build on it"
    );
    let prefetch = if crate::variants::ceiling_has_runtime_prefetch() {
        "the framework's prefetch settings (KAFKA_BENCH_CEILING_PREFETCH=runtime)"
    } else {
        "librdkafka's default prefetch (100,000 messages and up to 64 MiB waiting per partition; the framework \
          bounds its own, see README)"
    };
    let _ = writeln!(t, "    (f) ran with {prefetch}");

    // Instructions per message.
    let _ = writeln!(
        t,
        "\nCPU PER MESSAGE (callgrind on a {}-message topic of {} B messages; counters zeroed at message {} and dumped at \
         message {};\n'all threads' = every instruction of the process in that window (tokio, librdkafka's fetch and \
         parse, the loop) / {};\n'tokio tasks' = the part inside tokio's task polls (the consumer loop with rdkafka's \
         poll, the framework, the handler); extra = variant - (d); median of {} rep(s))",
        grouped(r.callgrind_messages as f64),
        r.sizes[0],
        r.callgrind_messages / 10,
        r.callgrind_messages * 9 / 10,
        grouped((r.callgrind_messages * 8 / 10) as f64),
        r.callgrind.values().map(Vec::len).max().unwrap_or(0)
    );
    let raw_ir = callgrind_median(r, Variant::Raw, "instructions_per_msg");
    let raw_task = callgrind_median(r, Variant::Raw, "task_instructions_per_msg");
    let mut json_ir = serde_json::Map::new();
    for variant in Variant::RUST {
        let ir = callgrind_median(r, variant, "instructions_per_msg");
        let task = callgrind_median(r, variant, "task_instructions_per_msg");
        match (ir, task) {
            (Some(ir), task) => {
                let extra = raw_ir.map(|raw| ir - raw);
                let extra_task = raw_task.zip(task).map(|(raw, task)| task - raw);
                let show = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:+.0}"));
                let _ = writeln!(
                    t,
                    "  {:<38} all threads {:>6.0}/msg{}   tokio tasks {:>6}/msg{}",
                    label(variant),
                    ir,
                    if variant == Variant::Raw {
                        "              ".to_owned()
                    } else {
                        format!(" (extra {:>5})", show(extra))
                    },
                    task.map_or("-".to_owned(), |t| format!("{t:.0}")),
                    if variant == Variant::Raw { String::new() } else { format!(" (extra {:>5})", show(extra_task)) },
                );
                json_ir.insert(
                    variant.key().into(),
                    json!({"instructions_per_msg": ir, "extra_vs_raw": extra,
                           "task_instructions_per_msg": task, "task_extra_vs_raw": extra_task,
                           "runs": r.callgrind.get(&variant)}),
                );
            }
            (None, _) => {
                let _ = writeln!(t, "  {:<38} skipped", label(variant));
            }
        }
    }

    // Allocations per message.
    let _ = writeln!(
        t,
        "\nHEAP ALLOCATIONS PER MESSAGE (counting #[global_allocator]: every Rust alloc/realloc in ALL threads, \
         messages {} to {} of each\nthroughput run; librdkafka's own C allocations are not seen by it; median over \
         runs, both sizes)",
        r.window.0, r.window.1
    );
    let alloc_of = |variant: Variant| -> Stats {
        let mut all = Vec::new();
        for &size in &r.sizes {
            if let Some(runs) = r.rust_runs.get(&(size, variant)) {
                all.extend(runs.iter().map(|run| run.measured.allocs_per_msg()));
            }
        }
        stats(&all)
    };
    let mut json_alloc = serde_json::Map::new();
    for variant in Variant::RUST {
        let s = alloc_of(variant);
        let _ = writeln!(t, "  {:<38} {:>8.4} allocations/msg  [max {:.4}]", label(variant), s.median, s.max);
        json_alloc.insert(variant.key().into(), s.json());
    }

    // Latency.
    let _ = writeln!(
        t,
        "\nEND-TO-END LATENCY, produce() call -> handler ({} msg/s for {} s, 100 B, producer linger.ms={}, send time \
         in the payload;\nconsumers (both) with {}; all rounds pooled)",
        grouped(r.latency_rate as f64),
        r.latency_seconds,
        r.latency_linger_ms,
        if r.latency_settings.is_empty() {
            "the default settings".to_owned()
        } else {
            r.latency_settings.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
        }
    );
    let mut json_lat = serde_json::Map::new();
    for (variant, runs) in &r.latency_runs {
        let pooled: Vec<u64> = runs.iter().flatten().copied().collect();
        let p = percentiles(&pooled);
        let _ = writeln!(
            t,
            "  {:<38} p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms   ({} msgs)",
            label(*variant),
            p.p50_ms,
            p.p99_ms,
            p.max_ms,
            p.n
        );
        let per_round: Vec<Value> = runs
            .iter()
            .map(|run| {
                let p = percentiles(run);
                json!({"p50_ms": p.p50_ms, "p99_ms": p.p99_ms, "max_ms": p.max_ms, "n": p.n})
            })
            .collect();
        json_lat.insert(
            variant.key().into(),
            json!({"p50_ms": p.p50_ms, "p99_ms": p.p99_ms, "max_ms": p.max_ms, "n": p.n, "rounds": per_round}),
        );
    }

    if !r.ack_runs.is_empty() {
        let pooled: Vec<u64> = r.ack_runs.iter().flatten().copied().collect();
        let p = percentiles(&pooled);
        let _ = writeln!(
            t,
            "  {:<38} p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms   ({} msgs; the broker's share, same for both)",
            "produce() -> delivery report (acks=all)", p.p50_ms, p.p99_ms, p.max_ms, p.n
        );
        json_lat.insert(
            "produce_to_delivery_report".into(),
            json!({"p50_ms": p.p50_ms, "p99_ms": p.p99_ms, "max_ms": p.max_ms, "n": p.n}),
        );
    }

    // Peak RSS.
    let _ = writeln!(
        t,
        "\nPEAK RSS (VmHWM from /proc/<pid>/status of a child process that consumed the whole backlog, read after it \
         closed its consumer)"
    );
    let mut json_rss = serde_json::Map::new();
    for &size in &r.sizes {
        let mut line = format!("  {:<7}", size_label(size));
        let mut per_size = serde_json::Map::new();
        for key in [Variant::PerMessage.key(), Variant::Stream.key(), Variant::Raw.key(), "aiokafka"] {
            if let Some(v) = r.rss.get(&(size, key.to_owned())) {
                let mib = v["vm_hwm_kib"].as_f64().unwrap_or(0.0) / 1024.0;
                let _ = write!(line, "  {key} {mib:.1} MiB");
                if key == "aiokafka" {
                    let _ = write!(line, " ({} msgs)", v["messages"]);
                }
                per_size.insert(key.into(), v.clone());
            }
        }
        let _ = writeln!(t, "{line}");
        json_rss.insert(size.to_string(), Value::Object(per_size));
    }

    // Producer throughput.
    let json_producer = match &r.producer {
        Some(p) => render_producer(&mut t, r, p),
        None => {
            let _ = writeln!(t, "\nPRODUCER THROUGHPUT: not run (--only)");
            json!({"status": "not run (--only)"})
        }
    };

    // Targets.
    let _ = writeln!(t, "\nTARGETS (from the issue)");
    for &size in &r.sizes {
        for variant in [Variant::PerMessage, Variant::Stream] {
            if let Some(row) = rust_row(r, size, variant) {
                let ratio = row.ratio.map(|s| s.median);
                target(
                    &mut t,
                    format!("throughput >= {TARGET_RATIO_TO_RAW}x raw, {}, {}", size_label(size), variant.key()),
                    ratio.map(|x| x >= TARGET_RATIO_TO_RAW),
                    format!(
                        "{} (per-round ratios {:.3} - {:.3})",
                        ratio.map_or("-".into(), |x| format!("{x:.3}x")),
                        row.ratio.map_or(f64::NAN, |s| s.min),
                        row.ratio.map_or(f64::NAN, |s| s.max)
                    ),
                );
            }
        }
    }
    if let Some(p) = &r.producer {
        for &size in &r.sizes {
            for variant in [PVariant::FrameworkAwait, PVariant::FrameworkBatch] {
                let Some(row) = producer_row(p, size, variant) else { continue };
                let ratio = row.ratio.map(|s| s.median);
                let raw = variant.baseline().map_or("raw", PVariant::label);
                target(
                    &mut t,
                    format!(
                        "producer throughput >= {TARGET_RATIO_TO_RAW}x raw, {}, {}",
                        size_label(size),
                        variant.key()
                    ),
                    ratio.map(|x| x >= TARGET_RATIO_TO_RAW),
                    format!(
                        "{} of {raw} (per-round ratios {:.3} - {:.3})",
                        ratio.map_or("-".into(), |x| format!("{x:.3}x")),
                        row.ratio.map_or(f64::NAN, |s| s.min),
                        row.ratio.map_or(f64::NAN, |s| s.max)
                    ),
                );
            }
        }
    }
    for variant in [Variant::PerMessage, Variant::Stream] {
        let extra = callgrind_median(r, variant, "instructions_per_msg").zip(raw_ir).map(|(a, b)| a - b);
        let extra_task = callgrind_median(r, variant, "task_instructions_per_msg").zip(raw_task).map(|(a, b)| a - b);
        target(
            &mut t,
            format!("< {TARGET_EXTRA_INSTRUCTIONS:.0} extra instructions/msg, {}", variant.key()),
            extra.map(|x| x < TARGET_EXTRA_INSTRUCTIONS),
            extra.map_or("not measured (callgrind skipped)".into(), |x| {
                format!(
                    "{x:+.0} instructions/msg, all threads ({} in tokio tasks)",
                    extra_task.map_or("-".into(), |e| format!("{e:+.0}"))
                )
            }),
        );
    }
    let raw_alloc = alloc_of(Variant::Raw);
    for variant in [Variant::PerMessage, Variant::Stream] {
        let ours = alloc_of(variant);
        let extra = (ours.n > 0 && raw_alloc.n > 0).then_some(ours.median - raw_alloc.median);
        target(
            &mut t,
            format!("no heap allocation per message beyond rdkafka's, {}", variant.key()),
            extra.map(|x| x < TARGET_EXTRA_ALLOCS_PER_MSG),
            extra.map_or("not measured".into(), |x| {
                format!(
                    "{x:+.4} allocations/msg vs raw (threshold < {TARGET_EXTRA_ALLOCS_PER_MSG}; raw itself: {:.4}/msg, \
                     rdkafka's Arc::new(event) per message in BaseConsumer::poll_queue)",
                    raw_alloc.median
                )
            }),
        );
    }
    for &size in &r.sizes {
        let ours = rust_row(r, size, Variant::PerMessage).map(|row| row.msgs.median);
        let theirs = aio_row(r, size).map(|(m, _)| m.median).filter(|_| r.aiokafka_version.is_some());
        let ratio = ours.zip(theirs).map(|(a, b)| a / b);
        let of = |variant| rust_row(r, size, variant).zip(theirs).map(|(row, b)| row.msgs.median / b);
        let context = match (of(Variant::Raw), of(Variant::Ceiling)) {
            (Some(raw), Some(ceiling)) => {
                format!(" (raw rdkafka {raw:.1}x; (f) librdkafka batch ceiling {ceiling:.1}x)")
            }
            (Some(raw), None) => format!(" (raw rdkafka {raw:.1}x)"),
            _ => String::new(),
        };
        target(
            &mut t,
            format!("framework per-message >= {TARGET_RATIO_TO_AIOKAFKA}x aiokafka, {}", size_label(size)),
            ratio.map(|x| x >= TARGET_RATIO_TO_AIOKAFKA),
            ratio.map_or("not measured (aiokafka skipped)".into(), |x| format!("{x:.1}x{context}")),
        );
    }

    let json = json!({
        "schema": 1,
        "mode": if r.smoke { "smoke" } else { "full" },
        "generated_unix": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "elapsed_seconds": r.elapsed_seconds,
        "machine": {
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "loadavg_start": r.load_start,
            "loadavg_end": r.load_end,
        },
        "broker": {"name": r.broker_name, "address": r.brokers},
        "method": {
            "messages_per_run": r.messages,
            "partitions": crate::broker::PARTITIONS,
            "rounds": r.rounds,
            "order": "per round, per size: (a), (b), (d), (f) in an order rotated every round, then (e); each in a fresh consumer group reading the whole topic from the start",
            "timing": "first message received -> last (N-th) message; msg/s = (N-1)/t; MB = 1e6 payload bytes",
            "consumer_settings": crate::variants::CONSUMER_SETTINGS.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "ceiling_prefetch": if crate::variants::ceiling_has_runtime_prefetch() { "runtime" } else { "librdkafka" },
            "ratio_to_raw": "median of per-round ratios (variant / raw of the same round)",
            "instructions": "valgrind --tool=callgrind on a child process reading a dedicated topic of exactly N 100-B messages (fresh group); --zero-before=kafka_bench_window_start (called at message N/10) and --dump-before=kafka_bench_window_end (at message 9N/10); all threads = the dump's total / (8N/10); tokio tasks = inclusive cost of tokio's Context::run_task in that dump (callgrind_annotate) / (8N/10); extra = variant - raw",
            "allocations": "counting #[global_allocator] (Rust alloc + alloc_zeroed + realloc, all threads) between messages N/10 and 9N/10 of every throughput run; librdkafka's C mallocs are not included",
            "latency_consumer_settings": r.latency_settings.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "latency_producer_linger_ms": r.latency_linger_ms,
            "latency": "fresh topic; warm-up messages until the consumer sees one, 0.5 s settle, then timed messages at a fixed rate; latency = handler time - send time stamped in the payload (same process, same monotonic clock)",
            "peak_rss": "VmHWM of a child process (kafka-bench child / the aiokafka script) after it consumed the backlog and closed its consumer",
            "aiokafka": "aiokafka_consumer.py: `async for msg in consumer`, len(msg.value); enable_auto_commit=False, per-partition offset recorded after each message and committed every 5 s and at the end (librdkafka's store + auto-commit)",
        },
        "backlogs": r.backlogs,
        "throughput": json_tp,
        "instructions_per_message": json_ir,
        "allocations_per_message": json_alloc,
        "latency": json_lat,
        "peak_rss": json_rss,
        "producer": json_producer,
        "targets": targets,
    });
    (t, json)
}

/// The producer rows of the table; returns the `producer` entry of `latest.json`.
fn render_producer(t: &mut String, r: &Results, p: &ProducerResults) -> Value {
    let counts = p.messages.iter().map(|(&size, &n)| format!("{} for {}", grouped(n as f64), size_label(size)));
    let counts = counts.collect::<Vec<_>>().join(", ");
    let fewer = p.messages.values().min() != p.messages.values().max();
    let settings = PRODUCER_SETTINGS.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
    let _ = writeln!(
        t,
        "\nPRODUCER THROUGHPUT: msgs per run: {counts}{}; each run into a fresh 3-partition topic created \
         beforehand,\ntimed from the first send to the last delivery report; median [min - max] of {} interleaved \
         round(s) (p-a p-raw-a p-b p-raw-b per size);\n'x raw' = median of the per-round ratios to the raw \
         counterpart (ratio of medians in brackets). p-a/p-raw-a: {} awaited sends in flight.\nOne shared producer \
         for the process (set up once, reused by every run), one raw FutureProducer and one raw BaseProducer,\n\
         all with the same librdkafka settings (librdkafka's defaults, set explicitly): {settings}",
        if fewer { " (fewer for 1 KiB: time)" } else { "" },
        p.rounds,
        grouped(p.window as f64)
    );
    let _ = writeln!(
        t,
        "{:<7} {:<38} {:>9} {:>11} {:>19} {:>8} {:>15} {:>10}",
        "size", "variant", "msgs/run", "msg/s", "[min - max]", "MB/s", "x raw", "allocs/msg"
    );
    let mut json_tp = serde_json::Map::new();
    for &size in &r.sizes {
        let mut per_size = serde_json::Map::new();
        for variant in PVariant::ALL {
            let Some(row) = producer_row(p, size, variant) else { continue };
            let ratio = match (row.ratio, row.ratio_of_medians) {
                (Some(r), Some(m)) => format!("{:.3} ({:.3})", r.median, m),
                _ => "1 (baseline)".to_owned(),
            };
            let _ = writeln!(
                t,
                "{:<7} {:<38} {:>9} {:>11} {:>19} {:>8.1} {:>15} {:>10.2}",
                size_label(size),
                variant.label(),
                grouped(p.messages[&size] as f64),
                grouped(row.msgs.median),
                format!("[{} - {}]", si(row.msgs.min), si(row.msgs.max)),
                row.mbs.median,
                ratio,
                row.allocs.median
            );
            per_size.insert(
                variant.key().into(),
                json!({
                    "label": variant.label(),
                    "messages_per_run": p.messages[&size],
                    "msgs_per_sec": row.msgs.json(),
                    "mb_per_sec": row.mbs.json(),
                    "baseline": variant.baseline().map(PVariant::key),
                    "ratio_to_raw_paired": row.ratio.map(|s| s.json()),
                    "ratio_of_medians_to_raw": row.ratio_of_medians,
                    "allocs_per_msg": row.allocs.json(),
                    "runs": p.runs.get(&(size, variant)).map(|runs| runs.iter().map(|run| run.to_json()).collect::<Vec<_>>()),
                }),
            );
        }
        json_tp.insert(size.to_string(), Value::Object(per_size));
    }
    // Where the time goes: sending (until the last message is queued) vs waiting for the rest.
    for &size in &r.sizes {
        let parts: Vec<String> = PVariant::ALL
            .into_iter()
            .filter_map(|variant| {
                let runs = p.runs.get(&(size, variant))?;
                let queued = stats(&runs.iter().map(|run| run.queued_seconds).collect::<Vec<_>>()).median;
                let total = stats(&runs.iter().map(|run| run.seconds).collect::<Vec<_>>()).median;
                Some(format!("{} {queued:.3}/{total:.3}", variant.label().split(' ').next().unwrap_or("")))
            })
            .collect();
        if !parts.is_empty() {
            let _ =
                writeln!(t, "  {:<7} all queued after / total, s (medians): {}", size_label(size), parts.join("  "));
        }
    }
    json!({
        "status": "measured",
        "messages_per_run": p.messages.iter().map(|(size, n)| (size.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "rounds": p.rounds,
        "window_in_flight": p.window,
        "settings": PRODUCER_SETTINGS.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "variants": {
            "framework_send_awaited": "(p-a) kafka_runtime::producer().message_bytes(&topic, &payload).send().await, a bounded window of in-flight sends (fixed-slot FuturesUnordered-like window in one task)",
            "raw_future_producer": "(p-raw-a) rdkafka FutureProducer::send(FutureRecord::to(topic).payload(payload), 30 s), the same window",
            "framework_send_and_forget_flush": "(p-b) producer().message_bytes(&topic, &payload).send_and_forget().await for every message, then producer().flush(180 s)",
            "raw_base_producer": "(p-raw-b) rdkafka BaseProducer::send in a loop on a blocking thread, poll(1 ms) and retry on QueueFull, poll(0) every 1,000 messages, then flush(180 s)",
        },
        "order": "per round, per size: p-a, p-raw-a, p-b, p-raw-b; each run into a fresh 3-partition topic created (and afterwards deleted) outside the timing; one warm-up run per variant (20,000 x 100 B) before round 1",
        "clients": "the shared producer is set up once per process (ProducerSetup with the settings above) and reused by every p-a/p-b run; one raw FutureProducer and one raw BaseProducer, created once, reused",
        "timing": "first send -> last delivery report (p-a/p-raw-a: last awaited future; p-b: producer().flush returned; p-raw-b: flush returned); msg/s = N/t; MB = 1e6 payload bytes",
        "ratio_to_raw": "median of per-round ratios (framework / raw counterpart of the same round and size)",
        "allocations": "counting #[global_allocator] over the whole run (all threads), per message",
        "throughput": json_tp,
        "shared_producer_stats": p.shared_stats,
    })
}

fn print_rust_row(t: &mut String, r: &Results, size: usize, variant: Variant, row: &Row) {
    let ratio = match (variant, row.ratio, row.ratio_of_medians) {
        (Variant::Raw, _, _) => "1 (baseline)".to_owned(),
        (_, Some(r), Some(m)) => format!("{:.3} ({:.3})", r.median, m),
        _ => "-".to_owned(),
    };
    let cores = |stats: Option<Stats>| stats.map_or("-".to_owned(), |s| format!("{:.2}", s.median));
    let (client, broker, busiest) = cpu_cores(r, size, variant);
    let _ = writeln!(
        t,
        "{:<7} {:<38} {:>9} {:>11} {:>19} {:>8.1} {:>15} {:>7} {:>8} {:>7}",
        size_label(size),
        label(variant),
        grouped(r.messages as f64),
        grouped(row.msgs.median),
        format!("[{} - {}]", si(row.msgs.min), si(row.msgs.max)),
        row.mbs.median,
        ratio,
        cores(client),
        cores(busiest),
        cores(broker)
    );
}

/// Cores kept busy during the steady-state window, by the benchmark process (client), by the
/// broker, and by the client's busiest thread: stats over the rounds, `None` when not measured.
fn cpu_cores(r: &Results, size: usize, variant: Variant) -> (Option<Stats>, Option<Stats>, Option<Stats>) {
    let Some(runs) = r.rust_runs.get(&(size, variant)) else { return (None, None, None) };
    let of = |pick: fn(&crate::probe::Measured) -> Option<f64>| {
        let values: Vec<f64> = runs.iter().filter_map(|run| pick(&run.measured)).collect();
        (!values.is_empty()).then(|| stats(&values))
    };
    (of(|m| m.client_cores), of(|m| m.broker_cores), of(|m| m.busiest_thread_cores))
}

fn rust_row_json(r: &Results, size: usize, variant: Variant, row: &Row) -> Value {
    let (client, broker, busiest) = cpu_cores(r, size, variant);
    json!({
        "client_cpu_cores": client.map(|s| s.json()),
        "busiest_client_thread_cores": busiest.map(|s| s.json()),
        "broker_cpu_cores": broker.map(|s| s.json()),
        "msgs_per_sec": row.msgs.json(),
        "mb_per_sec": row.mbs.json(),
        "ratio_to_raw_paired": row.ratio.map(|s| s.json()),
        "ratio_of_medians_to_raw": row.ratio_of_medians,
        "allocs_per_msg": row.allocs.json(),
        "runs": r.rust_runs.get(&(size, variant)).map(|runs| runs.iter().map(|run| {
            let mut v = run.measured.to_json();
            v["round"] = json!(run.round);
            v
        }).collect::<Vec<_>>()),
    })
}

/// Registers a TTF font for plotters' ab_glyph text: `BENCH_FONT`, or DejaVu Sans (Debian's
/// fonts-dejavu-core, which run.sh installs when it is missing), or any .ttf under
/// /usr/share/fonts.
fn register_font() -> Result<(), String> {
    let mut candidates: Vec<std::path::PathBuf> = Vec::new();
    if let Ok(path) = std::env::var("BENCH_FONT") {
        candidates.push(path.into());
    }
    candidates.push("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf".into());
    let mut stack = vec![std::path::PathBuf::from("/usr/share/fonts")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("ttf")) {
                candidates.push(path);
            }
        }
    }
    for path in candidates {
        if let Ok(bytes) = std::fs::read(&path) {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, bytes).is_ok() {
                return Ok(());
            }
        }
    }
    Err("no TTF font found: set BENCH_FONT or install fonts-dejavu-core".into())
}

/// One bar series of the plot: name, colour, and per size (msg/s stats, MB/s stats).
type Series = (String, plotters::style::RGBColor, Vec<Option<(Stats, Stats)>>);

/// `throughput.png`: msg/s and MB/s by message size and variant, median bars with min-max
/// whiskers; the consumer variants on top, the producer variants below.
pub fn plot(r: &Results, path: &Path) -> Result<(), String> {
    use plotters::prelude::*;
    register_font()?;
    let colors = [RGBColor(31, 119, 180), RGBColor(44, 160, 44), RGBColor(255, 127, 14), RGBColor(148, 103, 189)];
    let mut consumers: Vec<Series> = Vec::new();
    for (j, variant) in Variant::RUST.into_iter().enumerate() {
        consumers.push((
            label(variant).to_owned(),
            colors[j],
            r.sizes.iter().map(|&s| rust_row(r, s, variant).map(|row| (row.msgs, row.mbs))).collect(),
        ));
    }
    if let Some(version) = &r.aiokafka_version {
        consumers.push((
            format!("(e) aiokafka {version} ({} msgs/run)", si(r.aiokafka_messages as f64)),
            colors[3],
            r.sizes.iter().map(|&s| aio_row(r, s)).collect(),
        ));
    }
    if r.rust_runs.keys().any(|(_, variant)| *variant == Variant::Ceiling) {
        consumers.push((
            label(Variant::Ceiling).to_owned(),
            RGBColor(150, 150, 150),
            r.sizes.iter().map(|&s| rust_row(r, s, Variant::Ceiling).map(|row| (row.msgs, row.mbs))).collect(),
        ));
    }
    let height = if r.producer.is_some() { 1290 } else { 660 };
    let root = BitMapBackend::new(path, (1500, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (top, bottom) = root.split_vertically(660);
    let consumer_title = format!(
        "CONSUMER: kafka-runtime vs raw rdkafka and aiokafka ({} broker, {} msgs/run, median of {} rounds, whiskers \
         min-max){}",
        r.broker_name,
        si(r.messages as f64),
        r.rounds,
        if r.smoke { " - SMOKE RUN" } else { "" }
    );
    let sizes: Vec<String> = r.sizes.iter().map(|&s| format!("{} messages", size_label(s))).collect();
    plot_band(&top, &consumer_title, &consumers, &sizes)?;
    if let Some(p) = &r.producer {
        // Framework dark, its raw counterpart light, side by side.
        let pcolors = [RGBColor(31, 119, 180), RGBColor(158, 202, 225), RGBColor(44, 160, 44), RGBColor(161, 217, 155)];
        let producers: Vec<Series> = PVariant::ALL
            .into_iter()
            .zip(pcolors)
            .map(|(variant, color)| {
                let per_size =
                    r.sizes.iter().map(|&s| producer_row(p, s, variant).map(|row| (row.msgs, row.mbs))).collect();
                (variant.label().to_owned(), color, per_size)
            })
            .collect();
        let title = format!(
            "PRODUCER: shared producer vs raw rdkafka, same settings (fresh 3-partition topic per run, first send -> \
             last delivery, median of {} rounds){}",
            p.rounds,
            if r.smoke { " - SMOKE RUN" } else { "" }
        );
        let sizes: Vec<String> = r
            .sizes
            .iter()
            .map(|&s| {
                format!("{} messages ({}/run)", size_label(s), si(p.messages.get(&s).copied().unwrap_or(0) as f64))
            })
            .collect();
        plot_band(&bottom, &title, &producers, &sizes)?;
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

/// One band of the plot: a title, a legend, and msg/s (left) and MB/s (right) panels.
fn plot_band(
    area: &plotters::drawing::DrawingArea<plotters::prelude::BitMapBackend<'_>, plotters::coord::Shift>,
    title_text: &str,
    series: &[Series],
    sizes: &[String],
) -> Result<(), String> {
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    let (title, rest) = area.split_vertically(45);
    let (legend, body) = rest.split_vertically(40);
    let mut x = 60;
    for (name, color, _) in series {
        legend.draw(&Rectangle::new([(x, 12), (x + 16, 28)], color.filled())).map_err(|e| e.to_string())?;
        legend
            .draw_text(name, &("sans-serif", 15).into_font().color(&BLACK), (x + 22, 12))
            .map_err(|e| e.to_string())?;
        x += 30 + 8 * name.len() as i32;
    }
    title.draw_text(title_text, &("sans-serif", 20).into_font().color(&BLACK), (20, 15)).map_err(|e| e.to_string())?;
    let (left, right) = body.split_horizontally(750);
    for (area, mb, y_desc) in [(left, false, "messages / s"), (right, true, "MB / s (payload)")] {
        let value = |s: &(Stats, Stats)| if mb { s.1 } else { s.0 };
        let top = series.iter().flat_map(|(_, _, v)| v.iter().flatten().map(|s| value(s).max)).fold(1.0, f64::max);
        let n = sizes.len() as f64;
        let mut chart = ChartBuilder::on(&area)
            .margin(15)
            .x_label_area_size(20)
            .y_label_area_size(80)
            .build_cartesian_2d(0f64..n, 0f64..top * 1.25)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc(y_desc)
            .y_label_formatter(&|v| si(*v))
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(|e| e.to_string())?;
        let k = series.len() as f64;
        let width = 0.8 / k;
        for (i, size) in sizes.iter().enumerate() {
            chart
                .draw_series(std::iter::once(Text::new(
                    size.clone(),
                    (i as f64 + 0.5, top * 1.2),
                    TextStyle::from(("sans-serif", 18).into_font()).pos(Pos::new(HPos::Center, VPos::Top)),
                )))
                .map_err(|e| e.to_string())?;
        }
        for (j, (_, color, per_size)) in series.iter().enumerate() {
            let bars = per_size.iter().enumerate().filter_map(|(i, s)| {
                let s = value(s.as_ref()?);
                let x0 = i as f64 + 0.1 + j as f64 * width;
                Some(Rectangle::new([(x0, 0.0), (x0 + width * 0.9, s.median)], color.filled()))
            });
            chart.draw_series(bars).map_err(|e| e.to_string())?;
            for (i, s) in per_size.iter().enumerate() {
                let Some(s) = s.as_ref().map(value) else { continue };
                let xc = i as f64 + 0.1 + j as f64 * width + width * 0.45;
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(xc, s.min), (xc, s.max)],
                        BLACK.stroke_width(2),
                    )))
                    .map_err(|e| e.to_string())?;
                chart
                    .draw_series(std::iter::once(Text::new(
                        si(s.median),
                        (xc, s.max + top * 0.015),
                        TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom)),
                    )))
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(())
}
