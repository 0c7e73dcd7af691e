//! What every variant calls once per message, and the counting allocator.
//!
//! All Rust variants call the same [`record`] with the payload, so the measuring code costs
//! the same in each of them and cancels out of every comparison.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Counts every allocation made through Rust's global allocator (librdkafka's own C
/// allocations do not go through it).
pub struct CountingAlloc;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

pub fn allocations() -> u64 {
    ALLOCATIONS.load(Relaxed)
}

const THROUGHPUT: u8 = 0;
const LATENCY: u8 = 1;

static MODE: AtomicU8 = AtomicU8::new(THROUGHPUT);
static COUNT: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
static TARGET: AtomicU64 = AtomicU64::new(u64::MAX);
static WINDOW_START: AtomicU64 = AtomicU64::new(u64::MAX);
static WINDOW_END: AtomicU64 = AtomicU64::new(u64::MAX);
static FIRST_NS: AtomicU64 = AtomicU64::new(0);
static LAST_NS: AtomicU64 = AtomicU64::new(0);
static WINDOW_START_NS: AtomicU64 = AtomicU64::new(0);
static WINDOW_END_NS: AtomicU64 = AtomicU64::new(0);
static ALLOCS_AT_START: AtomicU64 = AtomicU64::new(0);
static ALLOCS_AT_END: AtomicU64 = AtomicU64::new(0);
static WARM_SEEN: AtomicBool = AtomicBool::new(false);
static DONE: AtomicBool = AtomicBool::new(false);

static LATENCIES: Mutex<Vec<u64>> = Mutex::new(Vec::new());

/// CPU time (clock ticks, user + system, all threads) of this process and of the broker,
/// read at the window's start and end.
static CPU_AT_START: Mutex<Option<Cpu>> = Mutex::new(None);
static CPU_AT_END: Mutex<Option<Cpu>> = Mutex::new(None);
static BROKER_PID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

#[derive(Clone, Debug)]
struct Cpu {
    client: Option<u64>,
    broker: Option<u64>,
    /// Every thread of this process: (thread id, ticks).
    threads: Vec<(u64, u64)>,
}

/// The broker process whose CPU time the throughput runs report (0: unknown).
pub fn set_broker_pid(pid: u32) {
    BROKER_PID.store(pid, Relaxed);
}

/// utime + stime of a process, in clock ticks, from `/proc/<pid>/stat`.
fn cpu_ticks(pid: &str) -> Option<u64> {
    stat_ticks(&format!("/proc/{pid}/stat"))
}

/// The CPU time of each thread of this process.
fn thread_ticks() -> Vec<(u64, u64)> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
    tasks
        .flatten()
        .filter_map(|task| {
            let tid = task.file_name().to_str()?.parse().ok()?;
            Some((tid, stat_ticks(&task.path().join("stat").to_string_lossy())?))
        })
        .collect()
}

fn stat_ticks(path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn cpu_now() -> Cpu {
    let broker = BROKER_PID.load(Relaxed);
    Cpu {
        client: cpu_ticks("self"),
        broker: (broker != 0).then(|| cpu_ticks(&broker.to_string())).flatten(),
        threads: thread_ticks(),
    }
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

static NOTIFY: Notify = Notify::const_new();

fn done() -> &'static Notify {
    &NOTIFY
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds on one monotonic clock shared by the producer and the consumers of this process.
pub fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

static MARKER: AtomicU64 = AtomicU64::new(0);

/// Callgrind zeroes its counters when this is entered (`--zero-before`). The two markers
/// must have different bodies, or the linker folds them into one function.
#[no_mangle]
#[inline(never)]
pub extern "C" fn kafka_bench_window_start() {
    MARKER.store(std::hint::black_box(0x5157_a7a7), Relaxed);
}

/// Callgrind writes its counters out when this is entered (`--dump-before`).
#[no_mangle]
#[inline(never)]
pub extern "C" fn kafka_bench_window_end() {
    MARKER.fetch_add(std::hint::black_box(0xe9d), Relaxed);
}

/// Prepares a throughput run of `target` messages; the steady-state window is messages
/// `window.0 + 1 ..= window.1` (allocations and callgrind instructions are counted there).
pub fn reset_throughput(target: u64, window: (u64, u64)) {
    reset();
    WINDOW_START.store(window.0.max(1), Relaxed);
    WINDOW_END.store(window.1, Relaxed);
    TARGET.store(target, Relaxed);
    MODE.store(THROUGHPUT, Relaxed);
}

/// Prepares a latency run: `target` timed messages.
pub fn reset_latency(target: u64) {
    reset();
    LATENCIES.lock().unwrap().reserve(target as usize);
    TARGET.store(target, Relaxed);
    MODE.store(LATENCY, Relaxed);
}

fn reset() {
    epoch();
    TARGET.store(u64::MAX, Relaxed);
    WINDOW_START.store(u64::MAX, Relaxed);
    WINDOW_END.store(u64::MAX, Relaxed);
    for counter in
        [&COUNT, &BYTES, &FIRST_NS, &LAST_NS, &WINDOW_START_NS, &WINDOW_END_NS, &ALLOCS_AT_START, &ALLOCS_AT_END]
    {
        counter.store(0, Relaxed);
    }
    WARM_SEEN.store(false, Relaxed);
    *CPU_AT_START.lock().unwrap() = None;
    *CPU_AT_END.lock().unwrap() = None;
    LATENCIES.lock().unwrap().clear();
    DONE.store(false, Relaxed);
}

fn finish() {
    DONE.store(true, Relaxed);
    done().notify_waiters();
}

/// Called once per message by every Rust variant, with the payload.
#[inline]
pub fn record(payload: Option<&[u8]>) {
    if MODE.load(Relaxed) == LATENCY {
        record_latency(payload);
        return;
    }
    let n = COUNT.fetch_add(1, Relaxed) + 1;
    BYTES.fetch_add(payload.map_or(0, <[u8]>::len) as u64, Relaxed);
    if n == 1 {
        FIRST_NS.store(now_ns(), Relaxed);
    }
    if n == WINDOW_START.load(Relaxed) {
        ALLOCS_AT_START.store(allocations(), Relaxed);
        *CPU_AT_START.lock().unwrap() = Some(cpu_now());
        WINDOW_START_NS.store(now_ns(), Relaxed);
        kafka_bench_window_start();
    }
    if n == WINDOW_END.load(Relaxed) {
        kafka_bench_window_end();
        ALLOCS_AT_END.store(allocations(), Relaxed);
        WINDOW_END_NS.store(now_ns(), Relaxed);
        *CPU_AT_END.lock().unwrap() = Some(cpu_now());
    }
    if n == TARGET.load(Relaxed) {
        LAST_NS.store(now_ns(), Relaxed);
        finish();
    }
}

/// Latency payloads: send time (u64 LE, [`now_ns`]) then a flag byte, 1 for a timed message.
#[cold]
fn record_latency(payload: Option<&[u8]>) {
    let Some(p) = payload.filter(|p| p.len() >= 9) else { return };
    let sent = u64::from_le_bytes(p[..8].try_into().unwrap());
    if p[8] != 1 {
        WARM_SEEN.store(true, Relaxed);
        return;
    }
    let latency = now_ns().saturating_sub(sent);
    LATENCIES.lock().unwrap().push(latency);
    let n = COUNT.fetch_add(1, Relaxed) + 1;
    if n == TARGET.load(Relaxed) {
        finish();
    }
}

pub fn warm_seen() -> bool {
    WARM_SEEN.load(Relaxed)
}

/// Waits until the target count was reached, at most `timeout`.
pub async fn wait_done(timeout: Duration) -> bool {
    let wait = async {
        loop {
            let notified = done().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if DONE.load(Relaxed) {
                return;
            }
            notified.await;
        }
    };
    tokio::time::timeout(timeout, wait).await.is_ok()
}

/// True once the target count was reached.
pub fn is_done() -> bool {
    DONE.load(Relaxed)
}

pub fn count() -> u64 {
    COUNT.load(Relaxed)
}

/// What a throughput run measured.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    pub messages: u64,
    pub bytes: u64,
    /// From the first message to the last counted one.
    pub seconds: f64,
    pub window_messages: u64,
    pub window_allocations: u64,
    pub window_seconds: f64,
    /// Cores kept busy during the window by this process (all its threads) and by the broker.
    pub client_cores: Option<f64>,
    pub broker_cores: Option<f64>,
    /// The busiest single thread of this process during the window, in cores.
    pub busiest_thread_cores: Option<f64>,
}

impl Measured {
    pub fn msgs_per_sec(&self) -> f64 {
        // N messages span N-1 gaps from the first to the last.
        (self.messages.saturating_sub(1)) as f64 / self.seconds
    }
    pub fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 * (self.messages.saturating_sub(1)) as f64 / self.messages.max(1) as f64 / self.seconds / 1e6
    }
    pub fn allocs_per_msg(&self) -> f64 {
        self.window_allocations as f64 / self.window_messages.max(1) as f64
    }
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "messages": self.messages,
            "bytes": self.bytes,
            "seconds": self.seconds,
            "msgs_per_sec": self.msgs_per_sec(),
            "mb_per_sec": self.mb_per_sec(),
            "window_messages": self.window_messages,
            "window_allocations": self.window_allocations,
            "allocs_per_msg": self.allocs_per_msg(),
            "window_seconds": self.window_seconds,
            "client_cpu_cores": self.client_cores,
            "broker_cpu_cores": self.broker_cores,
            "busiest_thread_cores": self.busiest_thread_cores,
        })
    }
}

pub fn measured() -> Measured {
    let first = FIRST_NS.load(Relaxed);
    let last = LAST_NS.load(Relaxed);
    let (ws, we) = (WINDOW_START.load(Relaxed), WINDOW_END.load(Relaxed));
    let target = TARGET.load(Relaxed);
    let messages = COUNT.load(Relaxed).min(target);
    let window_seconds = WINDOW_END_NS.load(Relaxed).saturating_sub(WINDOW_START_NS.load(Relaxed)) as f64 / 1e9;
    let (start, end) = (CPU_AT_START.lock().unwrap().clone(), CPU_AT_END.lock().unwrap().clone());
    let to_cores = |ticks: u64| (window_seconds > 0.0).then(|| ticks as f64 / ticks_per_second() / window_seconds);
    let cores = |pick: fn(&Cpu) -> Option<u64>| {
        let (a, b) = (pick(start.as_ref()?)?, pick(end.as_ref()?)?);
        to_cores(b.saturating_sub(a))
    };
    let busiest = match (&start, &end) {
        (Some(start), Some(end)) => end
            .threads
            .iter()
            .map(|(tid, ticks)| {
                let before = start.threads.iter().find(|(t, _)| t == tid).map_or(0, |(_, b)| *b);
                ticks.saturating_sub(before)
            })
            .max()
            .and_then(to_cores),
        _ => None,
    };
    Measured {
        messages,
        // Every payload of a backlog has the same size; count the bytes of `messages` of them.
        bytes: BYTES.load(Relaxed) / COUNT.load(Relaxed).max(1) * messages,
        seconds: last.saturating_sub(first) as f64 / 1e9,
        window_messages: we.saturating_sub(ws),
        window_allocations: ALLOCS_AT_END.load(Relaxed).saturating_sub(ALLOCS_AT_START.load(Relaxed)),
        window_seconds,
        client_cores: cores(|cpu| cpu.client),
        broker_cores: cores(|cpu| cpu.broker),
        busiest_thread_cores: busiest,
    }
}

/// The latencies of the timed messages, in nanoseconds.
pub fn latencies() -> Vec<u64> {
    LATENCIES.lock().unwrap().clone()
}
