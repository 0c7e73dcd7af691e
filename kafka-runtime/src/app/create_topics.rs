//! `create-topics`: creates the topics the configuration names (see `config::topics`) with
//! rdkafka's admin client, reporting each as created or already there; `--dry-run` only
//! shows the plan.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication, TopicResult};
use rdkafka::types::RDKafkaErrorCode;

use super::cli::CreateTopics;
use super::command_client::{destroy_off_async_threads, request_failed, CommandContext, REQUEST_TIMEOUT};
use super::listing::{display_list, table};
use super::App;
use crate::config::client::{client_config, ClientSettings};
use crate::config::{topics_to_create, TopicToCreate, TopicsPlan, WorkerConfig};
use crate::error::Error;

const COMMAND: &str = "create-topics";

/// What became of one topic.
enum Outcome {
    WouldCreate,
    Created,
    AlreadyExists,
    Failed(RDKafkaErrorCode),
}

pub(super) async fn create_topics(app: &App, command: &CreateTopics) -> Result<(), Error> {
    let plan = app.topics_plan(&command.consumer_worker)?;
    for reason in &plan.skipped {
        eprintln!("{COMMAND}: {reason}");
    }
    if plan.topics.is_empty() {
        println!("no topics to create");
        return Ok(());
    }
    if command.dry_run {
        let outcomes: Vec<Outcome> = plan.topics.iter().map(|_| Outcome::WouldCreate).collect();
        print!("{}", plan_table(&plan.topics, &outcomes));
        println!("dry run: nothing was created");
        return Ok(());
    }
    let brokers = app.brokers_for(COMMAND)?;
    let settings = ClientSettings::admin(&app.file.kafka).into_map();
    let config = client_config(&brokers, settings.iter().map(|(key, value)| (key.as_str(), value.value.as_str())));
    let admin: AdminClient<CommandContext> =
        config.create_with_context(CommandContext::new(COMMAND)).map_err(|err| {
            Error::Config(format!("{COMMAND}: cannot create a client from the connection settings: {err}"))
        })?;
    let new_topics: Vec<NewTopic<'_>> = plan.topics.iter().map(new_topic).collect();
    let options = AdminOptions::new().request_timeout(Some(REQUEST_TIMEOUT)).operation_timeout(Some(REQUEST_TIMEOUT));
    let results = admin.create_topics(&new_topics, &options).await;
    destroy_off_async_threads(admin);
    let results = results.map_err(|err| request_failed(COMMAND, "creating the topics", &brokers, &err))?;
    let outcomes = outcomes(&plan.topics, &results);
    print!("{}", plan_table(&plan.topics, &outcomes));
    failures(&plan.topics, &outcomes)
}

/// What became of each topic, from the admin client's answers.
fn outcomes(topics: &[TopicToCreate], results: &[TopicResult]) -> Vec<Outcome> {
    topics
        .iter()
        .map(|topic| match results.iter().find(|r| r.as_ref().unwrap_or_else(|(n, _)| n) == &topic.name) {
            Some(Ok(_)) => Outcome::Created,
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Outcome::AlreadyExists,
            Some(Err((_, code))) => Outcome::Failed(*code),
            None => Outcome::Failed(RDKafkaErrorCode::Unknown),
        })
        .collect()
}

/// An error naming every topic that could not be created and the broker's answer.
fn failures(topics: &[TopicToCreate], outcomes: &[Outcome]) -> Result<(), Error> {
    let failures: Vec<String> = topics
        .iter()
        .zip(outcomes)
        .filter_map(|(topic, outcome)| match outcome {
            Outcome::Failed(code) => Some(format!("cannot create topic `{}`: the broker answered: {code}", topic.name)),
            _ => None,
        })
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::Broker(format!("{COMMAND}: {}", failures.join("; "))))
    }
}

impl App {
    /// The topics `create-topics` creates for the named workers, or for every worker and the
    /// whole configuration when `names` is empty.
    pub(super) fn topics_plan(&self, names: &[String]) -> Result<TopicsPlan, Error> {
        let workers = self.resolve_all(names)?;
        let configs: Vec<&WorkerConfig> = workers.iter().map(|w| &w.config).collect();
        Ok(topics_to_create(&configs, &self.file, &self.global.topic_prefix.value, names.is_empty()))
    }
}

/// The request for one topic; `-1` asks for the broker's default.
fn new_topic(topic: &TopicToCreate) -> NewTopic<'_> {
    let replication = TopicReplication::Fixed(topic.replication_factor.unwrap_or(-1));
    let mut new = NewTopic::new(&topic.name, topic.partitions.unwrap_or(-1), replication);
    for (key, value) in &topic.config {
        new = new.set(key, value);
    }
    new
}

/// The plan as a table, with what became of each topic.
fn plan_table(topics: &[TopicToCreate], outcomes: &[Outcome]) -> String {
    let count = |n: Option<i32>| n.map_or("default".to_owned(), |n| n.to_string());
    let rows: Vec<Vec<String>> = topics
        .iter()
        .zip(outcomes)
        .map(|(topic, outcome)| {
            let config: Vec<String> = topic.config.iter().map(|(key, value)| format!("{key}={value}")).collect();
            vec![
                topic.name.clone(),
                match outcome {
                    Outcome::WouldCreate => "to create".to_owned(),
                    Outcome::Created => "created".to_owned(),
                    Outcome::AlreadyExists => "already exists".to_owned(),
                    Outcome::Failed(code) => format!("failed: {code}"),
                },
                count(topic.partitions),
                count(topic.replication_factor),
                display_list(&config),
                topic.needed_by.join(", "),
            ]
        })
        .collect();
    table(&["TOPIC", "STATUS", "PARTITIONS", "REPLICATION", "CONFIG", "FOR"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str) -> TopicToCreate {
        TopicToCreate {
            name: name.into(),
            partitions: Some(3),
            replication_factor: None,
            config: [("retention.ms".to_owned(), "1000".to_owned())].into(),
            needed_by: vec!["worker a".into(), "kafka.topics".into()],
        }
    }

    #[test]
    fn an_existing_topic_is_reported_and_any_other_answer_fails_naming_the_topic() {
        let topics = [topic("new"), topic("old"), topic("bad")];
        let results: Vec<TopicResult> = vec![
            Err(("bad".into(), RDKafkaErrorCode::InvalidReplicationFactor)),
            Ok("new".into()),
            Err(("old".into(), RDKafkaErrorCode::TopicAlreadyExists)),
        ];
        let outcomes = outcomes(&topics, &results);
        let table = plan_table(&topics, &outcomes);
        let lines: Vec<String> = table.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
        assert_eq!(lines[0], "TOPIC STATUS PARTITIONS REPLICATION CONFIG FOR");
        assert_eq!(lines[1], "new created 3 default retention.ms=1000 worker a, kafka.topics");
        assert!(lines[2].starts_with("old already exists 3 "), "{table}");
        assert!(
            lines[3].starts_with("bad failed: InvalidReplicationFactor (Broker: Invalid replication factor) 3 "),
            "{table}"
        );
        let err = failures(&topics, &outcomes).unwrap_err().to_string();
        assert_eq!(err, "create-topics: cannot create topic `bad`: the broker answered: InvalidReplicationFactor (Broker: Invalid replication factor)");
        assert!(failures(&topics[..2], &outcomes[..2]).is_ok());
    }
}
