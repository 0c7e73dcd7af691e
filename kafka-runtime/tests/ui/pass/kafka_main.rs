// `#[kafka_main]` turns `async fn main` into a synchronous entry point returning an exit
// code. trybuild runs a passing program without arguments, and the generated command line
// would reject that, so the entry points here are checked by type but not called.
use std::process::ExitCode;

mod plain {
    #[kafka_runtime::kafka_main]
    pub async fn main() {}
}

mod with_setup {
    use kafka_runtime::{kafka_main, WorkerError};

    async fn connect() -> Result<(), WorkerError> {
        Ok(())
    }

    #[kafka_main]
    pub async fn main() -> Result<(), WorkerError> {
        connect().await?;
        Ok(())
    }
}

#[kafka_runtime::kafka_worker(topics = ["t"])]
async fn worker(_msg: kafka_runtime::Message) {}

fn main() {
    let _: fn() -> ExitCode = plain::main;
    let _: fn() -> ExitCode = with_setup::main;
}
