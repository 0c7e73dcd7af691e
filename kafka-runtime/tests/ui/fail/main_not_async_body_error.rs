// A signature error does not hide the errors inside the body: both are reported at once.
#[kafka_runtime::kafka_main]
fn main() -> Result<(), std::io::Error> {
    let count: u32 = "not a number";
    let _ = count;
    Ok(())
}
