//! Attribute macros for `kafka-runtime`. Depend on `kafka-runtime`, which re-exports them.
//!
//! Parsing and expansion live in [`worker`] and [`entry`], written against `proc_macro2`
//! so they can be unit-tested; this file only bridges to `proc_macro`.

use proc_macro::TokenStream;

mod entry;
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
