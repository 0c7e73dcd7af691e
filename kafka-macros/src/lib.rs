//! Attribute macros for `kafka-runtime`. Depend on `kafka-runtime`, which re-exports them.
//!
//! Parsing and expansion live in [`worker`] and [`entry`], written against `proc_macro2`
//! so they can be unit-tested; this file only bridges to `proc_macro`.
//!
//! The generated code reaches the runtime as `::kafka_runtime`. An app that renames the
//! dependency in its Cargo.toml passes the name it uses as `crate = "..."` to both macros:
//! `#[my_kafka::kafka_worker(crate = "my_kafka", ...)]`, `#[my_kafka::kafka_main(crate = "my_kafka")]`.

use proc_macro::TokenStream;

mod entry;
mod runtime_path;
mod worker;

/// Registers an async function as a Kafka worker. See `kafka_runtime::kafka_worker`.
#[proc_macro_attribute]
pub fn kafka_worker(args: TokenStream, item: TokenStream) -> TokenStream {
    worker::expand(args.into(), item.into()).into()
}

/// Turns `async fn main` into the command-line entry point. See `kafka_runtime::kafka_main`.
#[proc_macro_attribute]
pub fn kafka_main(args: TokenStream, item: TokenStream) -> TokenStream {
    entry::expand(args.into(), item.into()).into()
}
