#[kafka_runtime::kafka_main]
async fn main(args: Vec<String>) {
    let _ = args;
}
