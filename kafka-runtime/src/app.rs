//! The commands: from a parsed command line to workers running, or to the listing asked for.

use std::fmt::Write as _;
use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use rdkafka::config::ClientConfig;

use crate::cli::{Arguments, Command, ConsumerType, StartConsumer};
use crate::config::{
    catalog, effective_settings, is_secret, plan_worker, CatalogEntry, CliLayer, ConfigFile, EnvLayer, GlobalSettings,
    Subscription, WorkerOverrides, WorkerPlan,
};
use crate::context::WorkerContext;
use crate::embedded::EmbeddedCluster;
use crate::error::{Error, WorkerError};
use crate::handler::Worker;
use crate::produce::start_producer;
use crate::producer::producer;
use crate::registry::{self, WorkerRegistration};
use crate::runner::{run_consumers, PlannedConsumer};
use crate::shutdown::Shutdown;

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
    Loaded::new(&arguments)?.execute(&arguments, shutdown).await
}

impl Loaded {
    async fn execute(&self, arguments: &Arguments, shutdown: Shutdown) -> Result<(), Error> {
        let loaded = self;
        match &arguments.command {
            Command::ListWorkers => {
                print!("{}", loaded.list_workers()?);
                Ok(())
            }
            Command::Config(show) => {
                print!("{}", loaded.show_config(&show.consumer_worker)?);
                Ok(())
            }
            Command::StartConsumer(start) => {
                if start.consumer_type == ConsumerType::Batch {
                    return Err(Error::Unsupported(
                        "--consumer-type batch is not supported yet; use --consumer-type stream (the default), \
                     which runs per-message handlers and stream workers alike"
                            .into(),
                    ));
                }
                let plan = loaded.plan(&start.consumer_worker, &overrides(start))?;
                loaded.start(vec![plan], arguments, shutdown).await
            }
            Command::StartConsumers(start) => {
                let plans = start
                    .consumer_worker
                    .iter()
                    .map(|name| loaded.plan(name, &WorkerOverrides::default()))
                    .collect::<Result<Vec<_>, _>>()?;
                loaded.start(plans, arguments, shutdown).await
            }
            Command::StartProducer(command) => {
                if loaded.global.brokers.is_none() {
                    return Err(Error::Config(
                        "start-producer needs a broker: set kafka.brokers in config.json, KAFKA_BROKERS or --brokers"
                            .into(),
                    ));
                }
                shutdown.listen_for_signals_if_enabled(loaded.global.drain_timeout.value);
                start_producer(command, shutdown, loaded.global.drain_timeout.value).await
            }
        }
    }
}

fn overrides(start: &StartConsumer) -> WorkerOverrides {
    WorkerOverrides {
        topics: start.topics.clone(),
        regex_topic: start.regex_topic.clone(),
        group: start.consumer_group.clone(),
    }
}

/// The registry and the configuration, loaded once per command.
struct Loaded {
    registered: Vec<&'static WorkerRegistration>,
    file: ConfigFile,
    global: GlobalSettings,
}

/// A worker ready to start: its plan and its built function.
struct Planned {
    plan: WorkerPlan,
    worker: Arc<Worker>,
}

impl Loaded {
    fn new(arguments: &Arguments) -> Result<Self, Error> {
        let registered = registry::registered()?;
        let file = ConfigFile::load(arguments.config.as_deref())?;
        let cli = CliLayer {
            brokers: arguments.brokers.clone(),
            topic_prefix: arguments.topic_prefix.clone(),
            drain_timeout_ms: arguments.drain_timeout_ms,
        };
        let global = GlobalSettings::merge(&file, &EnvLayer::from_process(), &cli)?;
        let loaded = Self { registered, file, global };
        for warning in loaded.catalog().1 {
            tracing::warn!("{warning}");
        }
        loaded.configure_producer(loaded.global.brokers.as_ref().map(|b| b.value.join(",")));
        Ok(loaded)
    }

    /// Tells the shared producer what the configuration says, for when the app does not
    /// set it up itself.
    fn configure_producer(&self, brokers: Option<String>) {
        let settings = self.file.kafka.producer.iter().map(|(key, value)| (key.clone(), value.0.clone())).collect();
        producer().configure_defaults(brokers, settings, self.global.topic_prefix.value.clone());
    }

    fn catalog(&self) -> (Vec<CatalogEntry<'_>>, Vec<String>) {
        catalog(&self.registered, &self.file)
    }

    fn find(&self, name: &str) -> Result<CatalogEntry<'_>, Error> {
        let (catalog, _) = self.catalog();
        let found = catalog.iter().find(|entry| entry.name == name).copied();
        found.ok_or_else(|| Error::UnknownWorker {
            name: name.to_owned(),
            registered: catalog.iter().map(|entry| entry.name.to_owned()).collect(),
        })
    }

    fn plan(&self, name: &str, overrides: &WorkerOverrides) -> Result<Planned, Error> {
        let entry = self.find(name)?;
        let worker = (entry.registration.build)();
        let plan = plan_worker(&entry, worker.style, &self.file, &self.global, overrides);
        Ok(Planned { plan, worker: Arc::new(worker) })
    }

    fn all_plans(&self, names: &[String]) -> Result<Vec<Planned>, Error> {
        if names.is_empty() {
            let (catalog, _) = self.catalog();
            catalog.iter().map(|entry| self.plan(entry.name, &WorkerOverrides::default())).collect()
        } else {
            names.iter().map(|name| self.plan(name, &WorkerOverrides::default())).collect()
        }
    }

    fn list_workers(&self) -> Result<String, Error> {
        let plans = self.all_plans(&[])?;
        if plans.is_empty() {
            return Ok("no workers are registered\n".into());
        }
        let rows: Vec<[String; 5]> = plans
            .iter()
            .map(|p| {
                let plan = &p.plan;
                [
                    plan.name.clone(),
                    plan.style.to_string(),
                    plan.group.value.clone(),
                    display_list(&plan.subscription_with_prefix()),
                    plan.rust_path.to_owned(),
                ]
            })
            .collect();
        Ok(table(["NAME", "STYLE", "GROUP", "TOPICS", "PATH"], &rows))
    }

    fn show_config(&self, names: &[String]) -> Result<String, Error> {
        let plans = self.all_plans(names)?;
        let global = &self.global;
        let mut out = String::new();
        let source = match &self.file.path {
            Some(path) => path.display().to_string(),
            None => "none (no -c/--config, and no config.json in the working directory)".into(),
        };
        let _ = writeln!(out, "config file: {source}");
        let brokers = match &global.brokers {
            Some(brokers) => format!("{:<40} ({})", brokers.value.join(","), brokers.source),
            None => "none: the embedded mock cluster is started            (default)".into(),
        };
        let _ = writeln!(out, "brokers        {brokers}");
        let _ = writeln!(
            out,
            "topic_prefix   {:<40} ({})",
            format!("{:?}", global.topic_prefix.value),
            global.topic_prefix.source
        );
        let _ = writeln!(
            out,
            "drain_timeout  {:<40} ({})",
            format!("{} ms", global.drain_timeout.value.as_millis()),
            global.drain_timeout.source
        );
        for Planned { plan, .. } in &plans {
            let _ = writeln!(out, "\nworker {}", plan.name);
            let _ = writeln!(out, "  function     {} ({})", plan.rust_path, plan.style);
            let _ = writeln!(out, "  group        {:<40} ({})", plan.group.value, plan.group.source);
            match &plan.subscription {
                Some(sub) => {
                    let what = match &sub.value {
                        Subscription::Topics(topics) => format!("topics {}", display_list(topics)),
                        Subscription::Regex(regex) => format!("regex_topic {regex}"),
                    };
                    let _ = writeln!(out, "  subscribe    {what:<40} ({})", sub.source);
                }
                None => {
                    let _ = writeln!(out, "  subscribe    {:<40} (default)", "nothing of its own");
                }
            }
            if !plan.default_topics.is_empty()
                && !matches!(plan.subscription.as_ref().map(|s| &s.value), Some(Subscription::Regex(_)))
            {
                let _ = writeln!(out, "  + defaults   {:<40} (config.json)", display_list(&plan.default_topics));
            }
            match plan.consumers() {
                Ok(units) => {
                    for unit in units {
                        let _ = writeln!(
                            out,
                            "  consumer     group {} <- {}",
                            unit.group,
                            display_list(&unit.subscription)
                        );
                    }
                }
                Err(err) => {
                    let _ = writeln!(out, "  consumer     cannot start: {err}");
                }
            }
            let _ = writeln!(out, "  client settings");
            for (key, value) in &plan.client_settings {
                let shown = if is_secret(key) { "*****" } else { value.value.as_str() };
                let _ = writeln!(out, "    {key:<32} {shown:<20} ({})", value.source);
            }
        }
        Ok(out)
    }

    async fn start(&self, planned: Vec<Planned>, arguments: &Arguments, shutdown: Shutdown) -> Result<(), Error> {
        let mut units = Vec::new();
        for Planned { plan, worker } in planned {
            let plan = Arc::new(plan);
            let consumers = plan.consumers()?;
            let several = consumers.len() > 1;
            for unit in consumers {
                // A worker with one consumer per topic names the group in its logs.
                let label: Arc<str> =
                    if several { format!("{}[{}]", plan.name, unit.group).into() } else { plan.name.as_str().into() };
                units.push((Arc::clone(&plan), Arc::clone(&worker), unit, label));
            }
        }
        let embedded = match &self.global.brokers {
            Some(_) => None,
            None => {
                let mut topics: Vec<String> = units
                    .iter()
                    .flat_map(|(_, _, unit, _)| unit.subscription.iter().filter(|t| !t.starts_with('^')).cloned())
                    .collect();
                topics.sort();
                topics.dedup();
                Some(EmbeddedCluster::start(topics)?)
            }
        };
        let brokers: Arc<str> = match (&self.global.brokers, &embedded) {
            (Some(brokers), _) => brokers.value.join(",").into(),
            (None, Some(cluster)) => cluster.bootstrap_servers().into(),
            (None, None) => unreachable!("the embedded cluster starts when no broker is configured"),
        };
        shutdown.listen_for_signals_if_enabled(self.global.drain_timeout.value);
        let arguments = Arc::new(arguments.clone());
        let settings = Arc::new(effective_settings(&self.file, &self.global));
        let consumers = units
            .into_iter()
            .map(|(plan, worker, unit, label)| {
                let mut client_config = ClientConfig::new();
                for (key, value) in &plan.client_settings {
                    client_config.set(key, &value.value);
                }
                client_config.set("bootstrap.servers", &*brokers).set("group.id", &unit.group);
                let ctx = WorkerContext::new(
                    Arc::clone(&plan),
                    unit.group.clone(),
                    unit.subscription.clone(),
                    Arc::clone(&arguments),
                    Arc::clone(&settings),
                );
                PlannedConsumer {
                    worker,
                    label,
                    client_config,
                    subscription: unit.subscription,
                    brokers: Arc::clone(&brokers),
                    ctx,
                }
            })
            .collect();
        if let Some(cluster) = &embedded {
            self.configure_producer(Some(cluster.bootstrap_servers().to_owned()));
        }
        let result = run_consumers(consumers, shutdown, self.global.drain_timeout.value).await;
        // What workers sent is delivered (or reported) before the process ends.
        let lost = producer().flush(self.global.drain_timeout.value).await;
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

fn display_list(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(", ")
    }
}

fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (cell, width) in cells.zip(widths) {
            let _ = write!(text, "{cell:<width$}  ");
        }
        let _ = writeln!(out, "{}", text.trim_end());
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// What the body of `#[kafka_main]` may return.
pub trait SetupResult {
    fn into_setup_result(self) -> Result<(), WorkerError>;
}

impl SetupResult for () {
    fn into_setup_result(self) -> Result<(), WorkerError> {
        Ok(())
    }
}

impl<E: Into<WorkerError>> SetupResult for Result<(), E> {
    fn into_setup_result(self) -> Result<(), WorkerError> {
        self.map_err(Into::into)
    }
}

/// The process entry point `#[kafka_main]` generates: parse, set up logs, run the app's
/// setup (the body of its `main`), then the command; exit non-zero with a one-line reason
/// on error.
#[doc(hidden)]
pub fn run_main<F, R>(setup: F) -> ExitCode
where
    F: Future<Output = R>,
    R: SetupResult,
{
    let arguments = Arguments::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        // The configuration is loaded first, so the setup can use the shared producer.
        let loaded = Loaded::new(&arguments)?;
        setup.await.into_setup_result().map_err(|err| Error::Config(format!("the app's setup failed: {err}")))?;
        loaded.execute(&arguments, Shutdown::on_signals()).await
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ =
        tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter).with_target(false).try_init();
}
