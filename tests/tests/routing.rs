//! Where workers read from: topic prefix, default topics, `{topic}` groups and regex topics.

use std::collections::BTreeSet;

use kafka_integration_tests::*;

/// A fresh topic prefix, and under it one topic per name holding one message: the name.
async fn prefixed_topics(label: &str, names: &[&str]) -> String {
    let prefix = format!("{}-", unique(label));
    for name in names {
        let topic = format!("{prefix}{name}");
        create_topics(&[&topic], 1).await;
        produce(&topic, [Record::new(*name)]).await;
    }
    prefix
}

#[tokio::test(flavor = "multi_thread")]
async fn prefix_and_default_topics_reach_the_worker() {
    let prefix = prefixed_topics("pfx", &["own", "default"]).await;
    let config = write_config(serde_json::json!({"kafka": {
        "topic_prefix": prefix,
        "consumer_connection_settings": fast_settings(),
        "consumer": {
            "topics": ["default"],
            "workers": [{"name": "it_per_message", "group": unique("g"), "topics": ["own"]}]
        }
    }}));
    let config = config.display().to_string();
    let running = InProcess::start(&["-c", &config, "start-consumer", "--consumer-worker", "it_per_message"]);
    let got = wait_handled(2, |h| h.topic.starts_with(&prefix)).await;
    running.stop().await.expect("clean stop");
    let payloads: BTreeSet<&str> = got.iter().map(|h| h.payload.as_str()).collect();
    assert_eq!(payloads, BTreeSet::from(["own", "default"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn topic_groups_give_each_topic_its_own_consumer_and_group() {
    let prefix = prefixed_topics("tg", &["a", "b"]).await;
    let (a, b) = (format!("{prefix}a"), format!("{prefix}b"));
    let config = write_config(serde_json::json!({"kafka": {
        "topic_prefix": prefix,
        "consumer_connection_settings": fast_settings(),
        "consumer": {"workers": [{"name": "it_stream", "group": "grp-{topic}", "topics": ["a", "b"]}]}
    }}));
    let config = config.display().to_string();
    let running = InProcess::start(&["-c", &config, "start-consumers", "--consumer-worker", "it_stream"]);
    let got = wait_handled(2, |h| h.topic.starts_with(&prefix)).await;
    running.stop().await.expect("clean stop");
    let groups: BTreeSet<(String, String)> = got.iter().map(|h| (h.topic.clone(), h.group.clone())).collect();
    assert_eq!(groups, BTreeSet::from([(a.clone(), format!("grp-{a}")), (b.clone(), format!("grp-{b}"))]));
}

#[tokio::test(flavor = "multi_thread")]
async fn regex_topics_include_topics_created_after_start() {
    let base = unique("rx");
    let (early, late, other) = (format!("{base}-events-1"), format!("{base}-events-2"), format!("{base}-other"));
    create_topics(&[&early, &other], 1).await;
    produce(&early, [Record::new("early")]).await;
    produce(&other, [Record::new("not-matching")]).await;
    let config = write_config(serde_json::json!({"kafka": {"consumer_connection_settings": fast_settings()}}));
    let config = config.display().to_string();
    let pattern = format!("{base}-events-.*");
    let running = InProcess::start(&[
        "-c",
        &config,
        "start-consumer",
        "--consumer-worker",
        "it_per_message",
        "--regex-topic",
        &pattern,
        "--consumer-group",
        &unique("g"),
    ]);
    // The worker is subscribed and running once the first message arrives.
    wait_handled(1, |h| h.topic == early).await;
    create_topics(&[&late], 1).await;
    produce(&late, [Record::new("late")]).await;
    wait_handled(1, |h| h.topic == late).await;
    running.stop().await.expect("clean stop");
    assert!(handled(|h| h.topic == other).is_empty(), "a topic outside the pattern was consumed");
    assert_eq!(handled(|h| h.topic.starts_with(&base)).len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn command_line_options_override_the_config_file() {
    let from_file = unique("file-topic");
    let from_cli = unique("cli-topic");
    create_topics(&[&from_file, &from_cli], 1).await;
    produce(&from_file, [Record::new("file")]).await;
    produce(&from_cli, [Record::new("cli")]).await;
    let cli_group = unique("cli-group");
    let config = write_config(serde_json::json!({"kafka": {
        "consumer_connection_settings": fast_settings(),
        "consumer": {"workers": [{"name": "it_per_message", "group": "file-group", "topics": [from_file]}]}
    }}));
    let config = config.display().to_string();
    let running = InProcess::start(&[
        "-c",
        &config,
        "start-consumer",
        "--consumer-worker",
        "it_per_message",
        "--topics",
        &from_cli,
        "--consumer-group",
        &cli_group,
    ]);
    let got = wait_handled(1, |h| h.topic == from_cli).await;
    running.stop().await.expect("clean stop");
    assert_eq!(got[0].group, cli_group);
    assert!(handled(|h| h.topic == from_file).is_empty(), "--topics must replace the config's topics");
}

/// Without `topic.metadata.refresh.interval.ms` in the settings, a regex worker still finds a
/// new matching topic within 30 s (librdkafka's own default would take 5 minutes).
#[tokio::test(flavor = "multi_thread")]
async fn regex_topics_find_a_new_topic_within_30_s_by_default() {
    let base = unique("rx30");
    let (early, late) = (format!("{base}-events-1"), format!("{base}-events-2"));
    create_topics(&[&early], 1).await;
    produce(&early, [Record::new("early")]).await;
    // Fast group joins, and no metadata refresh setting: the default is what is tested.
    let settings = serde_json::json!({"session.timeout.ms": 6000, "heartbeat.interval.ms": 500});
    let config = write_config(serde_json::json!({"kafka": {"consumer_connection_settings": settings}}));
    let config = config.display().to_string();
    let pattern = format!("{base}-events-.*");
    let group = unique("g");
    let args = ["-c", &config, "start-consumer", "--consumer-worker", "it_per_message", "--regex-topic", &pattern];
    let running = InProcess::start(&[&args[..], &["--consumer-group", &group]].concat());
    wait_handled(1, |h| h.topic == early).await;
    create_topics(&[&late], 1).await;
    produce(&late, [Record::new("late")]).await;
    let produced = std::time::Instant::now();
    wait_handled(1, |h| h.topic == late).await;
    let took = produced.elapsed();
    running.stop().await.expect("clean stop");
    eprintln!("the new topic's message was handled {took:?} after it was produced");
    // 30 s for the refresh, a few more for the rebalance that adds the topic.
    assert!(took < std::time::Duration::from_secs(45), "took {took:?}");
}
