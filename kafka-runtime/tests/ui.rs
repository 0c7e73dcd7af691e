//! Compile-time checks of `#[kafka_worker]` and `#[kafka_main]`: the programs under
//! `ui/pass` must build, and each program under `ui/fail` must fail with the error recorded
//! next to it. Regenerate the `.stderr` files with
//! `TRYBUILD=overwrite cargo test -p kafka-runtime --test ui`, then read them.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
