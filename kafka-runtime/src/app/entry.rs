//! The process entry point that `#[kafka_main]` generates.

use std::future::Future;
use std::process::ExitCode;

use clap::Parser;

use super::cli::Arguments;
use super::shutdown::Shutdown;
use super::App;
use crate::config::redact;
use crate::error::Error;
use crate::worker::handler::IntoWorkerResult;

/// The process entry point `#[kafka_main]` generates: parse, set up logs, run the app's
/// setup (the body of its `main`), then the command; exit non-zero with a one-line reason
/// on error.
#[doc(hidden)]
pub fn run_main<F, R>(setup: F) -> ExitCode
where
    F: Future<Output = R>,
    // The body returns what a worker may: `()` or `Result<(), E>`.
    R: IntoWorkerResult,
{
    let arguments = Arguments::parse();
    crate::logging::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        // The configuration is loaded first, so the setup can use the shared producer.
        let app = App::load(&arguments)?;
        setup.await.into_worker_result().map_err(|err| Error::Config(format!("the app's setup failed: {err}")))?;
        app.execute(&arguments, Shutdown::on_signals()).await
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // librdkafka's errors echo rejected values, secrets among them.
            crate::logging::last_words(&format!("error: {}", redact(&err.to_string())));
            ExitCode::FAILURE
        }
    }
}
