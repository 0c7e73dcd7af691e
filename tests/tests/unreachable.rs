//! A broker address nothing listens on: one clear line naming it, then at most one line every
//! 10 s, one line when a broker starts there, and with `--give-up-after-ms` an exit 1 that
//! names it.

use std::time::{Duration, Instant};

use kafka_integration_tests::*;

const NOWHERE: &str = "127.0.0.1:1";

fn worker_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--brokers", NOWHERE, "--drain-timeout-ms", "2000"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["start-consumer", "--consumer-worker", "it_slow", "--topics", "nowhere"]);
    args
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_broker_is_told_once_then_every_10_s() {
    let mut process = Process::spawn_with_logs(Binary::TestWorkers, &worker_args(&[]), &[("RUST_LOG", "info")]);
    process.wait_lines(1, |l| l.contains(NOWHERE)).await;
    // The length of the run is what is observed: after the first line, one more after 10 s.
    let _ = tokio::time::timeout(Duration::from_secs(12), process.wait_lines(usize::MAX, |_| true)).await;
    process.signal("KILL");
    let about_the_broker: Vec<&String> =
        process.lines.iter().filter(|l| l.contains(NOWHERE) || l.to_lowercase().contains("broker")).collect();
    eprintln!("{}", process.lines.join("\n"));
    assert!(
        (2..=3).contains(&about_the_broker.len()),
        "expected a first line and one or two repeats in 12 s, got {}:\n{}",
        about_the_broker.len(),
        process.lines.join("\n")
    );
    let first = about_the_broker[0];
    assert!(first.contains(&format!("cannot reach the brokers {NOWHERE}")), "{first}");
    assert!(first.contains("check that the address is right"), "{first}");
    let repeat = about_the_broker[1];
    assert!(repeat.contains(&format!("still cannot reach the brokers {NOWHERE} after 1")), "{repeat}");
    assert!(repeat.contains("failed attempts"), "{repeat}");
}

#[tokio::test(flavor = "multi_thread")]
async fn give_up_after_ms_ends_a_worker_that_cannot_reach_its_broker() {
    let started = Instant::now();
    let mut process = Process::spawn_with_logs(Binary::TestWorkers, &worker_args(&["--give-up-after-ms", "3000"]), &[]);
    let code = process.wait_exit().await;
    let took = started.elapsed();
    eprintln!("exited after {took:?}");
    assert_eq!(code, Some(1), "{}", process.lines.join("\n"));
    // 3 s to give up, 2 s at most for the final commit, and time to start.
    assert!(took < Duration::from_secs(12), "took {took:?}");
    let error = process.lines.iter().rev().find(|l| l.starts_with("error: ")).expect("an error line");
    eprintln!("{error}");
    assert!(error.contains(&format!("gave up: cannot reach the brokers {NOWHERE}")), "{error}");
    assert!(error.contains("for 3"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_that_starts_later_is_told_once_reached() {
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let args = ["--brokers", &address, "start-consumer", "--consumer-worker", "it_slow", "--topics", "later"];
    let mut process = Process::spawn_with_logs(Binary::TestWorkers, &args, &[("RUST_LOG", "info")]);
    process.wait_lines(1, |l| l.contains(&format!("cannot reach the brokers {address}"))).await;
    let _broker = OwnBroker::start_on(port);
    let reached = process.wait_lines(1, |l| l.contains("reached the brokers")).await;
    process.signal("TERM");
    assert_eq!(process.wait_exit().await, Some(0), "{}", process.lines.join("\n"));
    assert!(reached[0].contains(&format!("reached the brokers {address} after ")), "{}", reached[0]);
    assert!(reached[0].contains("failed attempts)"), "{}", reached[0]);
    let first_lines = process.lines.iter().filter(|l| l.contains("ERROR cannot reach the brokers")).count();
    assert_eq!(first_lines, 1, "{}", process.lines.join("\n"));
}
