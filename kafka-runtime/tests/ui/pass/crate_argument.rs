// `crate = "..."` names the path to kafka-runtime, for an app that renames the dependency;
// here an `extern crate` alias stands in for a rename in Cargo.toml.
extern crate kafka_runtime as renamed_kafka;

use std::process::ExitCode;

#[renamed_kafka::kafka_worker(crate = "renamed_kafka", name = "renamed", topics = ["t"])]
async fn renamed(_msg: renamed_kafka::Message) {}

#[kafka_runtime::kafka_worker(crate = "::renamed_kafka")]
async fn absolute(_topic: renamed_kafka::TopicStream) {}

#[kafka_runtime::kafka_worker(crate = "kafka_runtime", topics = ["t"])]
async fn explicit_default(_msg: kafka_runtime::Message) {}

// A path relative to the module, through a `use` alias.
mod local_alias {
    use kafka_runtime as kr;

    #[kr::kafka_worker(crate = "kr", topics = ["t"])]
    async fn aliased(_msg: kr::Message) {}
}

mod entry {
    #[renamed_kafka::kafka_main(crate = "renamed_kafka")]
    pub async fn main() {}
}

fn main() {
    let _: fn() -> ExitCode = entry::main;
}
