//! `#[kafka_main]`: wraps `async fn main` into a synchronous `main` that hands its body to
//! the runtime's command-line entry point.

use proc_macro2::TokenStream;
use quote::quote;
use syn::parse::Parser;
use syn::{Expr, ItemFn, LitStr, Path};

use crate::runtime_path;

pub fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(err) => {
            let err = err.to_compile_error();
            return quote!(#item #err);
        }
    };
    let mut errors: Option<syn::Error> = None;
    let mut fail = |err: syn::Error| match &mut errors {
        Some(all) => all.combine(err),
        None => errors = Some(err),
    };
    let krate = parse_args(args).unwrap_or_else(|err| {
        fail(err);
        None
    });
    if func.sig.asyncness.is_none() {
        fail(syn::Error::new_spanned(func.sig.fn_token, "#[kafka_main] needs an `async fn`: add `async` before `fn`"));
    }
    if !func.sig.inputs.is_empty() {
        fail(syn::Error::new_spanned(
            &func.sig.inputs,
            "#[kafka_main] takes no parameters: the command line is parsed by the runtime",
        ));
    }
    if !func.sig.generics.params.is_empty() {
        fail(syn::Error::new_spanned(&func.sig.generics, "#[kafka_main] cannot be generic"));
    }
    let krate = krate.unwrap_or_else(runtime_path::default);
    let ItemFn { attrs, vis, sig, block } = func;
    let ident = &sig.ident;
    let output = match &sig.output {
        syn::ReturnType::Default => quote!(()),
        syn::ReturnType::Type(_, ty) => quote!(#ty),
    };
    let body = quote! {
        async move {
            let setup: #output = async move #block.await;
            setup
        }
    };
    if let Some(err) = errors {
        let err = err.to_compile_error();
        // Keep a stub with the function's name, visibility and the signature a successful
        // expansion has, so rustc adds neither "main function not found" nor, when the
        // function has another name, "`main` defined multiple times" or "cannot find function".
        // The body is kept (type-checked, never run), so its own errors show at the same time,
        // unless it names parameters or generics the stub cannot have.
        let body = (sig.inputs.is_empty() && sig.generics.params.is_empty()).then(|| quote!(let _ = #body;));
        return quote! {
            #vis fn #ident() -> ::std::process::ExitCode {
                #body
                ::std::process::ExitCode::FAILURE
            }
            #err
        };
    }
    quote! {
        #(#attrs)*
        #vis fn #ident() -> ::std::process::ExitCode {
            #krate::__private::run_main(#body)
        }
    }
}

/// The attribute's only argument: `crate = "..."`, the path to `kafka-runtime`.
fn parse_args(args: TokenStream) -> syn::Result<Option<Path>> {
    let mut krate: Option<Path> = None;
    let mut errors: Option<syn::Error> = None;
    let mut push = |err: syn::Error| match &mut errors {
        Some(all) => all.combine(err),
        None => errors = Some(err),
    };
    let parser = syn::meta::parser(|meta| {
        let Some(key) = meta.path.get_ident().cloned() else {
            return Err(meta.error("unknown key; #[kafka_main] takes only `crate`"));
        };
        if key == "crate" {
            let value: LitStr = meta.value()?.parse()?;
            let path = runtime_path::parse(&value).unwrap_or_else(|err| {
                push(err);
                runtime_path::default()
            });
            if krate.replace(path).is_some() {
                push(syn::Error::new_spanned(&key, "duplicate key `crate`"));
            }
        } else {
            push(syn::Error::new_spanned(&key, format!("unknown key `{key}`; #[kafka_main] takes only `crate`")));
            // Skip the value so parsing can go on and report later mistakes too.
            if meta.input.peek(syn::Token![=]) {
                let _: Expr = meta.value()?.parse()?;
            }
        }
        Ok(())
    });
    // A syntax error stops the parser; keep the mistakes found before it.
    if let Err(err) = parser.parse2(args) {
        push(err);
    }
    match errors {
        Some(err) => Err(err),
        None => Ok(krate),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_sync_main() {
        let out = expand(
            quote!(),
            quote!(
                fn main() {}
            ),
        )
        .to_string();
        assert!(out.contains("needs an `async fn`"), "{out}");
    }

    #[test]
    fn error_stub_keeps_the_name() {
        let out = expand(
            quote!(),
            quote!(
                pub fn app(x: u32) {}
            ),
        )
        .to_string();
        assert!(out.contains("pub fn app ()"), "{out}");
        assert!(!out.contains("fn main"), "{out}");
        assert!(out.contains("takes no parameters"), "{out}");
    }

    fn expand_main(args: TokenStream) -> String {
        expand(
            args,
            quote!(
                async fn main() {}
            ),
        )
        .to_string()
    }

    #[test]
    fn crate_replaces_the_runtime_path() {
        let out = expand_main(quote!(crate = "my_kafka"));
        assert!(out.contains("my_kafka :: __private :: run_main"), "{out}");
        assert!(!out.contains("kafka_runtime"), "{out}");
        assert!(!out.contains("compile_error"), "{out}");
    }

    #[test]
    fn crate_defaults_to_kafka_runtime() {
        let out = expand_main(quote!());
        assert!(out.contains(":: kafka_runtime :: __private :: run_main"), "{out}");
    }

    #[test]
    fn crate_must_be_a_path() {
        let out = expand_main(quote!(crate = "::"));
        assert!(out.contains("`crate` must be a path"), "{out}");
        // The error stub keeps `main`.
        assert!(out.contains("fn main ()"), "{out}");
        assert!(!out.contains("run_main"), "{out}");
    }

    #[test]
    fn duplicate_crate() {
        let out = expand_main(quote!(crate = "a", crate = "b"));
        assert!(out.contains("duplicate key `crate`"), "{out}");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let out = expand_main(quote!(flavor = "current_thread", crate = "my_kafka", worker_threads = 2));
        assert!(out.contains("unknown key `flavor`; #[kafka_main] takes only `crate`"), "{out}");
        assert!(out.contains("unknown key `worker_threads`"), "{out}");
        assert!(!out.contains("run_main"), "{out}");
    }

    #[test]
    fn a_bare_key_is_an_error() {
        let out = expand_main(quote!(crate));
        assert!(out.contains("expected `=`"), "{out}");
        let out = expand_main(quote!(my_kafka::x = "a"));
        assert!(out.contains("unknown key"), "{out}");
    }

    #[test]
    fn errors_combine_with_the_signature_errors() {
        let out = expand(
            quote!(nope = 1),
            quote!(
                fn main() {}
            ),
        )
        .to_string();
        assert!(out.contains("unknown key `nope`"), "{out}");
        assert!(out.contains("needs an `async fn`"), "{out}");
    }

    #[test]
    fn wraps_the_body() {
        let out = expand(
            quote!(),
            quote!(
                async fn main() {
                    setup().await;
                }
            ),
        )
        .to_string();
        assert!(out.contains("run_main"), "{out}");
    }
}
