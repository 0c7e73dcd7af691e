//! The app: from a parsed command line to workers running, or to the listing asked for. The
//! command line (`cli`), the process entry point (`entry`), the listings (`listing`),
//! `start-producer` (`start_producer`), `consumer-stat` (`consumer_stat`), `create-topics`
//! (`create_topics`), the clients of those two (`command_client`) and shutdown (`shutdown`).

pub mod cli;
mod command_client;
pub(crate) mod consumer_stat;
mod create_topics;
pub(crate) mod entry;
mod listing;
pub(crate) mod shutdown;
mod start_producer;

use std::sync::Arc;

use clap::Parser;

use self::cli::{Arguments, Command, ConcurrencyArgs, ConsumerType, FailureArgs, HttpArgs, StartConsumer};
use self::consumer_stat::consumer_stat;
use self::consumer_stat::GroupOffsetsReport;
use self::create_topics::create_topics;
use self::shutdown::Shutdown;
use self::start_producer::start_producer;
use crate::config::client::{client_config, ClientSettings};
use crate::config::{
    catalog, effective_settings, librdkafka_build, merge_worker_config, redact, BatchKeys, CatalogEntry, CliLayer,
    ConcurrencyKeys, ConfigFile, EnvLayer, FailureKeys, GlobalSettings, WorkerConfig, WorkerOverrides,
};
use crate::dispatch::runner::{run_consumers, ConsumerJob};
use crate::embedded::EmbeddedCluster;
use crate::error::Error;
use crate::ops::http::HttpSettings;
use crate::produce::producer::producer;
use crate::worker::context::WorkerContext;
use crate::worker::handler::{Worker, WorkerStyle};
use crate::worker::registry::{self, WorkerRegistration};

/// Parses `args` (the first one is the program name) and runs the command until it ends or
/// `shutdown` stops it. This is what `#[kafka_main]` runs, minus signal handling; use it to
/// embed the runtime or to test workers in-process.
pub async fn run_with_args<I, T>(args: I, shutdown: Shutdown) -> Result<(), Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let arguments = Arguments::try_parse_from(args).map_err(|err| Error::Config(err.to_string()))?;
    run(arguments, shutdown).await
}

/// Runs a parsed command line.
pub async fn run(arguments: Arguments, shutdown: Shutdown) -> Result<(), Error> {
    App::load(&arguments)?.execute(&arguments, shutdown).await
}

fn overrides(start: &StartConsumer) -> WorkerOverrides {
    WorkerOverrides {
        topics: start.topics.clone(),
        regex_topic: start.regex_topic.clone(),
        group: start.consumer_group.clone(),
        failure: failure_keys(&start.failure),
        batch: BatchKeys {
            take: start.take.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
            within_ms: start.within.map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)),
        },
        concurrency: concurrency_keys(&start.concurrency),
        for_every_worker: false,
    }
}

fn concurrency_keys(args: &ConcurrencyArgs) -> ConcurrencyKeys {
    ConcurrencyKeys {
        ordering: args.ordering.map(|o| o.to_string()),
        max_in_flight: args.max_in_flight.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
    }
}

/// `--consumer-type` must fit the worker's style, as the original's `--consumer-type batch`
/// needed a batch consumer.
fn check_consumer_type(start: &StartConsumer, worker: &WorkerToStart) -> Result<(), Error> {
    let style = worker.config.style;
    let fits = match start.consumer_type {
        None => true,
        Some(ConsumerType::Batch) => style == WorkerStyle::Batch,
        Some(ConsumerType::Stream) => style != WorkerStyle::Batch,
    };
    if fits {
        return Ok(());
    }
    let name = &worker.config.name;
    Err(Error::Config(match style {
        WorkerStyle::Batch => format!(
            "--consumer-type stream: worker `{name}` is a batch worker (its handler takes a batch); leave \
             --consumer-type out or pass --consumer-type batch"
        ),
        _ => format!(
            "--consumer-type batch: worker `{name}` is a {style} worker; a batch worker's handler takes `Batch`, \
             `Vec<Message>` or `Vec<Json<T>>`; leave --consumer-type out to run it as it is"
        ),
    }))
}

fn failure_keys(args: &FailureArgs) -> FailureKeys {
    let millis = |ms: Option<u64>| ms.map(|ms| i64::try_from(ms).unwrap_or(i64::MAX));
    FailureKeys {
        retries: args.retries.map(i64::from),
        retry_backoff_ms: millis(args.retry_backoff_ms),
        retry_backoff_max_ms: millis(args.retry_backoff_max_ms),
        dead_letter_topic: args.dead_letter_topic.clone(),
        on_decode_error: args.on_decode_error.map(|action| action.to_string()),
    }
}

/// What a command runs with: the registered workers and the merged configuration, loaded
/// once per command.
pub(crate) struct App {
    registered: Vec<&'static WorkerRegistration>,
    pub(crate) file: ConfigFile,
    pub(crate) global: GlobalSettings,
}

/// A worker ready to start: its merged configuration and its built function.
pub(crate) struct WorkerToStart {
    pub(crate) config: WorkerConfig,
    pub(crate) worker: Arc<Worker>,
}

impl App {
    pub(crate) fn load(arguments: &Arguments) -> Result<Self, Error> {
        let registered = registry::registered()?;
        let file = ConfigFile::load(arguments.config.as_deref())?;
        let cli = CliLayer {
            brokers: arguments.brokers.clone(),
            topic_prefix: arguments.topic_prefix.clone(),
            drain_timeout_ms: arguments.drain_timeout_ms,
            give_up_after_ms: arguments.give_up_after_ms,
        };
        let global = GlobalSettings::merge(&file, &EnvLayer::from_process(), &cli)?;
        let (version, features) = librdkafka_build();
        tracing::debug!("librdkafka {version}, builtin.features {features}");
        let app = Self { registered, file, global };
        for warning in app.catalog().1 {
            tracing::warn!("{warning}");
        }
        app.configure_producer(app.global.brokers.as_ref().map(|b| b.value.join(",")));
        Ok(app)
    }

    /// Tells the shared producer what the configuration says, for when the app does not
    /// set it up itself.
    fn configure_producer(&self, brokers: Option<String>) {
        let settings = ClientSettings::producer(&self.file.kafka)
            .into_map()
            .into_iter()
            .map(|(key, value)| (key, value.value))
            .collect();
        producer().configure_defaults(brokers, settings, self.global.topic_prefix.value.clone());
    }

    /// Runs the command.
    pub(crate) async fn execute(&self, arguments: &Arguments, shutdown: Shutdown) -> Result<(), Error> {
        match &arguments.command {
            Command::ListWorkers => {
                print!("{}", self.list_workers()?);
                Ok(())
            }
            Command::Config(show) => {
                print!("{}", redact(&self.show_config(&show.consumer_worker)?));
                Ok(())
            }
            Command::StartConsumer(start) => {
                let worker = self.resolve(&start.consumer_worker, &overrides(start))?;
                check_consumer_type(start, &worker)?;
                self.start(vec![worker], arguments, shutdown, true, &start.http).await
            }
            Command::StartConsumers(start) => {
                let overrides = WorkerOverrides {
                    failure: failure_keys(&start.failure),
                    concurrency: concurrency_keys(&start.concurrency),
                    for_every_worker: true,
                    ..Default::default()
                };
                let workers = start
                    .consumer_worker
                    .iter()
                    .map(|name| self.resolve(name, &overrides))
                    .collect::<Result<Vec<_>, _>>()?;
                let stop_all = start.stop_all_on_failure || self.file.kafka.consumer.stop_all_on_failure == Some(true);
                self.start(workers, arguments, shutdown, stop_all, &start.http).await
            }
            Command::StartProducer(command) => {
                let brokers = self.brokers_for("start-producer")?;
                shutdown.listen_for_signals_if_enabled(self.global.drain_timeout.value);
                start_producer(
                    command,
                    &self.global.topic_prefix.value,
                    shutdown,
                    self.global.drain_timeout.value,
                    &brokers,
                )
                .await
            }
            Command::ConsumerStat(command) => consumer_stat(self, command, shutdown).await,
            Command::CreateTopics(command) => create_topics(self, command).await,
        }
    }

    /// The configured brokers, comma-separated, for a command that needs a real broker (the
    /// embedded cluster starts empty).
    fn brokers_for(&self, command: &str) -> Result<String, Error> {
        match &self.global.brokers {
            Some(brokers) => Ok(brokers.value.join(",")),
            None => Err(Error::Config(format!(
                "{command} needs a broker: set kafka.brokers in config.json, KAFKA_BROKERS or --brokers"
            ))),
        }
    }

    /// The HTTP server's settings: `--http`, else `kafka.http.listen`; none when neither.
    fn http_settings(&self, http: &HttpArgs) -> Option<HttpSettings> {
        let section = &self.file.kafka.http;
        let (listen, listen_source) = match (&http.listen, &section.listen) {
            (Some(listen), _) => (listen.clone(), "--http".to_owned()),
            (None, Some(listen)) => (listen.clone(), format!("kafka.http.listen in {}", self.file.display_name())),
            (None, None) => return None,
        };
        let token = std::env::var("KAFKA_HTTP_TOKEN").ok().filter(|t| !t.is_empty()).or_else(|| section.token.clone());
        Some(HttpSettings {
            listen,
            listen_source,
            token,
            produce: section.produce.unwrap_or(false),
            group_offsets: None,
            max_body_bytes: section.max_body_bytes.unwrap_or(crate::ops::http::DEFAULT_MAX_BODY_BYTES),
        })
    }

    fn catalog(&self) -> (Vec<CatalogEntry<'_>>, Vec<String>) {
        catalog(&self.registered, &self.file)
    }

    fn find(&self, name: &str) -> Result<CatalogEntry<'_>, Error> {
        let (catalog, _) = self.catalog();
        if let Some(found) = catalog.iter().find(|entry| entry.name == name) {
            return Ok(*found);
        }
        match self.file.kafka.consumer.workers.iter().find(|entry| entry.name == name) {
            Some(entry) => Err(self.entry_without_function(name, entry.path.as_deref())),
            None => Err(Error::UnknownWorker {
                name: name.to_owned(),
                registered: catalog.iter().map(|entry| entry.name.to_owned()).collect(),
            }),
        }
    }

    /// A config.json entry named `name` whose `path` points at no registered function: says
    /// so, with the path and the functions there are.
    fn entry_without_function(&self, name: &str, path: Option<&str>) -> Error {
        let mut functions: Vec<String> =
            self.registered.iter().map(|r| format!("{} (worker `{}`)", r.rust_path, r.name)).collect();
        functions.sort();
        let functions = if functions.is_empty() {
            "none is registered: annotate an async fn with #[kafka_worker] in a crate that the binary links".to_owned()
        } else {
            format!("the registered functions are {}", functions.join(", "))
        };
        let what = match path {
            Some(path) => format!("its `path` {path:?} matches no registered function"),
            None => "it has no `path`, and no registered worker has its name".to_owned(),
        };
        Error::Config(format!(
            "worker `{name}`: its entry in kafka.consumer.workers of {} cannot start: {what}; {functions}. Set \
             `path` to one of them (`crate::module::function` or with dots; the crate name may be left out)",
            self.file.display_name()
        ))
    }

    fn resolve(&self, name: &str, overrides: &WorkerOverrides) -> Result<WorkerToStart, Error> {
        let entry = self.find(name)?;
        let worker = (entry.registration.build)();
        let config = merge_worker_config(&entry, worker.style, &self.file, &self.global, overrides)?;
        Ok(WorkerToStart { config, worker: Arc::new(worker) })
    }

    /// The named workers, or every startable one when `names` is empty.
    pub(crate) fn resolve_all(&self, names: &[String]) -> Result<Vec<WorkerToStart>, Error> {
        if names.is_empty() {
            let (catalog, _) = self.catalog();
            catalog.iter().map(|entry| self.resolve(entry.name, &WorkerOverrides::default())).collect()
        } else {
            names.iter().map(|name| self.resolve(name, &WorkerOverrides::default())).collect()
        }
    }

    /// Runs the workers until shutdown. With `stop_all`, the first that fails stops the others.
    async fn start(
        &self,
        workers: Vec<WorkerToStart>,
        arguments: &Arguments,
        shutdown: Shutdown,
        stop_all: bool,
        http: &HttpArgs,
    ) -> Result<(), Error> {
        let http = self.http_settings(http);
        let mut units = Vec::new();
        let mut configs = Vec::new();
        for WorkerToStart { config, worker } in workers {
            let config = Arc::new(config);
            configs.push(Arc::clone(&config));
            let consumers = config.consumers()?;
            let several = consumers.len() > 1;
            for spec in consumers {
                // A worker with one consumer per topic names the group in its logs.
                let label: Arc<str> = if several {
                    format!("{}[{}]", config.name, spec.group).into()
                } else {
                    config.name.as_str().into()
                };
                units.push((Arc::clone(&config), Arc::clone(&worker), spec, label));
            }
        }
        let (embedded, brokers): (Option<EmbeddedCluster>, Arc<str>) = match &self.global.brokers {
            Some(brokers) => (None, brokers.value.join(",").into()),
            None => {
                let mut topics: Vec<String> = units
                    .iter()
                    .flat_map(|(_, _, spec, _)| spec.subscription.iter().filter(|t| !t.starts_with('^')).cloned())
                    .collect();
                topics.sort();
                topics.dedup();
                let cluster = EmbeddedCluster::start(topics)?;
                let bootstrap = cluster.bootstrap_servers().into();
                (Some(cluster), bootstrap)
            }
        };
        shutdown.listen_for_signals_if_enabled(self.global.drain_timeout.value);
        let arguments = Arc::new(arguments.clone());
        let settings = Arc::new(effective_settings(&self.file, &self.global));
        let jobs = units
            .into_iter()
            .map(|(config, worker, spec, label)| {
                let client_settings =
                    config.client_settings.iter().map(|(key, value)| (key.as_str(), value.value.as_str()));
                let mut client_config = client_config(&brokers, client_settings);
                client_config.set("group.id", &spec.group);
                if http.is_some() && client_config.get("statistics.interval.ms").is_none() {
                    // The lag in /metrics and /stats. Not by default otherwise: librdkafka
                    // delivers them on the consumer's event queue, which a worker with
                    // messages in flight serves only once they are done (see `concurrent`).
                    client_config.set("statistics.interval.ms", crate::ops::metrics::STATISTICS_INTERVAL_MS);
                }
                let ctx = WorkerContext::new(
                    Arc::clone(&config),
                    spec.group.clone(),
                    spec.subscription.clone(),
                    Arc::clone(&arguments),
                    Arc::clone(&settings),
                );
                ConsumerJob {
                    worker,
                    label,
                    client_config,
                    subscription: spec.subscription,
                    brokers: Arc::clone(&brokers),
                    give_up_after: self.global.give_up_after.as_ref().map(|limit| limit.value),
                    ctx,
                }
            })
            .collect();
        if let Some(cluster) = &embedded {
            self.configure_producer(Some(cluster.bootstrap_servers().to_owned()));
        }
        // Started before the workers: a port taken is an error before anything runs.
        let server = match http {
            Some(mut settings) => {
                let workers: Vec<&WorkerConfig> = configs.iter().map(|config| &**config).collect();
                settings.group_offsets = Some(Arc::new(GroupOffsetsReport::new(&workers, &brokers)?));
                Some(crate::ops::http::start(settings).await?)
            }
            None => None,
        };
        let result = run_consumers(jobs, shutdown.clone(), self.global.drain_timeout.value, stop_all).await;
        // What workers sent is delivered (or reported) before the process ends, within the
        // drain timeout, and not waited for after a second signal.
        let lost = tokio::select! {
            lost = producer().flush(self.global.drain_timeout.value) => lost,
            _ = shutdown.aborted() => producer().queued() as u64,
        };
        drop(server);
        drop(embedded);
        match (result, lost) {
            (result, 0) => result,
            (Err(Error::WorkersFailed(mut failures)), lost) => {
                failures.push(format!("the producer could not deliver {lost} messages"));
                Err(Error::WorkersFailed(failures))
            }
            (_, lost) => Err(Error::NotDelivered(format!("the producer could not deliver {lost} messages"))),
        }
    }
}
