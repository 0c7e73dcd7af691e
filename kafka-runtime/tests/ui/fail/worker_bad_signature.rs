use kafka_runtime::kafka_worker;

#[kafka_worker(topics = ["t"])]
async fn w(x: u32) {
    let _ = x;
}

fn main() {}
