//! Offsets: where a handed-out message sits ([`Receipt`]), and the store that marks it done,
//! without allocating. librdkafka commits what is stored (in the background, on revoke and
//! at close); at-least-once follows from storing a message's offset only once it is done.

use std::collections::VecDeque;
use std::ffi::CString;

use rdkafka::consumer::Consumer as _;
use rdkafka::error::{KafkaResult, RDKafkaErrorCode};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use rdkafka_sys as rdsys;

use super::client::SharedConsumer;
use crate::ffi::topic_name;

/// Where a handed-out message sits, so its offset can be stored once it is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Receipt {
    topic: usize,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
}

impl Receipt {
    /// The topic's index in the stream's store: small and dense, one per topic read.
    pub(crate) fn topic_index(&self) -> usize {
        self.topic
    }

    /// The same partition at another offset.
    pub(crate) fn at_offset(&self, offset: i64) -> Receipt {
        Receipt { offset, ..*self }
    }

    #[cfg(test)]
    pub(crate) fn for_test(topic: usize, partition: i32, offset: i64) -> Receipt {
        Receipt { topic, partition, offset }
    }

    /// True when both messages are of one partition of one topic.
    pub(crate) fn same_partition(&self, other: &Receipt) -> bool {
        self.topic == other.topic && self.partition == other.partition
    }
}

/// What done messages let the stream store.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ToStore {
    /// This message and every earlier one of its partition are done.
    Offset(Receipt),
    /// Every message of the receipt's partition before `next` is done, and the ones
    /// `metadata` names above it.
    WithCompleted { receipt: Receipt, next: i64, metadata: String },
}

/// One partition's handed-out messages not yet stored, in offset order, each with whether it
/// is done: an offset may be stored once it and every earlier one are done.
#[derive(Default)]
pub(crate) struct Outstanding(VecDeque<(i64, bool)>);

impl Outstanding {
    /// A message handed out after every one tracked so far.
    #[inline]
    pub(crate) fn push(&mut self, offset: i64) {
        self.0.push_back((offset, false));
    }

    /// Marks `offset` done. Returns the highest offset now done with every earlier one, if
    /// that moved (to be stored), and how many messages that released.
    #[inline]
    pub(crate) fn done(&mut self, offset: i64) -> (Option<i64>, usize) {
        if let Ok(index) = self.0.binary_search_by_key(&offset, |(offset, _)| *offset) {
            self.0[index].1 = true;
        }
        let (mut highest, mut released) = (None, 0);
        while let Some(&(offset, true)) = self.0.front() {
            highest = Some(offset);
            self.0.pop_front();
            released += 1;
        }
        (highest, released)
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The first offset not done and, when any, the done ones above it (ascending): what a
    /// commit's metadata carries (see `completed`).
    pub(crate) fn done_above(&self) -> Option<(i64, impl Iterator<Item = i64> + '_)> {
        let &(first, _) = self.0.front()?;
        self.0.iter().any(|(_, done)| *done).then(|| (first, self.0.iter().filter(|(_, d)| *d).map(|(o, _)| *o)))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Where the worker stands, for error messages.
pub(crate) struct Position {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "topic {}, partition {}, offset {}", self.topic, self.partition, self.offset)
    }
}

/// Stores offsets through one librdkafka topic handle per topic, reused.
pub(crate) struct OffsetStore {
    // Field order: the handles go before the consumer they belong to.
    topics: Vec<TopicHandle>,
    /// The partitions with a message kept by [`store_later`](Self::store_later), as
    /// `(topic index, partition)`.
    later: Vec<(usize, i32)>,
    /// The coarse clock when the first of them was kept.
    later_since: u64,
    consumer: SharedConsumer,
}

struct TopicHandle {
    name: Box<str>,
    native: *mut rdsys::rd_kafka_topic_t,
    /// By partition: the offset of its last message done and not stored yet, or [`NONE`].
    later: Vec<i64>,
}

/// No message kept to store.
const NONE: i64 = -1;

// SAFETY: librdkafka topic handles are thread-safe; the store only creates, uses and destroys
// its own handles.
unsafe impl Send for OffsetStore {}
unsafe impl Sync for OffsetStore {}

impl OffsetStore {
    pub(crate) fn new(consumer: SharedConsumer) -> Self {
        super::coarse_clock::start();
        Self { topics: Vec::new(), later: Vec::new(), later_since: 0, consumer }
    }

    /// The receipt for a message about to be handed to a worker. librdkafka hands out one
    /// object per topic, the same one our handle holds, so the topic is found by address;
    /// the name is compared only if that ever misses. (Holding the handle keeps the object,
    /// so its address cannot be reused by another topic.)
    pub(crate) fn receipt(&mut self, message: &rdsys::rd_kafka_message_t) -> Receipt {
        let object = message.rkt;
        let index = match self.topics.iter().position(|handle| handle.native == object) {
            Some(index) => index,
            None => {
                // SAFETY: a consumed message's topic handle lives as long as the message.
                let name = unsafe { topic_name(object) };
                match self.topics.iter().position(|handle| &*handle.name == name) {
                    Some(index) => index,
                    None => {
                        self.topics.push(TopicHandle::new(&self.consumer, name));
                        self.topics.len() - 1
                    }
                }
            }
        };
        Receipt { topic: index, partition: message.partition, offset: message.offset }
    }

    pub(crate) fn topic(&self, receipt: &Receipt) -> &str {
        self.topic_at(receipt.topic)
    }

    /// The topic of [`Receipt::topic_index`] `index`.
    pub(crate) fn topic_at(&self, index: usize) -> &str {
        &self.topics[index].name
    }

    pub(crate) fn position(&self, receipt: &Receipt) -> Position {
        Position {
            topic: self.topics[receipt.topic].name.to_string(),
            partition: receipt.partition,
            offset: receipt.offset,
        }
    }

    /// Marks the message as done: librdkafka then commits its successor's offset.
    pub(crate) fn store(&self, receipt: &Receipt) -> Result<(), RDKafkaErrorCode> {
        store_now(&self.topics[receipt.topic], receipt.partition, receipt.offset)
    }

    /// Marks the message as done, to be stored by the next [`flush`](Self::flush): a worker
    /// that is handed one message after the other stores each partition's last one per
    /// batch, or per tick of the coarse clock, not every one (storing takes locks in
    /// librdkafka). Only for a message whose earlier messages are all done, and only until
    /// its partition is revoked: flush before the revoke's commit, and before storing any
    /// other way.
    #[inline]
    pub(crate) fn store_later(&mut self, receipt: &Receipt) {
        let handle = &mut self.topics[receipt.topic];
        // librdkafka hands out no message of a negative partition.
        let Ok(index) = usize::try_from(receipt.partition) else { return };
        if index >= handle.later.len() {
            handle.later.resize(index + 1, NONE);
        }
        let kept = &mut handle.later[index];
        if *kept == NONE {
            if self.later.is_empty() {
                self.later_since = super::coarse_clock::now();
            }
            self.later.push((receipt.topic, receipt.partition));
        }
        *kept = receipt.offset;
    }

    /// True when [`store_later`](Self::store_later) kept something to store.
    #[inline]
    pub(crate) fn has_later(&self) -> bool {
        !self.later.is_empty()
    }

    /// True when [`store_later`](Self::store_later) kept something at least a tick of the
    /// coarse clock ago (100-200 ms): time to flush, so that a slow worker's offsets are not
    /// held back until its buffer runs out.
    #[inline]
    pub(crate) fn later_is_due(&self) -> bool {
        self.has_later() && self.later_since != super::coarse_clock::now()
    }

    /// Stores what [`store_later`](Self::store_later) kept; `failed` gets each one librdkafka
    /// refused (its partition was revoked).
    pub(crate) fn flush(&mut self, mut failed: impl FnMut(Position, RDKafkaErrorCode)) {
        for (topic, partition) in self.later.drain(..) {
            let handle = &mut self.topics[topic];
            let Some(kept) = usize::try_from(partition).ok().and_then(|index| handle.later.get_mut(index)) else {
                continue;
            };
            let offset = std::mem::replace(kept, NONE);
            if let Err(code) = store_now(handle, partition, offset) {
                failed(Position { topic: handle.name.to_string(), partition, offset }, code);
            }
        }
    }
}

/// Stores the offset of a message done.
fn store_now(handle: &TopicHandle, partition: i32, offset: i64) -> Result<(), RDKafkaErrorCode> {
    if handle.native.is_null() {
        return Err(RDKafkaErrorCode::UnknownTopic);
    }
    // SAFETY: `native` is a live handle owned by the store. `rd_kafka_offset_store` adds the
    // 1 itself: it takes the offset of the message that is done.
    let code = unsafe { rdsys::rd_kafka_offset_store(handle.native, partition, offset) };
    if code == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
        Ok(())
    } else {
        Err(code.into())
    }
}

impl OffsetStore {
    /// Stores `next` (the first offset of the receipt's partition not done) as the offset to
    /// commit, with `metadata` (the done offsets above it), to be committed with it.
    pub(crate) fn store_with_metadata(&self, receipt: &Receipt, next: i64, metadata: &str) -> KafkaResult<()> {
        let mut list = TopicPartitionList::with_capacity(1);
        let mut element = list.add_partition(self.topic(receipt), receipt.partition);
        element.set_offset(Offset::Offset(next))?;
        element.set_metadata(metadata);
        // `rd_kafka_offsets_store` takes the offset as it is (no + 1).
        self.consumer.store_offsets(&list)?;
        match list.elements().first().map(|e| e.error()) {
            Some(Err(err)) => Err(err),
            _ => Ok(()),
        }
    }
}

impl TopicHandle {
    fn new(consumer: &SharedConsumer, name: &str) -> Self {
        // Topic names come from librdkafka, which never hands out one with a NUL byte.
        let c_name = CString::new(name).unwrap_or_default();
        // SAFETY: the client pointer is live for the duration of the call; the returned
        // handle holds its own reference and is destroyed in `Drop`, before the store's
        // consumer handle.
        let native =
            unsafe { rdsys::rd_kafka_topic_new(consumer.client().native_ptr(), c_name.as_ptr(), std::ptr::null_mut()) };
        Self { name: name.into(), native, later: Vec::new() }
    }
}

impl Drop for TopicHandle {
    fn drop(&mut self) {
        if !self.native.is_null() {
            // SAFETY: created by `rd_kafka_topic_new` and destroyed once.
            unsafe { rdsys::rd_kafka_topic_destroy(self.native) }
        }
    }
}
