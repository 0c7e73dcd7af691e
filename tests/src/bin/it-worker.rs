//! The test workers as a process, for tests that kill or signal it.

use kafka_integration_tests as _;

#[kafka_runtime::kafka_main]
async fn main() {}
