//! [`Slots`]: handler futures in flight, each in a slot allocated once and reused, so that
//! running messages side by side allocates nothing per message. A future is polled once as
//! soon as it is started; one that finishes then never waits in the set at all, which keeps a
//! handler that does not wait as cheap as the sequential loop.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

pub(crate) struct Slots<F> {
    slots: Vec<Slot<F>>,
    /// Indexes of the empty slots.
    free: Vec<usize>,
    woken: Arc<Woken>,
    /// Woken slots taken from `woken`, not polled yet.
    to_poll: Vec<usize>,
}

struct Slot<F> {
    future: Pin<Box<Option<F>>>,
    waker: Waker,
}

/// Which slots were woken, and the task to wake for them.
#[derive(Default)]
struct Woken {
    slots: Mutex<Vec<usize>>,
    task: AtomicWaker,
}

struct SlotWaker {
    index: usize,
    woken: Arc<Woken>,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.slots.lock().unwrap_or_else(|e| e.into_inner()).push(self.index);
        self.woken.task.wake();
    }
}

impl<F: Future> Slots<F> {
    /// `capacity` slots for futures of the type `_call` returns.
    pub(crate) fn new<A>(capacity: usize, _call: &impl Fn(A) -> F) -> Self {
        let woken = Arc::new(Woken::default());
        let slots = (0..capacity)
            .map(|index| Slot {
                future: Box::pin(None),
                waker: Waker::from(Arc::new(SlotWaker { index, woken: Arc::clone(&woken) })),
            })
            .collect();
        Self { slots, free: (0..capacity).rev().collect(), woken, to_poll: Vec::new() }
    }

    #[inline]
    pub(crate) fn has_room(&self) -> bool {
        !self.free.is_empty()
    }

    /// True when no future is in flight.
    #[inline]
    pub(crate) fn is_idle(&self) -> bool {
        self.free.len() == self.slots.len()
    }

    /// Takes a free slot (there is one) for a future that runs elsewhere, so that it counts
    /// against the capacity; [`give_back`](Self::give_back) returns it.
    pub(crate) fn reserve(&mut self) -> usize {
        self.free.pop().expect("reserve is called only with room")
    }

    pub(crate) fn give_back(&mut self, index: usize) {
        self.free.push(index);
    }

    /// Starts `future` in a free slot (the caller checked [`has_room`](Self::has_room)) and
    /// polls it once: its output if it finished, else the slot it waits in.
    #[inline]
    pub(crate) fn start(&mut self, future: F) -> Result<F::Output, usize> {
        let index = self.free.pop().expect("start is called only with room");
        let slot = &mut self.slots[index];
        slot.future.as_mut().set(Some(future));
        match poll_slot(slot) {
            Poll::Ready(output) => {
                self.free.push(index);
                Ok(output)
            }
            Poll::Pending => Err(index),
        }
    }

    /// The next future to finish, with its slot. Polls only the slots that were woken, each
    /// at most once per call: a future woken again while polled (tokio's cooperative budget
    /// is spent) waits for the next call, which its wake schedules.
    pub(crate) fn poll_finished(&mut self, cx: &mut Context<'_>) -> Poll<(usize, F::Output)> {
        self.woken.task.register(cx.waker());
        if self.to_poll.is_empty() {
            let mut woken = self.woken.slots.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::swap(&mut *woken, &mut self.to_poll);
        }
        while let Some(index) = self.to_poll.pop() {
            if let Poll::Ready(output) = poll_slot(&mut self.slots[index]) {
                self.free.push(index);
                return Poll::Ready((index, output));
            }
        }
        Poll::Pending
    }
}

/// Polls a slot's future with the slot's own waker; an empty slot (woken after its future
/// finished) stays pending. A finished future is dropped at once.
#[inline]
fn poll_slot<F: Future>(slot: &mut Slot<F>) -> Poll<F::Output> {
    let Some(future) = slot.future.as_mut().as_pin_mut() else { return Poll::Pending };
    let output = std::task::ready!(future.poll(&mut Context::from_waker(&slot.waker)));
    slot.future.as_mut().set(None);
    Poll::Ready(output)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn futures_that_finish_at_once_never_wait_and_the_others_finish_in_their_own_time() {
        let call = |ms: u64| async move {
            if ms > 0 {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            ms
        };
        let mut slots = Slots::new(3, &call);
        assert_eq!(slots.start(call(0)), Ok(0), "a future that does not wait finishes in start");
        assert!(slots.is_idle());
        let slow = slots.start(call(60)).unwrap_err();
        let fast = slots.start(call(10)).unwrap_err();
        assert_ne!(slow, fast);
        assert!(slots.has_room());
        let third = slots.start(call(30)).unwrap_err();
        assert!(!slots.has_room());
        let mut finished = Vec::new();
        while !slots.is_idle() {
            let (slot, ms) = std::future::poll_fn(|cx| slots.poll_finished(cx)).await;
            finished.push((slot, ms));
        }
        assert_eq!(finished, [(fast, 10), (third, 30), (slow, 60)]);
        // Slots are reused.
        assert_eq!(slots.start(call(0)), Ok(0));
    }
}
