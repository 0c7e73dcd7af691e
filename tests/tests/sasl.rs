//! SASL SCRAM against a Tansu started with `--authentication`: the settings, given once in
//! `kafka.connection_settings` with the password from an environment variable, reach the
//! producer and every consumer, and librdkafka runs the SCRAM exchange with the broker. The
//! broker knows no user (see `OwnBroker::start_authenticating`), so the exchange ends with
//! its `unknown-user` answer: what this checks is that the mechanism is built in and the
//! settings are used, not a successful login.

use kafka_integration_tests::*;

const PASSWORD: &str = "SCRAM-pw-s3cr3t";

#[tokio::test(flavor = "multi_thread")]
async fn scram_settings_reach_the_producer_and_the_consumer_and_the_password_is_never_printed() {
    let broker = OwnBroker::start_authenticating();
    let config = write_config(serde_json::json!({"kafka": {
        "connection_settings": {
            "security.protocol": "sasl_plaintext",
            "sasl.mechanisms": "SCRAM-SHA-512",
            "sasl.username": "it-user",
            "sasl.password": "${IT_SASL_PASSWORD}",
        },
        "consumer_connection_settings": fast_settings(),
        "producer": {"message.timeout.ms": 3000},
    }}));
    let config = config.display().to_string();
    let env = [("IT_SASL_PASSWORD", PASSWORD), ("RUST_LOG", "error")];
    let global = ["-c", &config, "--brokers", &broker.bootstrap];

    // `config`: both clients' SASL settings with their source, the password masked.
    let (code, out, err) = run_to_end(Binary::TestWorkers, &[&global[..], &["config"]].concat(), &env);
    assert_eq!(code, 0, "{err}");
    let lines = |key: &str| out.lines().filter(|l| l.trim_start().starts_with(key)).collect::<Vec<_>>();
    assert!(lines("librdkafka")[0].contains("sasl_scram"), "{out}");
    let mechanisms = lines("sasl.mechanisms");
    assert!(mechanisms.len() >= 2, "the producer and each worker: {out}");
    for line in mechanisms {
        assert!(line.contains("SCRAM-SHA-512") && line.ends_with("(config.json kafka.connection_settings)"), "{line}");
    }
    assert!(lines("sasl.password").iter().all(|l| l.contains("*****")), "{out}");
    assert!(!out.contains(PASSWORD) && !err.contains(PASSWORD), "{out}{err}");

    // The producer (`start-producer`) runs the SCRAM exchange; the broker turns the user down.
    let producer = [&global[..], &["start-producer", "--topic", "t", "--data", "1"]].concat();
    let (code, out, err) = run_to_end(Binary::TestWorkers, &producer, &env);
    assert_eq!(code, 1, "{out}{err}");
    let refused = err
        .lines()
        .find(|l| l.contains("SASL authentication with the broker failed"))
        .unwrap_or_else(|| panic!("no SASL error in:\n{err}"));
    assert!(refused.contains("SASL SCRAM authentication failed: broker responded with unknown-user"), "{refused}");
    assert!(refused.contains("client=\"producer\""), "{refused}");
    assert!(!err.contains("not supported in this build"), "{err}");
    assert!(!out.contains(PASSWORD) && !err.contains(PASSWORD), "{out}{err}");

    // A worker's consumer does the same, named by its worker.
    let consumer = [&global[..], &["start-consumer", "--consumer-worker", "it_per_message", "--topics", "t"]].concat();
    let mut worker = Process::spawn_with_logs(Binary::TestWorkers, &consumer, &env);
    let refused = worker.wait_lines(1, |l| l.contains("SASL authentication with the broker failed")).await;
    assert!(refused[0].contains("broker responded with unknown-user"), "{}", refused[0]);
    assert!(refused[0].contains("client=\"it_per_message\""), "{}", refused[0]);
    worker.signal("TERM");
    assert_eq!(worker.wait_exit().await, Some(0));
    assert!(!worker.lines.join("\n").contains(PASSWORD));
}
