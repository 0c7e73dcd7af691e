// `#[kafka_main]` may go on a function with another name, called from a plain `main`:
// the error must not bring "`main` defined multiple times" or "cannot find function `app`".
use std::process::ExitCode;

#[kafka_runtime::kafka_main]
fn app() {}

fn main() -> ExitCode {
    app()
}
