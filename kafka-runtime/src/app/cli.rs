//! The command line that `#[kafka_main]` generates, defined with clap.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{OnDecodeError, Ordering};

/// The parsed command line. Workers see it through
/// [`WorkerContext::arguments`](crate::WorkerContext::arguments).
#[derive(Debug, Clone, Parser)]
#[command(
    version,
    about = "Runs this app's Kafka workers",
    after_help = "Logs go to stderr; set their level with RUST_LOG (for example RUST_LOG=debug).",
    disable_help_subcommand = true
)]
pub struct Arguments {
    /// Configuration file [default: config.json in the working directory, when present]
    #[arg(short = 'c', long = "config", visible_alias = "configuration", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Kafka brokers, comma-separated; overrides KAFKA_BROKERS and kafka.brokers [default: the embedded mock cluster]
    #[arg(long, global = true, value_delimiter = ',', value_name = "HOST:PORT")]
    pub brokers: Option<Vec<String>>,

    /// Prefix added to every topic and regex; overrides KAFKA_TOPIC_PREFIX and kafka.topic_prefix
    #[arg(long, global = true, value_name = "PREFIX")]
    pub topic_prefix: Option<String>,

    /// How long in-flight messages may take to finish after SIGINT/SIGTERM; overrides
    /// KAFKA_DRAIN_TIMEOUT_MS and kafka.consumer.drain_timeout_ms [default: 30000]
    #[arg(long, global = true, value_name = "MS")]
    pub drain_timeout_ms: Option<u64>,

    /// How long a worker waits for unreachable brokers before it stops with an error (exit 1);
    /// overrides kafka.consumer.give_up_after_ms [default: 0, it waits as long as it runs]
    #[arg(long, global = true, value_name = "MS")]
    pub give_up_after_ms: Option<u64>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run one worker
    StartConsumer(StartConsumer),
    /// Run several workers in one process, each with its own consumer and group
    StartConsumers(StartConsumers),
    /// List the registered workers with their style, group, topics and Rust path
    ListWorkers,
    /// Show the effective configuration and where each value comes from
    Config(ShowConfig),
    /// Send messages to a topic: one (--data), typed in (-i), or one per line from stdin
    StartProducer(StartProducer),
    /// Show workers' lag: per group, topic and partition, the committed offset, the log start and end
    ConsumerStat(ConsumerStat),
    /// Create the topics the configuration names, with the partitions and settings of kafka.topics
    CreateTopics(CreateTopics),
}

/// The HTTP server of the long-running commands.
#[derive(Debug, Clone, Default, Args)]
pub struct HttpArgs {
    /// Serve /health, /ready, /metrics and /stats (and POST /topics/{topic} when
    /// kafka.http.produce is on) on ADDR:PORT; overrides kafka.http.listen [default: off]
    #[arg(long = "http", value_name = "ADDR:PORT")]
    pub listen: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct StartConsumer {
    /// The worker to run
    #[arg(long, value_name = "NAME", default_value = "default")]
    pub consumer_worker: String,

    /// How messages reach the worker: one by one (`stream`: per-message handlers and stream
    /// workers) or in batches (`batch`: batch workers) [default: the worker's style]
    #[arg(long, value_enum)]
    pub consumer_type: Option<ConsumerType>,

    /// A batch worker's most messages per batch; overrides the worker's `take` [default: 1000]
    #[arg(long, value_name = "N")]
    pub take: Option<u64>,

    /// How long a batch worker's batch waits for more messages after its first one, in ms;
    /// overrides the worker's `within_ms` [default: 60000]
    #[arg(long, visible_alias = "within-ms", value_name = "MS")]
    pub within: Option<u64>,

    /// Topics to consume, replacing the worker's (the prefix and kafka.consumer.topics are still added)
    #[arg(long, num_args = 1.., value_delimiter = ',', value_name = "TOPIC", conflicts_with = "regex_topic")]
    pub topics: Option<Vec<String>>,

    /// A regular expression of topics to consume, replacing the worker's topics
    #[arg(long, value_name = "REGEX")]
    pub regex_topic: Option<String>,

    /// The consumer group, replacing the worker's; `{topic}` gives each topic its own group
    #[arg(long, value_name = "GROUP")]
    pub consumer_group: Option<String>,

    #[command(flatten)]
    pub failure: FailureArgs,

    #[command(flatten)]
    pub concurrency: ConcurrencyArgs,

    #[command(flatten)]
    pub http: HttpArgs,
}

/// How many messages a per-message worker handles at once (see the README's "Concurrency").
#[derive(Debug, Clone, Default, Args)]
pub struct ConcurrencyArgs {
    /// Which messages may be handled at the same time [default: partition]
    #[arg(long, value_enum, value_name = "ORDERING")]
    pub ordering: Option<Ordering>,

    /// How many messages may be in the handler at once, per consumer [default: 64]
    #[arg(long, value_name = "N")]
    pub max_in_flight: Option<u64>,
}

/// The failure policy, over the worker's (see the README's "When a handler fails").
#[derive(Debug, Clone, Default, Args)]
pub struct FailureArgs {
    /// How many times a failed message is tried again [default: 0]
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,

    /// The wait before the first retry, doubled for each next one [default: 100]
    #[arg(long, value_name = "MS")]
    pub retry_backoff_ms: Option<u64>,

    /// The longest wait before a retry [default: 30000]
    #[arg(long, value_name = "MS")]
    pub retry_backoff_max_ms: Option<u64>,

    /// Where a message goes once its tries are used up; `{topic}` is its topic
    #[arg(long, value_name = "TOPIC")]
    pub dead_letter_topic: Option<String>,

    /// What happens to a payload that cannot be decoded [default: dead_letter with a dead-letter topic, else stop]
    #[arg(long, value_enum, value_name = "ACTION")]
    pub on_decode_error: Option<OnDecodeError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConsumerType {
    /// Messages one by one, to a per-message handler or a stream worker
    Stream,
    /// Messages in batches, to a batch worker
    Batch,
}

#[derive(Debug, Clone, Args)]
pub struct StartConsumers {
    /// The workers to run
    #[arg(long, num_args = 1.., required = true, value_name = "NAME")]
    pub consumer_worker: Vec<String>,

    /// A worker that stops stops the others too [default: kafka.consumer.stop_all_on_failure, else false]
    #[arg(long)]
    pub stop_all_on_failure: bool,

    #[command(flatten)]
    pub failure: FailureArgs,

    /// For the per-message workers among them
    #[command(flatten)]
    pub concurrency: ConcurrencyArgs,

    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ShowConfig {
    /// Only these workers [default: all]
    #[arg(long, num_args = 1.., value_name = "NAME")]
    pub consumer_worker: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ConsumerStat {
    /// The workers to show
    #[arg(long, num_args = 1.., required = true, value_name = "NAME")]
    pub consumer_worker: Vec<String>,

    /// Print JSON instead of a table (with --watch, one document per line and refresh)
    #[arg(long)]
    pub json: bool,

    /// Read again every SECONDS, showing how fast each lag shrinks, until SIGINT
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub watch: Option<u64>,
}

#[derive(Debug, Clone, Args)]
pub struct CreateTopics {
    /// Only these workers' topics and dead-letter topics [default: every worker's, with
    /// kafka.consumer.topics and every kafka.topics entry]
    #[arg(long, num_args = 1.., value_name = "NAME")]
    pub consumer_worker: Vec<String>,

    /// Show what would be created, without connecting to any broker
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Args)]
pub struct StartProducer {
    /// The topic; the topic prefix is added unless --exact-topic is given
    #[arg(long, value_name = "TOPIC")]
    pub topic: String,

    /// Send the topic name as it is, without the topic prefix
    #[arg(long)]
    pub exact_topic: bool,

    /// Send this one message [default: lines from stdin, or typed in on a terminal]
    #[arg(long, value_name = "DATA", conflicts_with = "interactive")]
    pub data: Option<String>,

    /// Type messages, one per line, until an empty line
    #[arg(short = 'i', long)]
    pub interactive: bool,

    /// The key of every message
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,

    /// A header for every message; repeat for more
    #[arg(long = "header", value_name = "NAME=VALUE", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,

    /// What a message is: `json` checks that each one is JSON; `bytes` sends it as it is
    #[arg(long, value_enum, default_value_t = PayloadFormat::Json)]
    pub serializer: PayloadFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PayloadFormat {
    /// Each message must be valid JSON; it is sent as typed
    Json,
    /// Each message is sent as it is
    Bytes,
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("`{text}` is not NAME=VALUE")),
    }
}
