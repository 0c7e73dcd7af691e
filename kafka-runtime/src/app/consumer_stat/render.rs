//! How `consumer-stat` shows a reading: the lag of each partition and each worker's total, as
//! a table or as JSON, with the rate at which each lag shrank since the previous reading.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::json;

use super::super::listing::table;
use super::read::{GroupOffsets, PartitionOffsets};

/// Shown where the broker's log end is below the group's commit, instead of a negative lag.
pub(super) const END_BELOW_COMMIT: &str = "log end below commit: the broker's reported end is too low";
const COMMIT_BELOW_START: &str = "commit below log start: the messages in between were deleted";

/// One reading of every worker asked for, and when it was taken.
pub(super) struct Snapshot {
    pub(super) at: Instant,
    pub(super) workers: Vec<WorkerOffsets>,
}

/// One worker's consumers (one per group), as read.
pub(super) struct WorkerOffsets {
    pub(super) worker: String,
    /// Each group with its reading.
    pub(super) groups: Vec<(String, GroupOffsets)>,
}

/// A partition's lag: its log end less the group's committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lag {
    Known(i64),
    /// The group never committed on this partition.
    NoCommit,
    /// The broker's log end is below the commit: no meaningful number.
    EndBelowCommit,
}

impl PartitionOffsets {
    pub(super) fn lag(&self) -> Lag {
        match self.committed {
            None => Lag::NoCommit,
            Some(committed) if committed > self.log_end => Lag::EndBelowCommit,
            Some(committed) => Lag::Known(self.log_end - committed),
        }
    }

    fn note(&self) -> Option<&'static str> {
        match (self.lag(), self.committed) {
            (Lag::EndBelowCommit, _) => Some(END_BELOW_COMMIT),
            (Lag::Known(_), Some(committed)) if committed < self.log_start => Some(COMMIT_BELOW_START),
            _ => None,
        }
    }
}

/// A worker's totals: the sum of the known lags, and how many partitions it leaves out.
#[derive(Default)]
struct Totals {
    lag: i64,
    without_commit: usize,
    end_below_commit: usize,
}

impl WorkerOffsets {
    fn partitions(&self) -> impl Iterator<Item = (&str, &PartitionOffsets)> {
        self.groups.iter().flat_map(|(group, offsets)| offsets.partitions.iter().map(move |p| (group.as_str(), p)))
    }

    fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        for (_, partition) in self.partitions() {
            match partition.lag() {
                Lag::Known(lag) => totals.lag += lag,
                Lag::NoCommit => totals.without_commit += 1,
                Lag::EndBelowCommit => totals.end_below_commit += 1,
            }
        }
        totals
    }
}

impl Totals {
    fn note(&self) -> String {
        let count = |n: usize| if n == 1 { "1 partition".to_owned() } else { format!("{n} partitions") };
        let mut parts = Vec::new();
        if self.without_commit > 0 {
            parts.push(format!("{} without a commit", count(self.without_commit)));
        }
        if self.end_below_commit > 0 {
            parts.push(format!("{} with the log end below the commit", count(self.end_below_commit)));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("not counted: {}", parts.join(", "))
        }
    }
}

/// How fast lags shrank since the previous reading, in messages per second (negative: grew).
struct Rates<'a> {
    previous: Option<&'a Snapshot>,
    seconds: f64,
    partitions: HashMap<(&'a str, &'a str, &'a str, i32), i64>,
}

impl<'a> Rates<'a> {
    fn new(current: &Snapshot, previous: Option<&'a Snapshot>) -> Self {
        let mut partitions = HashMap::new();
        for worker in previous.iter().flat_map(|p| &p.workers) {
            for (group, partition) in worker.partitions() {
                if let Lag::Known(lag) = partition.lag() {
                    let key = (worker.worker.as_str(), group, partition.topic.as_str(), partition.partition);
                    partitions.insert(key, lag);
                }
            }
        }
        let seconds = previous.map(|p| current.at.duration_since(p.at).as_secs_f64()).unwrap_or_default();
        Self { previous, seconds, partitions }
    }

    fn shrink(&self, before: Option<i64>, now: Lag) -> Option<f64> {
        match (self.previous, before, now) {
            (Some(_), Some(before), Lag::Known(now)) if self.seconds > 0.0 => {
                Some((before - now) as f64 / self.seconds)
            }
            _ => None,
        }
    }

    fn partition(&self, worker: &str, group: &str, partition: &PartitionOffsets) -> Option<f64> {
        let key = (worker, group, partition.topic.as_str(), partition.partition);
        self.shrink(self.partitions.get(&key).copied(), partition.lag())
    }

    /// The sum of the worker's partition rates: a partition whose lag became known meanwhile
    /// (its first commit) would otherwise show as a jump.
    fn total(&self, worker: &WorkerOffsets) -> Option<f64> {
        let rates: Vec<f64> = worker
            .partitions()
            .filter_map(|(group, partition)| self.partition(&worker.worker, group, partition))
            .collect();
        (!rates.is_empty()).then(|| rates.iter().sum())
    }
}

/// The table: one row per partition, one per topic the brokers do not know, and each
/// worker's total. With `watching`, a column for the rate at which each lag shrinks.
pub(super) fn table_of(current: &Snapshot, previous: Option<&Snapshot>, watching: bool) -> String {
    let rates = Rates::new(current, previous);
    let rate = |shrink: Option<f64>| shrink.map_or("-".to_owned(), |r| format!("{r:.1}"));
    let mut header =
        vec!["WORKER", "GROUP", "TOPIC", "PARTITION", "COMMITTED", "LOG-START", "LOG-END", "LAG", "SHRINK/S", "NOTE"];
    if !watching {
        header.remove(8);
    }
    let mut rows = Vec::new();
    let mut push = |mut row: Vec<String>, shrink: Option<f64>, note: String| {
        if watching {
            row.push(rate(shrink));
        }
        row.push(note);
        rows.push(row);
    };
    for worker in &current.workers {
        let name = worker.worker.clone();
        for (group, offsets) in &worker.groups {
            for partition in &offsets.partitions {
                let (committed, lag) = match partition.lag() {
                    Lag::Known(lag) => (partition.committed.unwrap_or_default().to_string(), lag.to_string()),
                    Lag::NoCommit => ("no commit".to_owned(), "-".to_owned()),
                    Lag::EndBelowCommit => (partition.committed.unwrap_or_default().to_string(), "?".to_owned()),
                };
                let row = vec![
                    name.clone(),
                    group.clone(),
                    partition.topic.clone(),
                    partition.partition.to_string(),
                    committed,
                    partition.log_start.to_string(),
                    partition.log_end.to_string(),
                    lag,
                ];
                let note = partition.note().unwrap_or_default().to_owned();
                push(row, rates.partition(&worker.worker, group, partition), note);
            }
            for topic in &offsets.missing_topics {
                let mut row = vec![name.clone(), group.clone(), topic.clone()];
                row.extend(std::iter::repeat_n("-".to_owned(), 5));
                push(row, None, "no such topic".to_owned());
            }
        }
        let totals = worker.totals();
        let mut row = vec![name, "(total)".to_owned()];
        row.extend(std::iter::repeat_n(String::new(), 5));
        row.push(totals.lag.to_string());
        push(row, rates.total(worker), totals.note());
    }
    table(&header, &rows)
}

/// The JSON document: `{"workers": [...]}`, every number as read, `null` where there is none.
pub(super) fn json_of(current: &Snapshot, previous: Option<&Snapshot>) -> serde_json::Value {
    let rates = Rates::new(current, previous);
    let workers: Vec<serde_json::Value> = current
        .workers
        .iter()
        .map(|worker| {
            let partitions: Vec<serde_json::Value> = worker
                .partitions()
                .map(|(group, partition)| {
                    let (lag, status) = match partition.lag() {
                        Lag::Known(lag) => (Some(lag), "committed"),
                        Lag::NoCommit => (None, "no_commit"),
                        Lag::EndBelowCommit => (None, "log_end_below_commit"),
                    };
                    json!({
                        "group": group,
                        "topic": partition.topic,
                        "partition": partition.partition,
                        "committed": partition.committed,
                        "log_start": partition.log_start,
                        "log_end": partition.log_end,
                        "lag": lag,
                        "status": status,
                        "note": partition.note(),
                        "lag_shrink_per_s": rates.partition(&worker.worker, group, partition),
                    })
                })
                .collect();
            let missing: Vec<serde_json::Value> = worker
                .groups
                .iter()
                .flat_map(|(group, offsets)| {
                    offsets.missing_topics.iter().map(move |t| json!({"group": group, "topic": t}))
                })
                .collect();
            let totals = worker.totals();
            json!({
                "worker": worker.worker,
                "lag": totals.lag,
                "partitions_without_commit": totals.without_commit,
                "partitions_with_log_end_below_commit": totals.end_below_commit,
                "lag_shrink_per_s": rates.total(worker),
                "partitions": partitions,
                "missing_topics": missing,
            })
        })
        .collect();
    json!({ "workers": workers })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn partition(topic: &str, partition: i32, committed: Option<i64>, log_end: i64) -> PartitionOffsets {
        PartitionOffsets { topic: topic.into(), partition, committed, log_start: 0, log_end }
    }

    fn snapshot(at: Instant, partitions: Vec<PartitionOffsets>) -> Snapshot {
        let offsets = GroupOffsets { partitions, missing_topics: vec!["gone".into()] };
        Snapshot { at, workers: vec![WorkerOffsets { worker: "es".into(), groups: vec![("g".into(), offsets)] }] }
    }

    /// Each line, its cells one space apart.
    fn words(table: String) -> Vec<String> {
        table.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect()
    }

    #[test]
    fn no_commit_and_an_end_below_the_commit_have_no_lag_number() {
        let now = Instant::now();
        let current = snapshot(
            now,
            vec![partition("t", 0, Some(40), 100), partition("t", 1, None, 50), partition("t", 2, Some(9), 7)],
        );
        let lines = words(table_of(&current, None, false));
        assert_eq!(lines[1], "es g t 0 40 0 100 60");
        assert_eq!(lines[2], "es g t 1 no commit 0 50 -");
        assert_eq!(lines[3], format!("es g t 2 9 0 7 ? {END_BELOW_COMMIT}"));
        assert_eq!(lines[4], "es g gone - - - - - no such topic");
        assert_eq!(
            lines[5],
            "es (total) 60 not counted: 1 partition without a commit, 1 partition with the log end below the commit"
        );
        let json = json_of(&current, None);
        let worker = &json["workers"][0];
        assert_eq!(worker["lag"], 60);
        assert_eq!(worker["partitions"][1]["committed"], serde_json::Value::Null);
        assert_eq!(worker["partitions"][1]["lag"], serde_json::Value::Null);
        assert_eq!(worker["partitions"][1]["status"], "no_commit");
        assert_eq!(worker["partitions"][2]["status"], "log_end_below_commit");
        assert_eq!(worker["missing_topics"][0]["topic"], "gone");
    }

    #[test]
    fn the_rate_is_how_fast_each_lag_shrank_since_the_previous_reading() {
        let start = Instant::now();
        let before = snapshot(start, vec![partition("t", 0, Some(0), 100), partition("t", 1, None, 10)]);
        let after = snapshot(
            start + Duration::from_secs(2),
            vec![partition("t", 0, Some(50), 110), partition("t", 1, Some(4), 10)],
        );
        let lines = words(table_of(&after, Some(&before), true));
        assert!(lines[0].contains(" LAG SHRINK/S NOTE"), "{}", lines[0]);
        assert_eq!(lines[1], "es g t 0 50 0 110 60 20.0");
        assert_eq!(lines[2], "es g t 1 4 0 10 6 -", "no lag before: no rate");
        // The total's rate leaves out the partition whose first commit came meanwhile.
        assert_eq!(lines[4], "es (total) 66 20.0");
        assert_eq!(json_of(&after, Some(&before))["workers"][0]["lag_shrink_per_s"], 20.0);
        assert_eq!(words(table_of(&before, None, true))[1], "es g t 0 0 0 100 100 -", "no previous reading");
    }
}
