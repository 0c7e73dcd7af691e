//! Shutdown while the broker does not answer (SIGSTOP): the final commit and close are waited
//! for at most the drain timeout, and a second signal ends the process at once. Either way it
//! exits 1 and names the positions that may be delivered again.

use std::time::{Duration, Instant};

use kafka_integration_tests::*;

const MESSAGES: usize = 20;

/// A worker on a broker of its own that handled every message of its topic, with logs read
/// as lines.
async fn worker_with_everything_handled(broker: &OwnBroker, drain_timeout_ms: &str) -> (Process, String) {
    let topic = unique("bounded");
    create_topics_on(&broker.bootstrap, &[&topic], 1).await;
    produce_ids(&broker.bootstrap, &topic, 0..MESSAGES).await;
    let config = write_config(serde_json::json!({"kafka": {"consumer_connection_settings": fast_settings()}}));
    let config = config.display().to_string();
    let args = [
        "-c",
        &config,
        "--brokers",
        &broker.bootstrap,
        "--drain-timeout-ms",
        drain_timeout_ms,
        "start-consumer",
        "--consumer-worker",
        "it_slow",
        "--topics",
        &topic,
    ];
    let mut process = Process::spawn_with_logs(Binary::TestWorkers, &args, &[("RUST_LOG", "info")]);
    process.wait_lines(MESSAGES, |l| l.starts_with("handled ")).await;
    (process, topic)
}

fn error_line(process: &Process) -> &str {
    process.lines.iter().rev().find(|l| l.starts_with("error: ")).map(String::as_str).unwrap_or_else(|| {
        panic!("no `error:` line; the output:\n{}", process.lines.join("\n"));
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_the_broker_paused_exits_within_the_drain_timeout() {
    let broker = OwnBroker::start();
    let (mut process, topic) = worker_with_everything_handled(&broker, "3000").await;
    broker.signal("STOP");
    let signalled = Instant::now();
    process.signal("TERM");
    let code = process.wait_exit().await;
    let took = signalled.elapsed();
    broker.signal("CONT");
    eprintln!("exited {took:?} after SIGTERM");
    assert_eq!(code, Some(1), "the output:\n{}", process.lines.join("\n"));
    assert!(took < Duration::from_secs(13), "took {took:?}, for a drain timeout of 3 s");
    let error = error_line(&process);
    eprintln!("{error}");
    assert!(error.contains("did not finish within the drain timeout (3000 ms"), "{error}");
    assert!(error.contains(&format!("{topic}[0] below offset")), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_sigterm_with_the_broker_paused_ends_the_process_at_once() {
    let broker = OwnBroker::start();
    // A drain timeout far longer than the test waits: only the second signal can end it.
    let (mut process, topic) = worker_with_everything_handled(&broker, "120000").await;
    broker.signal("STOP");
    process.signal("TERM");
    process.wait_lines(1, |l| l.contains("SIGTERM received: stopping")).await;
    let signalled = Instant::now();
    process.signal("TERM");
    let code = process.wait_exit().await;
    let took = signalled.elapsed();
    broker.signal("CONT");
    eprintln!("exited {took:?} after the second SIGTERM");
    assert_eq!(code, Some(1), "the output:\n{}", process.lines.join("\n"));
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let error = error_line(&process);
    eprintln!("{error}");
    assert!(error.contains("stopped at once"), "{error}");
    assert!(error.contains(&format!("{topic}[0] below offset")), "{error}");
}
