#[kafka_runtime::kafka_main]
fn main() {}
