//! Offsets already done above the committed one, kept in the commit's metadata (as Confluent's
//! Parallel Consumer does), so that after a restart or a rebalance they are not handled again.
//!
//! With `ordering = key` or `none`, messages of one partition finish out of order, and the
//! committed offset can only be the first one not done. Every offset stored with done ones
//! above it carries them in the metadata, as runs: `kw1:<base>:<n0>,<d0>,<n1>,<d1>...`, where
//! `base` is the committed offset and the runs alternate, from `base` on, between `n` offsets
//! not done and `d` done. The consumer that gets the partition next (this process after a
//! restart, or another member) reads the metadata with the committed offset and skips the
//! done ones. A broker that does not keep commit metadata (Tansu does not) returns none:
//! those messages are then handled again, as without this.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

const PREFIX: &str = "kw1:";

/// Brokers keep at most `offset.metadata.max.bytes` of metadata (4096 by default); runs past
/// this length are left out (those messages are handled again).
const MAX_LEN: usize = 4000;

/// How often the metadata of messages done above one not done is committed while it
/// changes and the offset does not (librdkafka commits only an offset that moved): as often
/// as librdkafka commits stored offsets (`auto.commit.interval.ms`), and at least once a
/// second.
pub(crate) fn commit_interval(auto_commit_interval: Duration) -> Duration {
    auto_commit_interval.clamp(Duration::from_millis(1), Duration::from_secs(1))
}

/// Encodes the done offsets above `base` (ascending, all above it) as commit metadata.
/// `None` when there are none.
pub(crate) fn encode(base: i64, done: impl Iterator<Item = i64>) -> Option<String> {
    use std::fmt::Write as _;
    let mut text = String::new();
    let mut next = base;
    let mut run: Option<(i64, i64)> = None;
    let push = |text: &mut String, not_done: i64, done: i64| -> bool {
        let before = text.len();
        let _ = write!(text, "{}{not_done},{done}", if text.is_empty() { "" } else { "," });
        if PREFIX.len() + 21 + text.len() > MAX_LEN {
            text.truncate(before);
            return false;
        }
        true
    };
    for offset in done {
        match run {
            Some((start, end)) if offset == end => run = Some((start, end + 1)),
            Some((start, end)) => {
                if !push(&mut text, start - next, end - start) {
                    run = None;
                    break;
                }
                next = end;
                run = Some((offset, offset + 1));
            }
            None => run = Some((offset, offset + 1)),
        }
    }
    if let Some((start, end)) = run {
        push(&mut text, start - next, end - start);
    }
    (!text.is_empty()).then(|| format!("{PREFIX}{base}:{text}"))
}

/// The done offsets read back from a commit's metadata, as ranges `[start, end)`, ascending.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Completed {
    ranges: Vec<(i64, i64)>,
}

impl Completed {
    /// Reads `metadata` committed with offset `committed`. `None` when it holds nothing of
    /// ours, or was written for another offset (then it no longer says anything).
    pub(crate) fn parse(metadata: &str, committed: i64) -> Option<Self> {
        let rest = metadata.strip_prefix(PREFIX)?;
        let (base, runs) = rest.split_once(':')?;
        if base.parse::<i64>().ok()? != committed {
            return None;
        }
        let mut ranges = Vec::new();
        let mut next = committed;
        let mut numbers = runs.split(',').map(|n| n.parse::<i64>().ok().filter(|n| *n >= 0));
        while let Some(not_done) = numbers.next() {
            let done = numbers.next()??;
            let start = next.checked_add(not_done?)?;
            let end = start.checked_add(done)?;
            if done > 0 {
                ranges.push((start, end));
            }
            next = end;
        }
        (!ranges.is_empty()).then_some(Self { ranges })
    }

    /// True when `offset` was done. Offsets are asked in ascending order: ranges below it are
    /// dropped.
    pub(crate) fn contains(&mut self, offset: i64) -> bool {
        while let Some(&(_, end)) = self.ranges.first() {
            if offset < end {
                break;
            }
            self.ranges.remove(0);
        }
        self.ranges.first().is_some_and(|&(start, _)| offset >= start)
    }

    /// Nothing left to skip.
    pub(crate) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

/// The done offsets of a consumer's assigned partitions, read at assignment, consulted for
/// each message handed out.
#[derive(Default)]
pub(crate) struct CompletedOffsets {
    /// Set for workers whose messages can finish out of order: only they read and write it.
    enabled: AtomicBool,
    /// Set while `partitions` holds anything: the one thing read per message.
    any: AtomicBool,
    /// By topic and partition: a consumer's few assigned partitions, looked up without
    /// allocating.
    partitions: Mutex<Vec<(String, i32, Completed)>>,
}

impl CompletedOffsets {
    pub(crate) fn enable(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// What a partition just assigned had done above its committed offset.
    pub(crate) fn assigned(&self, topic: &str, partition: i32, completed: Option<Completed>) {
        let mut partitions = self.lock();
        partitions.retain(|(t, p, _)| !(t == topic && *p == partition));
        if let Some(completed) = completed {
            partitions.push((topic.to_owned(), partition, completed));
        }
        self.any.store(!partitions.is_empty(), Ordering::Release);
    }

    /// A partition taken away: what it had done is its next owner's to read.
    pub(crate) fn revoked(&self, topic: &str, partition: i32) {
        self.assigned(topic, partition, None);
    }

    /// True while some partition has done offsets left to skip.
    #[inline]
    pub(crate) fn any(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    /// True when the message at `offset` was done before the partition came to this
    /// consumer. (Callers check [`any`](Self::any) first, the one thing read per message.)
    pub(crate) fn was_done(&self, topic: &str, partition: i32, offset: i64) -> bool {
        let mut partitions = self.lock();
        let Some(index) = partitions.iter().position(|(t, p, _)| t == topic && *p == partition) else {
            return false;
        };
        let done = partitions[index].2.contains(offset);
        if partitions[index].2.is_empty() {
            partitions.swap_remove(index);
            self.any.store(!partitions.is_empty(), Ordering::Release);
        }
        done
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, i32, Completed)>> {
        self.partitions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_offsets_round_trip_through_the_metadata() {
        let done = [12, 13, 14, 20, 22, 23];
        let metadata = encode(10, done.iter().copied()).unwrap();
        assert_eq!(metadata, "kw1:10:2,3,5,1,1,2");
        let mut completed = Completed::parse(&metadata, 10).unwrap();
        let skipped: Vec<i64> = (10..30).filter(|o| completed.contains(*o)).collect();
        assert_eq!(skipped, done);
        assert!(completed.is_empty());
    }

    #[test]
    fn metadata_for_another_offset_or_not_ours_says_nothing() {
        let metadata = encode(10, [12].into_iter()).unwrap();
        assert_eq!(Completed::parse(&metadata, 11), None, "committed since without it");
        assert_eq!(Completed::parse("", 10), None);
        assert_eq!(Completed::parse("someone else's", 10), None);
        assert_eq!(Completed::parse("kw1:10:2,x", 10), None);
        assert_eq!(Completed::parse("kw1:10:2", 10), None);
        assert_eq!(encode(10, std::iter::empty()), None);
    }

    #[test]
    fn long_metadata_keeps_the_runs_that_fit() {
        // Every other offset done: 10,000 runs do not fit.
        let metadata = encode(0, (0..10_000).map(|n| 2 * n + 1)).unwrap();
        assert!(metadata.len() <= MAX_LEN, "{}", metadata.len());
        let mut completed = Completed::parse(&metadata, 0).unwrap();
        assert!(completed.contains(1) && !completed.contains(2) && completed.contains(3));
    }
}
