//! `start-producer`: sends one message, typed-in lines, or every line of stdin through the
//! shared producer, and reports what was delivered.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::cli::{PayloadFormat, StartProducer};
use super::shutdown::Shutdown;
use crate::config::redact;
use crate::error::Error;
use crate::produce::outgoing::Topic;
use crate::produce::producer::{producer, DeliveryReport, SendError};

/// Messages in flight at once in bulk mode; librdkafka batches them.
const BULK_IN_FLIGHT: usize = 10_000;

/// What a run did, for the summary and the exit code.
#[derive(Default)]
struct Tally {
    delivered: u64,
    failed: u64,
    invalid: u64,
}

impl Tally {
    fn outcome(&self) -> Result<(), Error> {
        let mut problems = Vec::new();
        if self.failed > 0 {
            problems.push(match self.failed {
                1 => "1 message was not delivered".to_owned(),
                n => format!("{n} messages were not delivered"),
            });
        }
        if self.invalid > 0 {
            problems.push(match self.invalid {
                1 => "1 line was not sent because it is not valid JSON".to_owned(),
                n => format!("{n} lines were not sent because they are not valid JSON"),
            });
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::NotDelivered(problems.join("; ")))
        }
    }
}

pub(crate) async fn start_producer(
    command: &StartProducer,
    topic_prefix: &str,
    shutdown: Shutdown,
    drain_timeout: Duration,
    brokers: &str,
) -> Result<(), Error> {
    let producer = producer();
    let until = Deadline { drain_timeout, shutdown: &shutdown, brokers };
    if let Some(data) = &command.data {
        check(command, data).map_err(|reason| Error::Config(format!("--data: {reason}")))?;
        let report = send_within(command, data.as_bytes(), &until)
            .await
            .map_err(|why| Error::NotDelivered(format!("not delivered: {why}")))?;
        println!("{report}");
        return Ok(());
    }
    let stdin = tokio::io::stdin();
    let tally = if command.interactive || std::io::stdin().is_terminal() {
        interactive(command, stdin, &until).await
    } else {
        bulk(command, topic_prefix, stdin, &until).await
    };
    let lost = tokio::select! {
        lost = producer.flush(drain_timeout) => lost,
        _ = shutdown.aborted() => producer.give_up().await,
    };
    Tally { failed: tally.failed + lost, ..tally }.outcome()
}

/// How long `start-producer` waits for deliveries once there is nothing more to send: the
/// drain timeout, cut short by a second signal.
struct Deadline<'a> {
    drain_timeout: Duration,
    shutdown: &'a Shutdown,
    brokers: &'a str,
}

impl Deadline<'_> {
    /// Resolves after the drain timeout or on a second signal, with why the wait ended.
    async fn reached(&self) -> String {
        tokio::select! {
            _ = tokio::time::sleep(self.drain_timeout) => format!(
                "no delivery report within the drain timeout ({} ms, --drain-timeout-ms); check that the \
                 brokers {} are reachable and the topic exists",
                self.drain_timeout.as_millis(),
                self.brokers
            ),
            _ = self.shutdown.aborted() => "stopped at once by a second signal".to_owned(),
        }
    }
}

/// `--serializer json` accepts only JSON.
fn check(command: &StartProducer, line: &str) -> Result<(), String> {
    match command.serializer {
        PayloadFormat::Bytes => Ok(()),
        PayloadFormat::Json => serde_json::from_str::<serde::de::IgnoredAny>(line)
            .map(drop)
            .map_err(|err| format!("not valid JSON ({err}); use --serializer bytes to send text as it is")),
    }
}

async fn send(command: &StartProducer, payload: &[u8]) -> Result<DeliveryReport, SendError> {
    let topic = if command.exact_topic { Topic::exact(&command.topic) } else { Topic::from(&command.topic) };
    let mut message = producer().message_bytes(topic, payload);
    if let Some(key) = &command.key {
        message = message.key(key);
    }
    for (name, value) in &command.headers {
        message = message.header(name, value);
    }
    message.send().await
}

/// Sends one message and waits for its delivery report until `until` is reached; then gives
/// up on it (and on whatever else is queued). The error says why, secrets masked.
async fn send_within(command: &StartProducer, payload: &[u8], until: &Deadline<'_>) -> Result<DeliveryReport, String> {
    let sent = send(command, payload);
    tokio::pin!(sent);
    tokio::select! {
        sent = &mut sent => sent.map_err(|err| redact(&err.to_string()).into_owned()),
        why = until.reached() => {
            producer().give_up().await;
            // The purge fails the send at once.
            let _ = sent.await;
            Err(why)
        }
    }
}

/// Reads typed lines until an empty one, sending each and printing its report.
async fn interactive(command: &StartProducer, stdin: tokio::io::Stdin, until: &Deadline<'_>) -> Tally {
    let shutdown = until.shutdown;
    let mut lines = BufReader::new(stdin).lines();
    let mut tally = Tally::default();
    let mut stderr = tokio::io::stderr();
    let _ = stderr.write_all(b"type one message per line; an empty line ends\n").await;
    for number in 1.. {
        let _ = stderr.write_all(b"> ").await;
        let _ = stderr.flush().await;
        let line = tokio::select! {
            line = lines.next_line() => line,
            _ = shutdown.begun() => break,
        };
        let line = match line {
            Ok(Some(line)) if !line.is_empty() => line,
            Ok(_) => break,
            Err(err) => {
                eprintln!("error: cannot read stdin: {err}");
                break;
            }
        };
        if let Err(reason) = check(command, &line) {
            eprintln!("error: line {number}: {reason}; not sent");
            tally.invalid += 1;
            continue;
        }
        match send_within(command, line.as_bytes(), until).await {
            Ok(report) => {
                tally.delivered += 1;
                println!("{report}");
            }
            Err(why) => {
                tally.failed += 1;
                eprintln!("error: line {number}: not delivered: {why}");
            }
        }
    }
    tally
}

/// Sends every line of stdin, many in flight at once, and prints a summary. A line that is
/// not valid JSON (with `--serializer json`) is reported with its number and not sent; the
/// other lines are still sent, and the exit code is 1.
async fn bulk(command: &StartProducer, topic_prefix: &str, stdin: tokio::io::Stdin, until: &Deadline<'_>) -> Tally {
    let shutdown = until.shutdown;
    let started = Instant::now();
    let progress = std::io::stderr().is_terminal();
    let mut last_progress = Instant::now();
    let mut lines = BufReader::new(stdin).lines();
    let mut in_flight = FuturesUnordered::new();
    let mut tally = Tally::default();
    let mut read = 0u64;
    // The topic as sent, with the prefix: the one the deliveries name, else the one the
    // configured prefix gives.
    let mut sent_to: Option<String> = None;
    let mut record = |tally: &mut Tally, (number, result): (u64, Result<DeliveryReport, SendError>)| match result {
        Ok(report) => {
            tally.delivered += 1;
            if sent_to.is_none() {
                sent_to = Some(report.topic);
            }
        }
        Err(err) => {
            tally.failed += 1;
            eprintln!("error: line {number}: not delivered: {}", redact(&err.to_string()));
        }
    };
    loop {
        if in_flight.len() >= BULK_IN_FLIGHT {
            if let Some(done) = in_flight.next().await {
                record(&mut tally, done);
            }
            continue;
        }
        let line = tokio::select! {
            biased;
            _ = shutdown.begun() => {
                eprintln!("stopping: lines after {read} are not read");
                break;
            }
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                record(&mut tally, done);
                continue;
            }
            line = lines.next_line() => line,
        };
        let line = match line {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(err) => {
                eprintln!("error: cannot read stdin after line {read}: {err}");
                break;
            }
        };
        read += 1;
        if let Err(reason) = check(command, &line) {
            eprintln!("error: line {read}: {reason}; not sent");
            tally.invalid += 1;
            continue;
        }
        let number = read;
        in_flight.push(async move { (number, send(command, line.as_bytes()).await) });
        if progress && last_progress.elapsed() >= Duration::from_millis(250) {
            last_progress = Instant::now();
            let rate = tally.delivered as f64 / started.elapsed().as_secs_f64();
            eprint!("\r{read} read, {} delivered ({rate:.0} msg/s)   ", tally.delivered);
        }
    }
    let waited = async {
        while let Some(done) = in_flight.next().await {
            record(&mut tally, done);
        }
    };
    let gave_up = tokio::select! {
        () = waited => None,
        why = until.reached() => Some(why),
    };
    if let Some(why) = gave_up {
        producer().give_up().await;
        // The purge fails the sends at once; one line says so for all of them.
        let mut lost = 0;
        while let Some((_, result)) = in_flight.next().await {
            match result {
                Ok(_) => tally.delivered += 1,
                Err(_) => lost += 1,
            }
        }
        tally.failed += lost;
        let messages = if lost == 1 { "message was" } else { "messages were" };
        eprintln!("error: {lost} {messages} not delivered: {why}");
    }
    if progress {
        eprintln!();
    }
    let seconds = started.elapsed().as_secs_f64();
    let topic = sent_to.unwrap_or_else(|| {
        if command.exact_topic {
            command.topic.clone()
        } else {
            format!("{topic_prefix}{}", command.topic)
        }
    });
    let lines = if read == 1 { "line" } else { "lines" };
    println!(
        "{read} {lines} read: {} delivered to {}, {} failed, {} invalid, in {seconds:.2} s ({:.0} msg/s)",
        tally.delivered,
        topic,
        tally.failed,
        tally.invalid,
        tally.delivered as f64 / seconds.max(1e-9)
    );
    tally
}
