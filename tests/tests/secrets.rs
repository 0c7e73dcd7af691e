//! Secrets never printed: every command of the test app, run as a process, on success and on
//! each error path, with secret values in config.json (one of them through an environment
//! variable), logs at debug level and librdkafka's configuration dump on; no secret value
//! appears anywhere in stdout or stderr. Where librdkafka or serde would echo a value, the
//! test also checks that the mask took its place, so it fails if the value was never there
//! to hide.

use kafka_integration_tests::*;

const SASL_PASSWORD: &str = "SASLPW-s3cr3t-1";
const KEY_PASSWORD: &str = "KEYPW-s3cr3t-2";
const UNKNOWN_KEY_VALUE: &str = "UNK-s3cr3t-3";
const OIDC_SECRET: &str = "OIDC-s3cr3t-4";
const ARRAY_VALUE: &str = "ARR-s3cr3t-5";
const SECRETS: [&str; 5] = [SASL_PASSWORD, KEY_PASSWORD, UNKNOWN_KEY_VALUE, OIDC_SECRET, ARRAY_VALUE];

const KEY_PASSWORD_VARIABLE: &str = "IT_SSL_KEY_PASSWORD";

/// A config.json whose `kafka.connection_settings` hold secrets librdkafka accepts on a
/// plaintext connection, with `extra` merged into the `kafka` section.
fn config(extra: serde_json::Value) -> String {
    let mut kafka = serde_json::json!({
        "connection_settings": {
            "sasl.username": "it-user",
            "sasl.password": SASL_PASSWORD,
            "ssl.key.password": format!("${{{KEY_PASSWORD_VARIABLE}}}"),
            "debug": "conf,security",
        },
        "consumer_connection_settings": fast_settings(),
    });
    for (key, value) in extra.as_object().expect("an object") {
        kafka[key] = value.clone();
    }
    write_config(serde_json::json!({"kafka": kafka})).display().to_string()
}

const ENV: [(&str, &str); 2] = [(KEY_PASSWORD_VARIABLE, KEY_PASSWORD), ("RUST_LOG", "debug")];

fn run(args: &[&str], input: Option<&str>) -> (i32, String, String) {
    run_with_input(Binary::TestWorkers, args, &ENV, input)
}

fn assert_no_secret(what: &str, out: &str, err: &str) {
    for secret in SECRETS {
        assert!(!out.contains(secret) && !err.contains(secret), "{what}: {secret} printed:\n{out}\n{err}");
    }
}

/// The last `error:` line of a failed run.
fn error_line(err: &str) -> &str {
    err.lines().rev().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("no error line in:\n{err}"))
}

#[test]
fn config_and_list_workers_mask_secrets() {
    let ok = config(serde_json::json!({"consumer_connection_settings": {"Sasl.Password": UNKNOWN_KEY_VALUE}}));
    let (code, out, err) = run(&["-c", &ok, "config", "--consumer-worker", "it_per_message"], None);
    assert_eq!(code, 0, "{err}");
    assert_no_secret("config", &out, &err);
    let line = |key: &str| out.lines().filter(|l| l.trim_start().starts_with(key)).collect::<Vec<_>>();
    // The producer's and the worker's settings, each secret shown masked with its source.
    assert_eq!(line("sasl.password").len(), 2, "{out}");
    for shown in line("sasl.password").iter().chain(&line("ssl.key.password")) {
        assert!(shown.contains("*****") && shown.ends_with("(config.json kafka.connection_settings)"), "{shown}");
    }
    assert!(line("Sasl.Password")[0].contains("*****"), "{out}");
    let (code, out, err) = run(&["-c", &ok, "list-workers"], None);
    assert_eq!(code, 0, "{err}");
    assert_no_secret("list-workers", &out, &err);
}

/// A configuration that cannot be loaded fails every command the same way, naming the key,
/// never the value.
#[test]
fn every_command_masks_secrets_in_configuration_errors() {
    let brokers = brokers();
    let commands: [&[&str]; 4] = [
        &["config"],
        &["list-workers"],
        &["start-consumer", "--consumer-worker", "it_per_message", "--topics", "t"],
        &["start-producer", "--topic", "t", "--data", "1"],
    ];
    // A secret of the wrong type: serde would echo it.
    let wrong_type = config(serde_json::json!({"producer": {"sasl.password": [ARRAY_VALUE]}}));
    // The variable not set: the error names it and the key.
    let ok = config(serde_json::json!({}));
    for command in commands {
        let args = [&["-c", &wrong_type, "--brokers", &brokers][..], command].concat();
        let (code, out, err) = run(&args, None);
        assert_eq!(code, 1, "{command:?}: {out}{err}");
        assert_no_secret(&format!("{command:?} with a wrong type"), &out, &err);
        assert!(error_line(&err).contains("setting \"sasl.password\": a librdkafka setting must be"), "{err}");

        let args = [&["-c", &ok, "--brokers", &brokers][..], command].concat();
        let (code, out, err) = run_with_input(Binary::TestWorkers, &args, &[("RUST_LOG", "debug")], None);
        assert_eq!(code, 1, "{command:?}: {out}{err}");
        assert_no_secret(&format!("{command:?} without the variable"), &out, &err);
        let expected = format!(
            "kafka.connection_settings.\"ssl.key.password\": the environment variable {KEY_PASSWORD_VARIABLE} is not set"
        );
        assert!(error_line(&err).contains(&expected), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn start_consumer_masks_secrets_in_logs_and_in_librdkafka_errors() {
    let brokers = brokers();
    let topic = unique("secrets");
    create_topics(&[&topic], 1).await;
    let ok = config(serde_json::json!({}));
    let args = ["-c", &ok, "--brokers", &brokers, "start-consumer", "--consumer-worker", "it_per_message"];
    let mut worker = Process::spawn_with_logs(Binary::TestWorkers, &[&args[..], &["--topics", &topic]].concat(), &ENV);
    worker.wait_lines(1, |l| l.contains("consumer started")).await;
    worker.signal("TERM");
    assert_eq!(worker.wait_exit().await, Some(0));
    let all = worker.lines.join("\n");
    assert!(all.contains("builtin.features"), "the start-up debug line: {all}");
    assert_no_secret("start-consumer", &all, "");

    // librdkafka rejects a key it does not know, and an OIDC setting this build lacks; both
    // errors would carry the value.
    for rejected in [
        serde_json::json!({"Sasl.Password": UNKNOWN_KEY_VALUE}),
        serde_json::json!({"sasl.oauthbearer.client.secret": OIDC_SECRET}),
    ] {
        let failing = config(serde_json::json!({"consumer_connection_settings": rejected}));
        let args = ["-c", &failing, "--brokers", &brokers, "start-consumer", "--consumer-worker", "it_per_message"];
        let (code, out, err) = run(&[&args[..], &["--topics", &topic]].concat(), None);
        assert_eq!(code, 1, "{out}{err}");
        assert_no_secret("start-consumer with a rejected setting", &out, &err);
        let line = error_line(&err);
        assert!(line.contains("cannot start its consumer") && line.contains("*****"), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn start_producer_masks_secrets_in_logs_and_in_librdkafka_errors() {
    let brokers = brokers();
    let topic = unique("secrets-out");
    create_topics(&[&topic], 1).await;
    let ok = config(serde_json::json!({}));
    let (code, out, err) =
        run(&["-c", &ok, "--brokers", &brokers, "start-producer", "--topic", &topic, "--data", "1"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("delivered to {topic}")), "{out}");
    assert_no_secret("start-producer", &out, &err);

    let failing = config(serde_json::json!({"producer": {"Sasl.Password": UNKNOWN_KEY_VALUE}}));
    let args = ["-c", &failing, "--brokers", &brokers, "start-producer", "--topic", &topic];
    let (code, out, err) = run(&[&args[..], &["--data", "1"]].concat(), None);
    assert_eq!(code, 1, "{out}{err}");
    assert_no_secret("start-producer --data with a rejected setting", &out, &err);
    assert!(error_line(&err).contains("not delivered") && error_line(&err).contains("*****"), "{err}");
    // Lines from stdin: each failure is reported on its own line.
    let (code, out, err) = run(&args, Some("1\n2\n"));
    assert_eq!(code, 1, "{out}{err}");
    assert_no_secret("start-producer from stdin with a rejected setting", &out, &err);
    assert!(err.contains("error: line 2: not delivered") && err.contains("*****"), "{err}");
}
