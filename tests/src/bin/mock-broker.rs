//! librdkafka's mock cluster as a process of its own, for tests that need a broker which keeps
//! commit metadata (Tansu does not) and outlives a worker killed with SIGKILL.
//!
//! `mock-broker TOPIC:PARTITIONS...` creates the topics, prints `bootstrap ADDRESS`, and runs
//! until it is killed.

use std::io::Write as _;

use rdkafka::mocking::MockCluster;

fn main() {
    let cluster = MockCluster::new(1).expect("a mock cluster");
    for spec in std::env::args().skip(1) {
        let (topic, partitions) = spec.split_once(':').expect("TOPIC:PARTITIONS");
        cluster.create_topic(topic, partitions.parse().expect("a partition count"), 1).expect("topic created");
    }
    let mut stdout = std::io::stdout();
    writeln!(stdout, "bootstrap {}", cluster.bootstrap_servers()).expect("stdout");
    stdout.flush().expect("stdout");
    loop {
        std::thread::park();
    }
}
