//! A busy consumer on a runtime with one thread still lets signals and timers run: its yield
//! pace (`consume/yield_pace.rs`) makes it yield. (Its own test binary: it sends SIGTERM to
//! itself.)

use std::sync::mpsc;
use std::time::{Duration, Instant};

use kafka_integration_tests::*;
use kafka_runtime::Shutdown;

#[test]
fn sigterm_is_acted_on_at_once_while_a_busy_worker_has_a_backlog() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let topic = unique("one-thread");
    const BACKLOG: usize = 40_000;
    runtime.block_on(async {
        create_topics(&[&topic], 1).await;
        produce(&topic, (0..BACKLOG).map(|n| Record::new(format!("m{n}")))).await;
    });
    let config = write_config(serde_json::json!({
        "busy_us": 100,
        "kafka": {"consumer_connection_settings": fast_settings()}
    }));
    let config = config.display().to_string();
    let shutdown = Shutdown::on_signals();
    let args = vec![
        "it".to_owned(),
        "--brokers".into(),
        brokers(),
        "-c".into(),
        config,
        "start-consumer".into(),
        "--consumer-worker".into(),
        "it_busy".into(),
        "--topics".into(),
        topic.clone(),
    ];
    let (done_tx, done_rx) = mpsc::channel();
    let running = shutdown.clone();
    let handle = std::thread::spawn(move || {
        let result = runtime.block_on(kafka_runtime::run_with_args(args, running));
        let _ = done_tx.send(());
        result
    });

    // The worker is busy with its backlog (100 µs a message, 4 s in all) when the signal comes.
    let started = Instant::now();
    while handled(|h| h.topic == topic).len() < 200 {
        assert!(started.elapsed() < WAIT, "the worker never got going");
        assert!(done_rx.try_recv().is_err(), "the command ended early");
        std::thread::sleep(Duration::from_millis(1));
    }
    let pid = std::process::id().to_string();
    let sent = Instant::now();
    assert!(std::process::Command::new("kill").args(["-s", "TERM", &pid]).status().unwrap().success());
    while !shutdown.is_begun() {
        assert!(sent.elapsed() < WAIT, "SIGTERM was never acted on");
        std::thread::sleep(Duration::from_millis(1));
    }
    let acted_on = sent.elapsed();
    done_rx.recv_timeout(WAIT).expect("the command ends after SIGTERM");
    handle.join().unwrap().expect("a clean stop");
    let count = handled(|h| h.topic == topic).len();
    assert!(acted_on < Duration::from_millis(100), "SIGTERM was acted on after {acted_on:?}");
    assert!(count < BACKLOG, "the whole backlog was handled before the stop: {count}");
}
