//! Where workers read from: topic prefix, default topics, `{topic}` groups and regex topics.

use std::collections::BTreeSet;

use kafka_integration_tests::*;

#[tokio::test(flavor = "multi_thread")]
async fn prefix_and_default_topics_reach_the_worker() {
    let prefix = format!("{}-", unique("pfx"));
    let (own, default) = (format!("{prefix}own"), format!("{prefix}default"));
    create_topics(&[&own, &default], 1).await;
    produce(&own, [Record::new("to-own")]).await;
    produce(&default, [Record::new("to-default")]).await;
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
    assert_eq!(payloads, BTreeSet::from(["to-own", "to-default"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn topic_groups_give_each_topic_its_own_consumer_and_group() {
    let prefix = format!("{}-", unique("tg"));
    let (a, b) = (format!("{prefix}a"), format!("{prefix}b"));
    create_topics(&[&a, &b], 1).await;
    produce(&a, [Record::new("on-a")]).await;
    produce(&b, [Record::new("on-b")]).await;
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
