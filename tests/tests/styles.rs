//! Each worker style end to end against the real broker: messages from an independent
//! producer are each handled exactly once in a clean run, and a restart after a clean stop
//! handles only what is new.

use std::collections::BTreeSet;

use kafka_integration_tests::*;

fn config() -> String {
    write_config(serde_json::json!({"kafka": {"consumer_connection_settings": fast_settings()}})).display().to_string()
}

async fn exactly_once_then_resume(worker: &str) {
    let topic = unique(worker);
    let group = unique("group");
    create_topics(&[&topic], 3).await;
    produce(&topic, (0..300).map(|n| Record::new(format!("m{n}")))).await;

    let config = config();
    let args =
        ["-c", &config, "start-consumer", "--consumer-worker", worker, "--topics", &topic, "--consumer-group", &group];
    let running = InProcess::start(&args);
    let first = wait_handled(300, |h| h.topic == topic).await;
    running.stop().await.expect("clean stop");

    let payloads: BTreeSet<&str> = first.iter().map(|h| h.payload.as_str()).collect();
    assert_eq!(first.len(), 300, "a message was handled twice");
    assert_eq!(payloads.len(), 300);
    assert!(first.iter().all(|h| h.worker == worker && h.group == group));

    // Committed on shutdown: a restart in the same group sees only the new messages.
    produce(&topic, (300..350).map(|n| Record::new(format!("m{n}")))).await;
    let running = InProcess::start(&args);
    wait_handled(350, |h| h.topic == topic).await;
    running.stop().await.expect("clean stop");
    let all = handled(|h| h.topic == topic);
    let second: BTreeSet<&str> = all[first.len()..].iter().map(|h| h.payload.as_str()).collect();
    let expected: BTreeSet<String> = (300..350).map(|n| format!("m{n}")).collect();
    assert_eq!(all.len(), 350, "the restart handled an already committed message again");
    assert_eq!(second, expected.iter().map(String::as_str).collect());
}

#[tokio::test(flavor = "multi_thread")]
async fn per_message_handler_handles_each_message_once() {
    exactly_once_then_resume("it_per_message").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_worker_handles_each_message_once() {
    exactly_once_then_resume("it_stream").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn typed_payloads_keys_and_headers_are_decoded() {
    let topic = unique("json");
    create_topics(&[&topic], 1).await;
    // Odd ids carry a `trace` header (after another one), even ids none.
    produce(
        &topic,
        documents(1, 20).zip(1..).map(|(mut record, id)| {
            if id % 2 == 1 {
                record.headers = vec![("other".into(), "x".into()), ("trace".into(), format!("t{id}"))];
            }
            record
        }),
    )
    .await;
    let config = config();
    let running =
        InProcess::start(&["-c", &config, "start-consumer", "--consumer-worker", "it_json", "--topics", &topic]);
    let got = wait_handled(20, |h| h.topic == topic).await;
    running.stop().await.expect("clean stop");
    let ids: BTreeSet<String> = got.iter().map(|h| h.payload.clone()).collect();
    let expected: BTreeSet<String> =
        (1..=20).map(|id| if id % 2 == 1 { format!("k{id}:{id}:t{id}") } else { format!("k{id}:{id}:-") }).collect();
    assert_eq!(ids, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn undecodable_payload_stops_the_worker_and_is_not_committed() {
    let topic = unique("poison");
    let group = unique("group");
    create_topics(&[&topic], 1).await;
    produce(&topic, documents(1, 3)).await;
    produce(&topic, [Record::new("not json")]).await;
    let config = config();
    let args = [
        "-c",
        &config,
        "start-consumer",
        "--consumer-worker",
        "it_json",
        "--topics",
        &topic,
        "--consumer-group",
        &group,
    ];

    let err = InProcess::start(&args).finish().await.expect_err("the worker must stop");
    let message = err.to_string();
    assert!(message.contains(&format!("topic {topic}, partition 0, offset 3")), "{message}");
    assert!(message.contains("cannot decode the payload as JSON"), "{message}");
    assert!(message.contains("will be delivered again"), "{message}");
    assert_eq!(handled(|h| h.topic == topic).len(), 3);

    // The three good ones were committed; the bad one was not, so it comes first again.
    let err = InProcess::start(&args).finish().await.expect_err("the worker must stop again");
    assert!(err.to_string().contains("offset 3"), "{err}");
    assert_eq!(handled(|h| h.topic == topic).len(), 3, "a committed message was handled again");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_handler_is_reported_not_fatal_to_the_process() {
    let topic = unique("panic");
    create_topics(&[&topic], 1).await;
    produce(&topic, [Record::new("x")]).await;
    let config = config();
    let err =
        InProcess::start(&["-c", &config, "start-consumer", "--consumer-worker", "it_panics", "--topics", &topic])
            .finish()
            .await
            .expect_err("the worker must fail");
    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "worker `it_panics` failed: handler panicked at topic {topic}, partition 0, offset 0: \
             bug in the handler at offset 0"
        )),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn start_consumers_runs_both_styles_side_by_side() {
    let per_message = unique("side-a");
    let stream = unique("side-b");
    create_topics(&[&per_message, &stream], 2).await;
    produce(&per_message, (0..40).map(|n| Record::new(format!("a{n}")))).await;
    produce(&stream, (0..40).map(|n| Record::new(format!("b{n}")))).await;
    let config = write_config(serde_json::json!({"kafka": {
        "consumer_connection_settings": fast_settings(),
        "consumer": {"workers": [
            {"name": "it_per_message", "group": unique("ga"), "topics": [per_message]},
            {"name": "it_stream", "group": unique("gb"), "topics": [stream]}
        ]}
    }}));
    let config = config.display().to_string();
    let running =
        InProcess::start(&["-c", &config, "start-consumers", "--consumer-worker", "it_per_message", "it_stream"]);
    let a = wait_handled(40, |h| h.topic == per_message).await;
    let b = wait_handled(40, |h| h.topic == stream).await;
    running.stop().await.expect("clean stop");
    assert!(a.iter().all(|h| h.worker == "it_per_message"));
    assert!(b.iter().all(|h| h.worker == "it_stream"));
    assert_eq!(handled(|h| h.topic == per_message || h.topic == stream).len(), 80);
}

#[test]
fn workers_from_every_linked_crate_are_registered() {
    let names: Vec<&str> = kafka_runtime::registered_workers().unwrap().iter().map(|w| w.name).collect();
    for name in ["es", "default", "it_per_message", "it_stream", "it_json", "it_panics", "it_slow", "it_paced"] {
        assert!(names.contains(&name), "{name} is missing from {names:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rebalance_commits_on_revoke_and_loses_nothing() {
    rebalance_loses_nothing(None).await;
}

/// Cooperative rebalancing takes away only some partitions: what the worker buffered of the
/// others must stay, and what it buffered of the revoked ones must go.
#[tokio::test(flavor = "multi_thread")]
async fn a_cooperative_rebalance_loses_and_repeats_nothing() {
    rebalance_loses_nothing(Some("cooperative-sticky")).await;
}

async fn rebalance_loses_nothing(strategy: Option<&str>) {
    let topic = unique("rebalance");
    let group = unique("group");
    create_topics(&[&topic], 4).await;
    // A backlog the first member is still working through (1 ms a message) when the second
    // joins, so that it has messages buffered when partitions are revoked.
    produce(&topic, (0..8000).map(|n| Record::new(format!("m{n}")))).await;
    // Two members of one group: two config entries naming the same function by its path.
    let member = |name: &str| {
        serde_json::json!({"name": name, "path": "kafka_integration_tests::workers::paced",
                           "group": group, "topics": [topic]})
    };
    let mut settings = fast_settings();
    if let Some(strategy) = strategy {
        settings["partition.assignment.strategy"] = strategy.into();
    }
    let config = write_config(serde_json::json!({"handler_delay_ms": 1, "kafka": {
        "consumer_connection_settings": settings,
        "consumer": {"workers": [member("member_a"), member("member_b")]}
    }}));
    let config = config.display().to_string();

    let first = InProcess::start(&["-c", &config, "start-consumer", "--consumer-worker", "member_a"]);
    wait_handled(200, |h| h.topic == topic).await;
    // The second member joins: the first one's partitions are revoked (and committed) and
    // shared out again.
    let second = InProcess::start(&["-c", &config, "start-consumer", "--consumer-worker", "member_b"]);
    // Keep messages coming until the second member has handled one of them.
    let mut total = 8000;
    loop {
        produce(&topic, (total..total + 100).map(|n| Record::new(format!("m{n}")))).await;
        total += 100;
        let joined = wait_handled(1, |h| h.topic == topic && h.worker == "member_b");
        if tokio::time::timeout(std::time::Duration::from_millis(250), joined).await.is_ok() {
            break;
        }
        assert!(total < 100_000, "the second member never got a partition");
    }
    wait_handled(total, |h| h.topic == topic).await;
    first.stop().await.expect("clean stop");
    second.stop().await.expect("clean stop");

    let all = handled(|h| h.topic == topic);
    let unique_payloads: BTreeSet<&str> = all.iter().map(|h| h.payload.as_str()).collect();
    assert_eq!(unique_payloads.len(), total, "a message was lost");
    assert_eq!(all.len(), total, "{} messages were handled twice", all.len() - total);
    assert!(all.iter().any(|h| h.worker == "member_a") && all.iter().all(|h| h.group == group));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_worker_failure_names_the_message_in_hand() {
    let topic = unique("stream-poison");
    create_topics(&[&topic], 1).await;
    for payload in ["a", "b", "poison", "c"] {
        produce(&topic, [Record::new(payload)]).await;
    }
    let config = config();
    let err = InProcess::start(&[
        "-c",
        &config,
        "start-consumer",
        "--consumer-worker",
        "it_stream_poison",
        "--topics",
        &topic,
    ])
    .finish()
    .await
    .expect_err("the worker fails")
    .to_string();
    assert!(
        err.contains(&format!(
            "worker `it_stream_poison` failed at topic {topic}, partition 0, offset 2: poison found"
        )),
        "{err}"
    );
    assert!(err.contains("not committed"), "{err}");
    assert_eq!(handled(|h| h.topic == topic).len(), 2);
}
