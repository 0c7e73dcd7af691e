//! The HTTP server, over real HTTP, against a running demo process on the real broker:
//! health, readiness, Prometheus metrics, stats, and sending through POST /topics/{topic}.

use kafka_integration_tests::*;
use rdkafka::message::Message as _;

/// The demo's `es` worker with its HTTP server on a free port; returns the process and the
/// server's base URL.
fn start_demo(prefix: &str, group: &str, http: serde_json::Value, extra: &[&str]) -> (Process, String) {
    let config = write_config(serde_json::json!({"kafka": {
        "consumer_connection_settings": fast_settings(),
        "http": http,
        "consumer": {"workers": [{"name": "es", "group": group, "topics": ["my-topic"]}]}
    }}));
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let config = config.display().to_string();
    let mut args = vec!["-c", &config, "--topic-prefix", prefix, "start-consumer", "--consumer-worker", "es"];
    args.extend_from_slice(&["--http", &listen]);
    args.extend_from_slice(extra);
    let demo = Process::spawn_with_env(Binary::Demo, &args, &[("KAFKA_DEMO_FEED", "0")]);
    (demo, format!("http://{listen}"))
}

fn sample<'a>(
    scrape: &'a prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<&'a prometheus_parse::Sample> {
    scrape.samples.iter().find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
}

fn value(sample: Option<&prometheus_parse::Sample>) -> f64 {
    match sample.map(|s| &s.value) {
        Some(
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v),
        ) => *v,
        other => panic!("not a number: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn health_ready_metrics_and_stats_report_what_the_worker_did() {
    let prefix = format!("{}-", unique("http"));
    let topic = format!("{prefix}my-topic");
    let group = unique("group");
    create_topics(&[&topic], 3).await;
    create_topics(&[&format!("{topic}-dlq")], 1).await;
    produce(&topic, documents(1, 1000)).await;
    produce(&topic, [Record::new("not json")]).await;
    let dead_letters = ["--dead-letter-topic", "{topic}-dlq"];
    let (mut demo, base) = start_demo(&prefix, &group, serde_json::json!({}), &dead_letters);
    demo.wait_lines(1000, |l| l.starts_with("es: indexed")).await;
    // The undecodable one went to the dead-letter topic.
    consume(&format!("{topic}-dlq"), 1).await;

    let (status, body) = http(&format!("{base}/health"), &[], None).await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let ready: serde_json::Value = serde_json::from_str(&wait_status(&format!("{base}/ready"), 200).await).unwrap();
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(ready["workers"][0]["worker"], "es", "{ready}");
    assert_eq!(ready["workers"][0]["group"], group.as_str(), "{ready}");

    let (status, text) = http(&format!("{base}/metrics"), &[], None).await;
    assert_eq!(status, 200);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text");
    let worker_topic = [("worker", "es"), ("topic", topic.as_str())];
    assert_eq!(value(sample(&scrape, "kafka_messages_handled_total", &worker_topic)), 1000.0, "{text}");
    assert_eq!(value(sample(&scrape, "kafka_messages_failed_total", &worker_topic)), 1.0, "{text}");
    assert_eq!(value(sample(&scrape, "kafka_messages_dead_lettered_total", &worker_topic)), 1.0, "{text}");
    assert_eq!(value(sample(&scrape, "kafka_messages_retried_total", &worker_topic)), 0.0, "never retried: {text}");
    assert_eq!(value(sample(&scrape, "kafka_assigned_partitions", &[("worker", "es")])), 3.0, "{text}");
    assert_eq!(value(sample(&scrape, "kafka_rebalances_total", &[("worker", "es")])), 1.0, "{text}");
    assert_eq!(value(sample(&scrape, "kafka_messages_in_flight", &[("worker", "es")])), 0.0, "{text}");
    assert!(text.contains("kafka_handler_duration_seconds_count{worker=\"es\"} 1001"), "{text}");
    assert!(text.contains("# TYPE kafka_producer_delivered_total counter"), "{text}");

    // librdkafka's statistics come every 5 s: the lag of each partition, all read.
    let lags = async {
        loop {
            let (_, text) = http(&format!("{base}/metrics"), &[], None).await;
            let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
            let lags: Vec<f64> =
                scrape.samples.iter().filter(|s| s.metric == "kafka_consumer_lag").map(|s| value(Some(s))).collect();
            if lags.len() == 3 && lags.iter().all(|lag| *lag == 0.0) {
                return lags;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    };
    tokio::time::timeout(WAIT, lags).await.expect("the lag of the 3 partitions, 0 once all is read");

    let (status, body) = http(&format!("{base}/stats"), &[], None).await;
    assert_eq!(status, 200);
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["es"]["count"], 1000, "{stats}");
    assert_eq!(stats["es"]["group"], group.as_str(), "{stats}");
    assert_eq!(stats["es"]["topics"][&topic]["count"], 1000, "{stats}");
    assert!(stats["es"]["topics"][&topic]["offset"].as_i64().is_some(), "{stats}");
    assert_eq!(stats["es"]["assigned"].as_array().unwrap().len(), 3, "{stats}");
    // What consumer-stat --json gives: the group's 3 partitions as the broker reports them.
    let offsets = &stats["es"]["group_offsets"];
    assert_eq!(offsets["worker"], "es", "{stats}");
    let partitions = offsets["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 3, "{stats}");
    assert!(partitions.iter().all(|p| p["group"] == group.as_str() && p["topic"] == topic.as_str()), "{stats}");
    // The original's path answers the same counters.
    let (status, original) = http(&format!("{base}/@consumer-stat"), &[], None).await;
    let original: serde_json::Value = serde_json::from_str(&original).unwrap();
    assert_eq!(status, 200);
    assert_eq!((&original["es"]["count"], &original["es"]["topics"]), (&stats["es"]["count"], &stats["es"]["topics"]));

    demo.signal("TERM");
    assert_eq!(demo.wait_exit().await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn post_topics_sends_with_the_shared_producer_only_with_the_token() {
    let prefix = format!("{}-", unique("http-post"));
    let sent_to = format!("{prefix}sent");
    create_topics(&[&format!("{prefix}my-topic"), &sent_to], 1).await;
    let http_settings = serde_json::json!({"produce": true, "token": "t0ken", "max_body_bytes": 1024});
    let (mut demo, base) = start_demo(&prefix, &unique("group"), http_settings, &[]);
    wait_status(&format!("{base}/health"), 200).await;
    let url = format!("{base}/topics/sent");
    let auth = ("Authorization", "Bearer t0ken");

    let doc = br#"{"id": 7, "text": "over http"}"#;
    assert_eq!(http(&url, &[], Some(doc)).await.0, 401, "no token");
    assert_eq!(http(&url, &[("Authorization", "Bearer nope")], Some(doc)).await.0, 401, "a wrong token");
    let (status, body) = http(&url, &[auth], Some(b"{not json")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("the body is not JSON"), "{body}");
    let big = format!(r#"{{"text": "{}"}}"#, "x".repeat(2000));
    assert_eq!(http(&url, &[auth], Some(big.as_bytes())).await.0, 413, "over max_body_bytes");

    let (status, body) = http(&format!("{url}?key=k7"), &[auth, ("Kafka-Header-Trace", "t-1")], Some(doc)).await;
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["topic"], sent_to.as_str(), "the topic prefix is applied: {report}");
    assert_eq!((report["partition"].as_i64(), report["offset"].as_i64()), (Some(0), Some(0)), "{report}");
    // The original's path and answer.
    let (status, body) = http(&format!("{base}/@kafka-producer/sent"), &[auth], Some(br#"{"id": 8}"#)).await;
    assert_eq!(status, 200, "{body}");
    let original: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(original["sent"], true, "{original}");
    assert_eq!(original["result"]["offset"], 1, "{original}");

    // Read back by an independent client: the two accepted ones, nothing of the refused.
    let messages = consume(&sent_to, 2).await;
    let payload = |i: usize| serde_json::from_slice::<serde_json::Value>(messages[i].payload().unwrap()).unwrap();
    assert_eq!(payload(0), serde_json::json!({"id": 7, "text": "over http"}));
    assert_eq!(messages[0].key(), Some(&b"k7"[..]));
    assert_eq!(header(&messages[0], "trace"), Some("t-1"));
    assert_eq!(payload(1), serde_json::json!({"id": 8}));
    let (status, text) = http(&format!("{base}/metrics"), &[], None).await;
    assert_eq!(status, 200);
    assert!(text.contains("kafka_producer_delivered_total 2"), "{text}");

    demo.signal("TERM");
    assert_eq!(demo.wait_exit().await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn sending_over_http_is_off_unless_turned_on() {
    let prefix = format!("{}-", unique("http-off"));
    create_topics(&[&format!("{prefix}my-topic")], 1).await;
    let (mut demo, base) = start_demo(&prefix, &unique("group"), serde_json::json!({}), &[]);
    wait_status(&format!("{base}/health"), 200).await;
    let (status, body) = http(&format!("{base}/topics/sent"), &[], Some(b"{}")).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("kafka.http.produce"), "{body}");
    demo.signal("TERM");
    assert_eq!(demo.wait_exit().await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn ready_turns_503_while_the_broker_is_paused_and_200_when_it_is_back() {
    let broker = OwnBroker::start();
    let prefix = format!("{}-", unique("ready"));
    create_topics_on(&broker.bootstrap, &[&format!("{prefix}my-topic")], 1).await;
    let config = write_config(serde_json::json!({"kafka": {
        "consumer_connection_settings": fast_settings(),
        "consumer": {"workers": [{"name": "es", "group": unique("group"), "topics": ["my-topic"]}]}
    }}));
    let config = config.display().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    let args =
        ["-c", &config, "--topic-prefix", &prefix, "start-consumer", "--consumer-worker", "es", "--http", &listen];
    let env = [("KAFKA_DEMO_FEED", "0"), ("KAFKA_BROKERS", broker.bootstrap.as_str())];
    let mut demo = Process::spawn_with_env(Binary::Demo, &args, &env);
    let ready = format!("http://{listen}/ready");
    wait_status(&ready, 200).await;

    broker.signal("STOP");
    let body = wait_status(&ready, 503).await;
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["ready"], false, "{answer}");
    assert!(answer["workers"][0]["reason"].as_str().is_some_and(|r| !r.is_empty()), "a reason: {answer}");
    broker.signal("CONT");
    wait_status(&ready, 200).await;

    demo.signal("TERM");
    assert_eq!(demo.wait_exit().await, Some(0));
}
