//! What `list-workers` and `config` print, and the table layout other commands share.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{App, WorkerToStart};
use crate::config::client::ClientSettings;
use crate::config::secrets::shown;
use crate::config::{librdkafka_build, Source, Sourced, Subscription};
use crate::error::Error;
use crate::worker::handler::WorkerStyle;

impl App {
    pub(crate) fn list_workers(&self) -> Result<String, Error> {
        let workers = self.resolve_all(&[])?;
        if workers.is_empty() {
            return Ok("no workers are registered\n".into());
        }
        let rows: Vec<Vec<String>> = workers
            .iter()
            .map(|w| {
                let config = &w.config;
                vec![
                    config.name.clone(),
                    config.style.to_string(),
                    config.group.value.clone(),
                    display_list(&config.subscription_with_prefix()),
                    config.rust_path.to_owned(),
                ]
            })
            .collect();
        Ok(table(&["NAME", "STYLE", "GROUP", "TOPICS", "PATH"], &rows))
    }

    pub(crate) fn show_config(&self, names: &[String]) -> Result<String, Error> {
        let workers = self.resolve_all(names)?;
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
        let _ = writeln!(
            out,
            "give_up_after  {:<40} ({})",
            global.give_up_after.as_ref().map_or("never".to_owned(), |limit| format!("{} ms", limit.value.as_millis())),
            global.give_up_after.as_ref().map_or(Source::Default, |limit| limit.source)
        );
        let (version, features) = librdkafka_build();
        let _ = writeln!(out, "librdkafka     {version}, builtin.features {features}");
        let _ = writeln!(out, "\nproducer");
        let _ = writeln!(out, "  client settings");
        write_client_settings(&mut out, &ClientSettings::producer(&self.file.kafka).into_map());
        for WorkerToStart { config, .. } in &workers {
            let _ = writeln!(out, "\nworker {}", config.name);
            let _ = writeln!(out, "  function     {} ({})", config.rust_path, config.style);
            let _ = writeln!(out, "  group        {:<40} ({})", config.group.value, config.group.source);
            match &config.subscription {
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
            if !config.default_topics.is_empty()
                && !matches!(config.subscription.as_ref().map(|s| &s.value), Some(Subscription::Regex(_)))
            {
                let _ = writeln!(out, "  + defaults   {:<40} (config.json)", display_list(&config.default_topics));
            }
            match config.consumers() {
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
            let millis = |d: &std::time::Duration| format!("{} ms", d.as_millis());
            if let Some(batch) = &config.batch {
                let _ = writeln!(out, "  batches");
                let _ = writeln!(out, "    {:<32} {:<20} ({})", "take", batch.take.value, batch.take.source);
                let within = &batch.within;
                let _ = writeln!(out, "    {:<32} {:<20} ({})", "within_ms", millis(&within.value), within.source);
            }
            if config.style == WorkerStyle::PerMessage {
                let concurrency = &config.concurrency;
                let _ = writeln!(out, "  concurrency");
                let ordering = &concurrency.ordering;
                let _ =
                    writeln!(out, "    {:<32} {:<20} ({})", "ordering", ordering.value.to_string(), ordering.source);
                let limit = &concurrency.max_in_flight;
                let _ = writeln!(out, "    {:<32} {:<20} ({})", "max_in_flight", limit.value, limit.source);
            }
            let failure = &config.failure;
            let _ = writeln!(out, "  on failure");
            let _ = writeln!(out, "    {:<32} {:<20} ({})", "retries", failure.retries.value, failure.retries.source);
            let backoff = &failure.retry_backoff;
            let _ = writeln!(out, "    {:<32} {:<20} ({})", "retry_backoff_ms", millis(&backoff.value), backoff.source);
            let max = &failure.retry_backoff_max;
            let _ = writeln!(out, "    {:<32} {:<20} ({})", "retry_backoff_max_ms", millis(&max.value), max.source);
            match &failure.dead_letter_topic {
                Some(topic) => {
                    let _ = writeln!(out, "    {:<32} {:<20} ({})", "dead_letter_topic", topic.value, topic.source);
                }
                None => {
                    let _ = writeln!(out, "    {:<32} {:<20} (default)", "dead_letter_topic", "none: stop the worker");
                }
            }
            let action = &failure.on_decode_error;
            let _ = writeln!(out, "    {:<32} {:<20} ({})", "on_decode_error", action.value.to_string(), action.source);
            let _ = writeln!(out, "  client settings");
            write_client_settings(&mut out, &config.client_settings);
        }
        let plan = self.topics_plan(names)?;
        let _ = writeln!(out, "\ntopics that create-topics creates");
        let count = |n: Option<i32>| n.map_or("default".to_owned(), |n| n.to_string());
        for topic in &plan.topics {
            let config: Vec<String> = topic.config.iter().map(|(key, value)| format!("{key}={value}")).collect();
            let _ = writeln!(
                out,
                "  {:<32} partitions {:<8} replication {:<8} config {:<20} for {}",
                topic.name,
                count(topic.partitions),
                count(topic.replication_factor),
                display_list(&config),
                topic.needed_by.join(", ")
            );
        }
        for reason in &plan.skipped {
            let _ = writeln!(out, "  not created: {reason}");
        }
        Ok(out)
    }
}

/// One line per librdkafka setting, secrets masked, with the layer each came from.
fn write_client_settings(out: &mut String, settings: &BTreeMap<String, Sourced<String>>) {
    if settings.is_empty() {
        let _ = writeln!(out, "    {:<32} {:<20} (default)", "none", "librdkafka's defaults");
    }
    for (key, value) in settings {
        let _ = writeln!(out, "    {key:<32} {:<20} ({})", shown(key, &value.value), value.source);
    }
}

pub(super) fn display_list(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(", ")
    }
}

/// Left-aligned columns, two spaces apart, without trailing spaces.
pub(super) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (cell, width) in cells.zip(&widths) {
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
