//! [`Ack`]: a stream worker's handle on a message it finishes elsewhere (in a spawned task),
//! and the stream's side of it: the messages kept this way, per partition in offset order,
//! so that an offset is stored only once it and every earlier one are done.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::Context;

use futures_util::task::AtomicWaker;

use super::offsets::{Outstanding, Receipt};

/// A message a stream worker marks done itself, from anywhere: get it with
/// [`TopicStream::ack_later`](super::TopicStream::ack_later), move it with the message into
/// the task that handles it, and call [`done`](Self::done) once the work is done.
///
/// The message's offset is stored once it is done **and** every earlier message of its
/// partition is; an `Ack` dropped without `done` leaves its message (and everything after it
/// in its partition) uncommitted, so it is delivered again after a restart or a rebalance.
#[must_use = "an Ack that is never done keeps its partition's offsets from being committed"]
pub struct Ack {
    receipt: Receipt,
    generation: u64,
    inbox: Arc<Inbox>,
}

impl Ack {
    /// Marks the message done. The stream stores its offset (when every earlier message of
    /// its partition is done too) the next time it is polled, or when it is dropped.
    pub fn done(self) {
        self.inbox.done.lock().unwrap_or_else(|e| e.into_inner()).push((self.receipt, self.generation));
        self.inbox.waker.wake();
    }
}

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ack").field("partition", &self.receipt.partition).field("offset", &self.receipt.offset).finish()
    }
}

/// Where finished [`Ack`]s wait for the stream.
#[derive(Default)]
struct Inbox {
    done: Mutex<Vec<(Receipt, u64)>>,
    /// The stream's task, woken so that it stores what is done without waiting for a message.
    waker: AtomicWaker,
}

/// One partition's kept messages, for one assignment of it.
struct Kept {
    /// Acks of an earlier assignment of the partition do not count.
    generation: u64,
    outstanding: Outstanding,
}

/// The stream's record of kept messages.
#[derive(Default)]
pub(crate) struct Acks {
    inbox: Arc<Inbox>,
    partitions: HashMap<(usize, i32), Kept>,
    next_generation: u64,
}

impl Acks {
    /// Keeps a message just handed out: it is done when its `Ack` is.
    pub(crate) fn keep(&mut self, receipt: Receipt) -> Ack {
        let generation = self.next_generation;
        let kept = self
            .partitions
            .entry((receipt.topic_index(), receipt.partition))
            .or_insert_with(|| Kept { generation, outstanding: Outstanding::default() });
        if kept.generation == generation {
            self.next_generation += 1;
        }
        kept.outstanding.push(receipt.offset);
        Ack { receipt, generation: kept.generation, inbox: Arc::clone(&self.inbox) }
    }

    /// A message done on the stream itself (the worker asked for the next one). Returns the
    /// offset to store: its own when nothing earlier of its partition is kept, else the
    /// highest one now done in a row, if that moved.
    pub(crate) fn done_in_place(&mut self, receipt: Receipt) -> Option<Receipt> {
        let key = (receipt.topic_index(), receipt.partition);
        match self.partitions.get_mut(&key) {
            None => Some(receipt),
            Some(kept) => {
                kept.outstanding.push(receipt.offset);
                Self::done(&mut self.partitions, key, receipt)
            }
        }
    }

    /// The kept messages whose `Ack`s were done since the last call: the offsets to store.
    /// Registers `cx` to be woken when more are.
    pub(crate) fn take_done(&mut self, cx: Option<&Context<'_>>, mut store: impl FnMut(&Receipt)) {
        if let Some(cx) = cx {
            self.inbox.waker.register(cx.waker());
        }
        let done = std::mem::take(&mut *self.inbox.done.lock().unwrap_or_else(|e| e.into_inner()));
        for (receipt, generation) in done {
            let key = (receipt.topic_index(), receipt.partition);
            if self.partitions.get(&key).is_some_and(|kept| kept.generation == generation) {
                if let Some(highest) = Self::done(&mut self.partitions, key, receipt) {
                    store(&highest);
                }
            }
        }
    }

    fn done(partitions: &mut HashMap<(usize, i32), Kept>, key: (usize, i32), receipt: Receipt) -> Option<Receipt> {
        let kept = partitions.get_mut(&key)?;
        let (highest, _) = kept.outstanding.done(receipt.offset);
        if kept.outstanding.is_empty() {
            partitions.remove(&key);
        }
        highest.map(|offset| receipt.at_offset(offset))
    }

    /// Forgets the kept messages of partitions taken away: their new owner reads them again
    /// from the last commit, and their `Ack`s no longer count.
    pub(crate) fn forget(&mut self, gone: impl Fn(&(usize, i32)) -> bool) {
        self.partitions.retain(|key, _| !gone(key));
    }

    /// Messages kept and not done yet.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.partitions.values().map(|kept| kept.outstanding.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(partition: i32, offset: i64) -> Receipt {
        Receipt::for_test(0, partition, offset)
    }

    #[test]
    fn an_offset_is_stored_only_once_every_earlier_kept_message_is_done() {
        let mut acks = Acks::default();
        let slow = acks.keep(receipt(0, 10));
        let fast = acks.keep(receipt(0, 11));
        // Another partition is not held up.
        assert_eq!(acks.done_in_place(receipt(1, 5)).map(|r| r.offset), Some(5));
        // Done on the stream after the kept ones: waits for them.
        assert!(acks.done_in_place(receipt(0, 12)).is_none());
        fast.done();
        let mut stored = Vec::new();
        acks.take_done(None, |r| stored.push(r.offset));
        assert!(stored.is_empty(), "10 is not done: nothing may be stored");
        slow.done();
        acks.take_done(None, |r| stored.push(r.offset));
        assert_eq!(stored, [12], "10, 11 and 12 done in a row");
        assert_eq!(acks.pending(), 0);
        assert_eq!(acks.done_in_place(receipt(0, 13)).map(|r| r.offset), Some(13));
    }

    #[test]
    fn acks_of_a_partition_taken_away_do_not_count_after_it_comes_back() {
        let mut acks = Acks::default();
        let old = acks.keep(receipt(0, 7));
        acks.forget(|key| key.1 == 0);
        // Assigned again, the same offset handed out again and kept.
        let again = acks.keep(receipt(0, 7));
        let later = acks.keep(receipt(0, 8));
        old.done();
        later.done();
        let mut stored = Vec::new();
        acks.take_done(None, |r| stored.push(r.offset));
        assert!(stored.is_empty(), "the old assignment's ack marked the new 7 done: {stored:?}");
        again.done();
        acks.take_done(None, |r| stored.push(r.offset));
        assert_eq!(stored, [8]);
    }
}
