// `#[kafka_main]` takes only `crate`, once.
#[kafka_runtime::kafka_main(flavor = "current_thread", crate = "kafka_runtime", crate = "::kafka_runtime")]
async fn main() {}
