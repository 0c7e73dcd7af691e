//! How often a worker that never waits yields to tokio's scheduler, so that signals, timers
//! and other tasks on its thread run: at least every [`YIELD_AFTER`] of handing out messages,
//! and at least every 1,024 messages (one unit of the task's cooperative budget, 128 units,
//! per [`MESSAGES_PER_UNIT`]).
//!
//! One unit per message made a fast worker yield every 128 messages, and on the
//! multi-threaded runtime each yield wakes an idle worker thread to look for work (an eventfd
//! write and a context switch): at 100 bytes that cost 0.1 of a core and 9 % of the rate
//! (benchmark, (a) against (f)). The clock is read once per [`MESSAGES_PER_UNIT`] messages,
//! so a handler that works 100 µs without waiting still yields every 8 messages.

use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use tokio::task::coop::{self, RestoreOnPending};

/// Messages handed out per unit of the task's budget, and between two looks at the clock.
const MESSAGES_PER_UNIT: u32 = 8;
/// Handing out messages this long without a yield makes the next look at the clock yield.
const YIELD_AFTER: Duration = Duration::from_millis(1);
/// tokio's budget per task poll: spending this many units always ends it.
const BUDGET_UNITS: usize = 128;

pub(crate) struct YieldPace {
    handed_out: u32,
    yield_at: Option<Instant>,
    yield_after: Duration,
}

impl YieldPace {
    pub(crate) fn new() -> Self {
        Self::yielding_after(YIELD_AFTER)
    }

    fn yielding_after(yield_after: Duration) -> Self {
        Self { handed_out: 0, yield_at: None, yield_after }
    }

    /// Before handing out a message: `Pending` when the task should yield first (it is woken
    /// again at once, after the others had their turn). The unit it returns, if any, goes back
    /// to [`handed_out`](Self::handed_out) once the message is handed out.
    #[inline]
    pub(crate) fn poll_turn(&mut self, cx: &mut Context<'_>) -> Poll<Option<RestoreOnPending>> {
        if !self.handed_out.is_multiple_of(MESSAGES_PER_UNIT) {
            return Poll::Ready(None);
        }
        self.poll_turn_slow(cx).map(Some)
    }

    #[inline(never)]
    fn poll_turn_slow(&mut self, cx: &mut Context<'_>) -> Poll<RestoreOnPending> {
        let now = Instant::now();
        if now >= *self.yield_at.get_or_insert(now + self.yield_after) {
            // Timed from the next look on, after the yield.
            self.yield_at = None;
            ready!(spend_the_budget(cx));
        }
        let unit = coop::poll_proceed(cx);
        if unit.is_pending() {
            self.yield_at = None;
        }
        unit
    }

    /// A message was handed out, with the unit `poll_turn` gave for it.
    #[inline]
    pub(crate) fn handed_out(&mut self, unit: Option<RestoreOnPending>) {
        if let Some(unit) = unit {
            unit.made_progress();
        }
        self.handed_out = self.handed_out.wrapping_add(1);
    }
}

/// Spends what is left of the task's budget, so that tokio ends this poll and lets the others
/// run: `Pending` (the task is woken again once they had their turn), or `Ready` when the task
/// has no budget to spend (it runs unconstrained).
fn spend_the_budget(cx: &mut Context<'_>) -> Poll<()> {
    for _ in 0..=BUDGET_UNITS {
        match coop::poll_proceed(cx) {
            Poll::Ready(unit) => unit.made_progress(),
            Poll::Pending => return Poll::Pending,
        }
    }
    Poll::Ready(())
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use super::*;

    /// Hands out messages, `work` for each, until the pace yields: how many it handed out.
    async fn one_turn(pace: &mut YieldPace, work: impl Fn()) -> usize {
        poll_fn(|cx| {
            let mut messages = 0;
            while messages < 100_000 {
                let Poll::Ready(unit) = pace.poll_turn(cx) else { break };
                work();
                pace.handed_out(unit);
                messages += 1;
            }
            Poll::Ready(messages)
        })
        .await
    }

    #[tokio::test]
    async fn a_worker_that_never_waits_yields_every_1024_messages() {
        let mut pace = YieldPace::yielding_after(Duration::from_secs(3600));
        for _ in 0..3 {
            assert_eq!(one_turn(&mut pace, || ()).await, 1024);
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_handler_that_works_without_waiting_yields_after_a_millisecond() {
        let mut pace = YieldPace::yielding_after(Duration::from_millis(1));
        let work = || std::thread::sleep(Duration::from_micros(300));
        // The clock is read every 8 messages: the first look starts the millisecond, the next
        // one (2.4 ms later) yields.
        for _ in 0..3 {
            assert_eq!(one_turn(&mut pace, work).await, 8);
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn an_unconstrained_task_is_never_made_to_yield() {
        let mut pace = YieldPace::yielding_after(Duration::ZERO);
        let handed_out = tokio::task::unconstrained(one_turn(&mut pace, || ())).await;
        assert_eq!(handed_out, 100_000);
    }
}
