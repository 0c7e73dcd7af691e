//! Delivery across process deaths: at-least-once after SIGKILL, and no duplicate after a
//! SIGTERM drain.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use kafka_integration_tests::*;

const TOTAL: u64 = 600;

/// The payloads of the `handled ...` lines a run printed.
fn handled_ids(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("handled "))
        .map(|rest| rest.rsplit(' ').next().unwrap().to_owned())
        .collect()
}

/// Reads `process`'s output until it and `before` together handled every id of `expected`.
async fn wait_until_all_seen<'a>(
    process: &mut Process,
    before: impl IntoIterator<Item = &'a String> + Clone,
    expected: &BTreeSet<String>,
) {
    loop {
        let seen: BTreeSet<String> = before.clone().into_iter().cloned().chain(handled_ids(&process.lines)).collect();
        if seen == *expected {
            return;
        }
        let have = process.lines.len();
        process.wait_lines(have + 1, |_| true).await;
    }
}

async fn setup(name: &str) -> (String, Vec<String>) {
    let topic = unique(name);
    create_topics(&[&topic], 3).await;
    produce(&topic, documents(1, TOTAL).map(|r| Record::new(r.payload.replace([' ', '"', '{', '}', ':'], "")))).await;
    let config = write_config(serde_json::json!({
        "handler_delay_ms": 2,
        "kafka": {
            "consumer_connection_settings": fast_settings(),
            "consumer": {"workers": [{"name": "it_slow", "group": unique("g"), "topics": [topic]}]}
        }
    }));
    let args = vec![
        "-c".to_owned(),
        config.display().to_string(),
        "start-consumer".into(),
        "--consumer-worker".into(),
        "it_slow".into(),
    ];
    (topic, args)
}

fn expected() -> BTreeSet<String> {
    (1..=TOTAL).map(|id| format!("id{id}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_message_is_handled_at_least_once_across_sigkill() {
    let (_topic, args) = setup("crash").await;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let mut first = Process::spawn(Binary::TestWorkers, &args);
    first.wait_lines(100, |l| l.starts_with("handled ")).await;
    first.signal("KILL");
    assert_eq!(first.wait_exit().await, None, "killed by a signal");
    let first_ids = handled_ids(&first.lines);
    assert!(first_ids.len() < TOTAL as usize, "the crash must come mid-stream");

    let mut second = Process::spawn(Binary::TestWorkers, &args);
    let missing: BTreeSet<String> = expected().difference(&first_ids.iter().cloned().collect()).cloned().collect();
    second.wait_lines(missing.len(), |l| l.starts_with("handled ")).await;
    // Keep reading until every message missing from the first run has come.
    loop {
        let seen: BTreeSet<String> = handled_ids(&second.lines).into_iter().collect();
        if missing.is_subset(&seen) {
            break;
        }
        let have = second.lines.len();
        second.wait_lines(have + 1, |_| true).await;
    }
    second.signal("TERM");
    assert_eq!(second.wait_exit().await, Some(0));
    let all: BTreeSet<String> = first_ids.into_iter().chain(handled_ids(&second.lines)).collect();
    assert_eq!(all, expected(), "a message was lost");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_and_commits_so_a_restart_repeats_nothing() {
    let (_topic, args) = setup("drain").await;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let mut first = Process::spawn(Binary::TestWorkers, &args);
    first.wait_lines(100, |l| l.starts_with("handled ")).await;
    first.signal("TERM");
    assert_eq!(first.wait_exit().await, Some(0), "a clean stop exits 0");
    let first_ids = handled_ids(&first.lines);
    assert!(first_ids.len() < TOTAL as usize, "the stop must come mid-stream");

    let mut second = Process::spawn(Binary::TestWorkers, &args);
    let rest = TOTAL as usize - first_ids.len();
    second.wait_lines(rest, |l| l.starts_with("handled ")).await;
    second.signal("TERM");
    assert_eq!(second.wait_exit().await, Some(0));
    let second_ids = handled_ids(&second.lines);

    let first_set: BTreeSet<String> = first_ids.iter().cloned().collect();
    let twice: Vec<&String> = second_ids.iter().filter(|id| first_set.contains(*id)).collect();
    assert!(twice.is_empty(), "handled again after a clean stop: {twice:?}");
    assert_eq!(first_ids.len() + second_ids.len(), TOTAL as usize);
    let all: BTreeSet<String> = first_ids.into_iter().chain(second_ids).collect();
    assert_eq!(all, expected());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_survivor_of_two_members_takes_every_partition_when_the_other_is_killed() {
    const MESSAGES: u64 = 3000;
    let topic = unique("survivor");
    create_topics(&[&topic], 4).await;
    produce(&topic, (1..=MESSAGES).map(|id| Record::new(format!("id{id}")))).await;
    let config = write_config(serde_json::json!({
        "handler_delay_ms": 2,
        "kafka": {
            "consumer_connection_settings": fast_settings(),
            "consumer": {"workers": [{"name": "it_slow", "group": unique("g"), "topics": [topic]}]}
        }
    }));
    let args = ["-c", config.to_str().unwrap(), "start-consumer", "--consumer-worker", "it_slow"];

    let mut first = Process::spawn(Binary::TestWorkers, &args);
    first.wait_lines(50, |l| l.starts_with("handled ")).await;
    let mut second = Process::spawn(Binary::TestWorkers, &args);
    // The first member may finish the backlog before the group rebalances, so new messages
    // keep arriving on every partition until the second member has handled one: from then on
    // both members hold partitions.
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = tokio::spawn({
        let (topic, stop) = (topic.clone(), stop.clone());
        async move {
            let mut sent = 0;
            while !stop.load(Ordering::Relaxed) {
                let round = (0..4).map(|partition| {
                    sent += 1;
                    Record { partition: Some(partition), ..Record::new(format!("late{sent}")) }
                });
                produce(&topic, round.collect::<Vec<_>>()).await;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            sent
        }
    });
    second.wait_lines(1, |l| l.starts_with("handled ")).await;
    stop.store(true, Ordering::Relaxed);
    let late = trickle.await.expect("trickle task");
    first.signal("KILL");
    assert_eq!(first.wait_exit().await, None, "killed by a signal");

    let expected: BTreeSet<String> =
        (1..=MESSAGES).map(|id| format!("id{id}")).chain((1..=late).map(|n| format!("late{n}"))).collect();
    let first_ids: BTreeSet<String> = handled_ids(&first.lines).into_iter().collect();
    wait_until_all_seen(&mut second, &first_ids, &expected).await;
    second.signal("TERM");
    assert_eq!(second.wait_exit().await, Some(0));
    let total = first_ids.len() + handled_ids(&second.lines).len();
    let messages = expected.len();
    println!("survivor: {total} handled for {messages} messages, {} duplicates", total - messages);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_slow_batch_finishes_and_commits_it_so_a_restart_repeats_nothing() {
    const MESSAGES: u64 = 300;
    let topic = unique("slow-batch");
    create_topics(&[&topic], 2).await;
    produce(&topic, (1..=MESSAGES).map(|id| Record::new(format!("id{id}")))).await;
    let group = unique("g");
    let config = |delay_ms: u64| {
        write_config(serde_json::json!({
            "handler_delay_ms": delay_ms,
            "kafka": {
                "consumer_connection_settings": fast_settings(),
                "consumer": {"workers": [{"name": "it_slow_batch", "group": group, "topics": [topic]}]}
            }
        }))
    };
    let run = |config: &std::path::Path| {
        let args = ["-c", config.to_str().unwrap(), "start-consumer", "--consumer-worker", "it_slow_batch"];
        Process::spawn(Binary::TestWorkers, &args)
    };

    // The handler prints `batch <size>`, then takes 3 s: the signal lands in the middle.
    let mut first = run(&config(3000));
    let started = first.wait_lines(1, |l| l.starts_with("batch ")).await;
    let size: usize = started[0].strip_prefix("batch ").unwrap().parse().unwrap();
    first.signal("TERM");
    assert_eq!(first.wait_exit().await, Some(0), "a clean stop");
    let first_ids = handled_ids(&first.lines);
    assert_eq!(first_ids.len(), size, "the batch in hand was finished: {:?}", first.lines);

    let mut second = run(&config(0));
    let expected: BTreeSet<String> = (1..=MESSAGES).map(|id| format!("id{id}")).collect();
    wait_until_all_seen(&mut second, &first_ids, &expected).await;
    second.signal("TERM");
    assert_eq!(second.wait_exit().await, Some(0));
    let second_ids = handled_ids(&second.lines);
    let twice: Vec<&String> = second_ids.iter().filter(|id| first_ids.contains(id)).collect();
    assert!(twice.is_empty(), "handled again after the batch was committed: {twice:?}");
    assert_eq!(first_ids.len() + second_ids.len(), MESSAGES as usize);
}

/// A slow worker's offsets are committed as it goes, not only once it has worked through
/// everything it fetched (the sequential path keeps the offsets of done messages and stores
/// them before it refills, serves an event such as a commit's result, waits, or once the
/// first of them has waited 100 ms).
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_worker_commits_as_it_goes_not_once_its_fetched_messages_run_out() {
    const MESSAGES: usize = 40;
    let topic = unique("slow-commits");
    create_topics(&[&topic], 1).await;
    // One producer, so that they land in few record batches and come in few fetches.
    produce(&topic, (1..=MESSAGES).map(|id| Record::new(format!("id{id}")))).await;
    let group = unique("g");
    let mut settings = fast_settings();
    settings["auto.commit.interval.ms"] = 100.into();
    let config = write_config(serde_json::json!({
        "handler_delay_ms": 250,
        "kafka": {
            "consumer_connection_settings": settings,
            "consumer": {"workers": [{"name": "it_slow", "group": group, "topics": [topic]}]}
        }
    }));
    let args = ["-c", config.to_str().unwrap(), "start-consumer", "--consumer-worker", "it_slow"];
    let mut worker = Process::spawn(Binary::TestWorkers, &args);
    worker.wait_lines(3, |l| l.starts_with("handled ")).await;
    // Read the commit until it covers 3 messages; by then, most are still to be handled.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let committed = committed(&group, &topic, 1).await[0].unwrap_or(0);
        if committed >= 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the commit stayed at {committed}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Stopped at once: what it handled in all is what it had handled then, and the one in hand.
    worker.signal("TERM");
    assert_eq!(worker.wait_exit().await, Some(0));
    let handled = handled_ids(&worker.lines).len();
    assert!(handled < MESSAGES / 2, "committed only after {handled} of {MESSAGES} were handled");
}
