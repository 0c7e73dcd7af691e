//! [`Ack`]: a stream worker's handle on a message it finishes elsewhere (in a spawned task),
//! and the stream's side of it: the messages kept this way, per partition in offset order,
//! so that an offset is stored only once it and every earlier one are done. The ones done
//! above the first one not done go in the commit's metadata (see `completed`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::Context;

use futures_util::task::AtomicWaker;

use super::completed;
use super::offsets::{Outstanding, Receipt, ToStore};

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
    /// A message of the partition, to name it by.
    receipt: Receipt,
    /// Messages done above the first one not done since its offset was last stored: the
    /// metadata to commit changed while the offset did not.
    completed_unsaved: bool,
}

impl Kept {
    /// The offset to store now that `highest` and every message before it are done: with
    /// the done ones above the first not done in the metadata, when there are any.
    fn store_through(&mut self, highest: i64) -> ToStore {
        self.completed_unsaved = false;
        match self.completed() {
            Some((next, metadata)) => ToStore::WithCompleted { receipt: self.receipt, next, metadata },
            None => ToStore::Offset(self.receipt.at_offset(highest)),
        }
    }

    /// The first offset not done and the metadata naming the done ones above it.
    fn completed(&self) -> Option<(i64, String)> {
        let (next, done) = self.outstanding.done_above()?;
        Some((next, completed::encode(next, done)?))
    }
}

/// The stream's record of kept messages.
#[derive(Default)]
pub(crate) struct Acks {
    inbox: Arc<Inbox>,
    partitions: HashMap<(usize, i32), Kept>,
    next_generation: u64,
    /// Some partition's `completed_unsaved` is set.
    completed_unsaved: bool,
}

impl Acks {
    /// Keeps a message just handed out: it is done when its `Ack` is.
    pub(crate) fn keep(&mut self, receipt: Receipt) -> Ack {
        let generation = self.next_generation;
        let kept = self.partitions.entry((receipt.topic_index(), receipt.partition)).or_insert_with(|| Kept {
            generation,
            outstanding: Outstanding::default(),
            receipt,
            completed_unsaved: false,
        });
        if kept.generation == generation {
            self.next_generation += 1;
        }
        kept.outstanding.push(receipt.offset);
        Ack { receipt, generation: kept.generation, inbox: Arc::clone(&self.inbox) }
    }

    /// A message done on the stream itself (the worker asked for the next one). Returns the
    /// offset to store: its own when nothing earlier of its partition is kept, else what the
    /// partition's messages done in a row now allow, if that moved.
    pub(crate) fn done_in_place(&mut self, receipt: Receipt) -> Option<ToStore> {
        let key = (receipt.topic_index(), receipt.partition);
        match self.partitions.get_mut(&key) {
            None => Some(ToStore::Offset(receipt)),
            Some(kept) => {
                kept.outstanding.push(receipt.offset);
                self.done(key, receipt.offset)
            }
        }
    }

    /// The kept messages whose `Ack`s were done since the last call: the offsets to store.
    /// Registers `cx` to be woken when more are.
    pub(crate) fn take_done(&mut self, cx: Option<&Context<'_>>, mut store: impl FnMut(ToStore)) {
        if let Some(cx) = cx {
            self.inbox.waker.register(cx.waker());
        }
        let done = std::mem::take(&mut *self.inbox.done.lock().unwrap_or_else(|e| e.into_inner()));
        for (receipt, generation) in done {
            let key = (receipt.topic_index(), receipt.partition);
            if self.partitions.get(&key).is_some_and(|kept| kept.generation == generation) {
                if let Some(to_store) = self.done(key, receipt.offset) {
                    store(to_store);
                }
            }
        }
    }

    fn done(&mut self, key: (usize, i32), offset: i64) -> Option<ToStore> {
        let kept = self.partitions.get_mut(&key)?;
        let (highest, _) = kept.outstanding.done(offset);
        let to_store = match highest {
            Some(highest) => Some(kept.store_through(highest)),
            None => {
                // Done above the first one not done: committed by `take_completed`, as
                // librdkafka commits only an offset that moved.
                kept.completed_unsaved = true;
                self.completed_unsaved = true;
                None
            }
        };
        if kept.outstanding.is_empty() {
            self.partitions.remove(&key);
        }
        to_store
    }

    /// True when some partition has messages done above its first one not done that no
    /// stored offset carries yet.
    pub(crate) fn has_completed_unsaved(&self) -> bool {
        self.completed_unsaved
    }

    /// The partitions whose done messages above the first one not done changed since their
    /// offset was last stored, as offsets to commit with their metadata.
    pub(crate) fn take_completed(&mut self) -> Vec<ToStore> {
        if !std::mem::take(&mut self.completed_unsaved) {
            return Vec::new();
        }
        let mut to_commit = Vec::new();
        for kept in self.partitions.values_mut() {
            if std::mem::take(&mut kept.completed_unsaved) {
                if let Some((next, metadata)) = kept.completed() {
                    to_commit.push(ToStore::WithCompleted { receipt: kept.receipt, next, metadata });
                }
            }
        }
        to_commit
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

    /// The offset a plain store stores (the message's own).
    fn stored(to_store: ToStore) -> i64 {
        match to_store {
            ToStore::Offset(receipt) => receipt.offset,
            other => panic!("a plain offset expected: {other:?}"),
        }
    }

    #[test]
    fn an_offset_is_stored_only_once_every_earlier_kept_message_is_done() {
        let mut acks = Acks::default();
        let slow = acks.keep(receipt(0, 10));
        let fast = acks.keep(receipt(0, 11));
        // Another partition is not held up.
        assert_eq!(acks.done_in_place(receipt(1, 5)).map(stored), Some(5));
        // Done on the stream after the kept ones: waits for them.
        assert!(acks.done_in_place(receipt(0, 12)).is_none());
        fast.done();
        let mut offsets = Vec::new();
        acks.take_done(None, |r| offsets.push(stored(r)));
        assert!(offsets.is_empty(), "10 is not done: nothing may be stored");
        slow.done();
        acks.take_done(None, |r| offsets.push(stored(r)));
        assert_eq!(offsets, [12], "10, 11 and 12 done in a row");
        assert_eq!(acks.pending(), 0);
        assert_eq!(acks.done_in_place(receipt(0, 13)).map(stored), Some(13));
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
        let mut offsets = Vec::new();
        acks.take_done(None, |r| offsets.push(stored(r)));
        assert!(offsets.is_empty(), "the old assignment's ack marked the new 7 done: {offsets:?}");
        again.done();
        acks.take_done(None, |r| offsets.push(stored(r)));
        assert_eq!(offsets, [8]);
    }

    #[test]
    fn messages_done_above_one_not_done_go_in_the_metadata_stored_and_committed() {
        let mut acks = Acks::default();
        let held: Vec<Ack> = (10..15).map(|offset| acks.keep(receipt(0, offset))).collect();
        let mut held = held.into_iter();
        let (first, second) = (held.next().unwrap(), held.next().unwrap());
        // 12 and 14 done while 10 is not: nothing to store, the metadata to commit changed.
        let rest: Vec<Ack> = held.collect();
        let [twelve, thirteen, fourteen] = <[Ack; 3]>::try_from(rest).unwrap();
        twelve.done();
        fourteen.done();
        acks.take_done(None, |r| panic!("nothing may be stored: {r:?}"));
        assert!(acks.has_completed_unsaved());
        let commit = acks.take_completed();
        assert_eq!(
            commit,
            [ToStore::WithCompleted { receipt: receipt(0, 10), next: 10, metadata: "kw1:10:2,1,1,1".into() }]
        );
        assert!(!acks.has_completed_unsaved() && acks.take_completed().is_empty(), "taken once");
        // 10 done: 11 is the first not done now, with 12 and 14 done above it.
        first.done();
        let mut to_store = Vec::new();
        acks.take_done(None, |r| to_store.push(r));
        assert_eq!(
            to_store,
            [ToStore::WithCompleted { receipt: receipt(0, 10), next: 11, metadata: "kw1:11:1,1,1,1".into() }]
        );
        // The rest done: a plain offset, the last one.
        second.done();
        thirteen.done();
        let mut offsets = Vec::new();
        acks.take_done(None, |r| offsets.push(r));
        assert_eq!(offsets.last(), Some(&ToStore::Offset(receipt(0, 14))));
        assert_eq!(acks.pending(), 0);
        assert!(!acks.has_completed_unsaved());
    }
}
