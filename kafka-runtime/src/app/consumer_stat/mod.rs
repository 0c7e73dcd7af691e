//! `consumer-stat`: for each named worker, per group, topic and partition, the group's
//! committed offset, the log start and end, and the lag, with each worker's total; once, or
//! again every `--watch` seconds until SIGINT. Reading (`read`) and showing (`render`) are
//! apart.

mod read;
mod render;

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use futures_util::future::try_join_all;

use self::read::GroupReader;
use self::render::{json_of, table_of, Snapshot, WorkerOffsets};
use super::cli::ConsumerStat;
use super::shutdown::Shutdown;
use super::App;
use crate::config::WorkerOverrides;
use crate::error::Error;

pub(super) async fn consumer_stat(app: &App, command: &ConsumerStat, shutdown: Shutdown) -> Result<(), Error> {
    let mut names: Vec<String> = Vec::new();
    let mut workers = Vec::new();
    for name in &command.consumer_worker {
        if !names.contains(name) {
            workers.push(app.resolve(name, &WorkerOverrides::default())?);
            names.push(name.clone());
        }
    }
    let brokers = app.brokers_for("consumer-stat")?;
    let mut readers = Vec::new();
    for worker in &workers {
        for spec in worker.config.consumers()? {
            readers.push(GroupReader::new(&worker.config, &spec, &brokers)?);
        }
    }
    shutdown.stop_on_signals_if_enabled();
    let clear_screen = command.watch.is_some() && !command.json && std::io::stdout().is_terminal();
    let mut previous: Option<Snapshot> = None;
    loop {
        let snapshot = tokio::select! {
            snapshot = read_all(&names, &readers) => snapshot?,
            _ = shutdown.begun() => return Ok(()),
        };
        let text = match (command.json, command.watch.is_some()) {
            // One document per line, so that a script can read each refresh as it comes.
            (true, true) => format!("{}\n", json_of(&snapshot, previous.as_ref())),
            (true, false) => format!("{:#}\n", json_of(&snapshot, previous.as_ref())),
            (false, watching) => table_of(&snapshot, previous.as_ref(), watching),
        };
        let separate = previous.is_some() && !command.json;
        match show(&text, clear_screen, separate) {
            Ok(()) => {}
            // The reader went away (`| head`): nothing more to show.
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(err) => return Err(Error::Config(format!("consumer-stat: cannot write to stdout: {err}"))),
        }
        let Some(every) = command.watch else { return Ok(()) };
        previous = Some(snapshot);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(every)) => {}
            _ = shutdown.begun() => return Ok(()),
        }
    }
}

/// What `consumer-stat --json` shows for the workers a process runs, read again at each
/// `GET /stats`.
pub(crate) struct GroupOffsetsReport {
    names: Vec<String>,
    readers: Vec<GroupReader>,
}

impl GroupOffsetsReport {
    /// Readers for `workers`, with their own clients (they never join the groups).
    pub(crate) fn new(workers: &[&crate::config::WorkerConfig], brokers: &str) -> Result<Self, Error> {
        let mut names: Vec<String> = Vec::new();
        let mut readers = Vec::new();
        for worker in workers {
            if names.contains(&worker.name) {
                continue;
            }
            names.push(worker.name.clone());
            for spec in worker.consumers()? {
                readers.push(GroupReader::new(worker, &spec, brokers)?);
            }
        }
        Ok(Self { names, readers })
    }

    /// The `workers` array of `consumer-stat --json`, each entry by worker name.
    pub(crate) async fn by_worker(&self) -> Result<Vec<serde_json::Value>, Error> {
        let snapshot = read_all(&self.names, &self.readers).await?;
        match json_of(&snapshot, None) {
            serde_json::Value::Object(mut document) => match document.remove("workers") {
                Some(serde_json::Value::Array(workers)) => Ok(workers),
                _ => Ok(Vec::new()),
            },
            _ => Ok(Vec::new()),
        }
    }
}

/// Writes one reading, after clearing the terminal or after a blank line.
fn show(text: &str, clear_screen: bool, separate: bool) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    if clear_screen {
        write!(stdout, "\x1b[2J\x1b[H")?;
    } else if separate {
        writeln!(stdout)?;
    }
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}

/// Reads every consumer at once; groups them by worker, in the order of `workers`.
async fn read_all(workers: &[String], readers: &[GroupReader]) -> Result<Snapshot, Error> {
    let readings = try_join_all(readers.iter().map(GroupReader::read)).await?;
    let at = Instant::now();
    let mut by_worker: Vec<WorkerOffsets> = Vec::new();
    for name in workers {
        let groups = readers
            .iter()
            .zip(&readings)
            .filter(|(reader, _)| &reader.worker == name)
            .map(|(reader, offsets)| (reader.group.clone(), offsets.clone()))
            .collect();
        by_worker.push(WorkerOffsets { worker: name.clone(), groups });
    }
    Ok(Snapshot { at, workers: by_worker })
}
