//! A coarse clock for the per-message path: a count that a thread of its own advances every
//! [`TICK`], read with one atomic load (reading the system clock per message costs more
//! than what it guards).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;
use std::time::Duration;

/// How often the count advances.
pub(crate) const TICK: Duration = Duration::from_millis(100);

static TICKS: AtomicU64 = AtomicU64::new(0);
static STARTED: Once = Once::new();

/// Starts the thread that advances the count, once per process. Without it (the thread could
/// not be made) the count stands still: what waits on it waits for its other bounds.
pub(crate) fn start() {
    STARTED.call_once(|| {
        let ticking = std::thread::Builder::new().name("kafka-clock".into()).spawn(|| loop {
            std::thread::sleep(TICK);
            TICKS.fetch_add(1, Ordering::Relaxed);
        });
        if let Err(err) = ticking {
            tracing::debug!("cannot start the coarse clock's thread: {err}");
        }
    });
}

/// The count now: it differs from an earlier reading once at least one [`TICK`] has passed
/// since (at most two).
#[inline]
pub(crate) fn now() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_advances_once_started() {
        start();
        let before = now();
        let deadline = std::time::Instant::now() + 50 * TICK;
        while now() == before {
            assert!(std::time::Instant::now() < deadline, "the coarse clock did not advance");
            std::thread::sleep(TICK / 10);
        }
    }
}
