//! `#[kafka_worker]`: parses the attribute, keeps the function as written, and adds a
//! registration that hands the function to the runtime.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{Expr, ExprArray, ExprLit, Ident, ItemFn, Lit, LitStr, Path};

use crate::runtime_path;

/// The attribute's arguments, each optional.
#[derive(Default)]
struct WorkerArgs {
    name: Option<LitStr>,
    group: Option<LitStr>,
    topics: Option<(Ident, Vec<LitStr>)>,
    regex_topic: Option<(Ident, LitStr)>,
    /// `crate = "..."`: the path to `kafka-runtime`.
    krate: Option<Path>,
}

const KEYS: &str = "`name`, `group`, `topics`, `regex_topic` or `crate`";

pub fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        // Not a function: let rustc report the item, plus our error.
        Err(err) => return with_item(item, err),
    };
    let mut errors: Option<syn::Error> = None;
    let args = parse_args(args).unwrap_or_else(|err| {
        push(&mut errors, err);
        WorkerArgs::default()
    });
    if func.sig.asyncness.is_none() {
        push(
            &mut errors,
            syn::Error::new_spanned(func.sig.fn_token, "#[kafka_worker] needs an `async fn`: add `async` before `fn`"),
        );
    }
    if !func.sig.generics.params.is_empty() {
        push(
            &mut errors,
            syn::Error::new_spanned(
                &func.sig.generics,
                "a #[kafka_worker] function cannot be generic: the runtime calls it by name",
            ),
        );
    }
    if let Some(receiver) = func.sig.receiver() {
        push(&mut errors, syn::Error::new_spanned(receiver, "#[kafka_worker] goes on a free function, not a method"));
    }
    if let Some(err) = errors {
        return with_item(quote!(#func), err);
    }
    registration(&func, &args)
}

fn push(errors: &mut Option<syn::Error>, err: syn::Error) {
    match errors {
        Some(all) => all.combine(err),
        None => *errors = Some(err),
    }
}

/// Emits the user's item next to the error, so one mistake does not cascade.
fn with_item(item: TokenStream, err: syn::Error) -> TokenStream {
    let err = err.to_compile_error();
    quote!(#item #err)
}

fn parse_args(args: TokenStream) -> syn::Result<WorkerArgs> {
    let mut parsed = WorkerArgs::default();
    let mut errors: Option<syn::Error> = None;
    let parser = syn::meta::parser(|meta| {
        let Some(key) = meta.path.get_ident().cloned() else {
            return Err(meta.error(format!("unknown key; expected {KEYS}")));
        };
        let duplicate = || syn::Error::new_spanned(&key, format!("duplicate key `{key}`"));
        match key.to_string().as_str() {
            "name" => {
                let value: LitStr = meta.value()?.parse()?;
                if value.value().is_empty() {
                    push(&mut errors, syn::Error::new_spanned(&value, "`name` cannot be empty"));
                }
                if parsed.name.replace(value).is_some() {
                    push(&mut errors, duplicate());
                }
            }
            "group" => {
                let value: LitStr = meta.value()?.parse()?;
                if parsed.group.replace(value).is_some() {
                    push(&mut errors, duplicate());
                }
            }
            "topics" => {
                let array: ExprArray = meta.value()?.parse()?;
                let topics = topic_list(&array, &mut errors);
                if parsed.topics.replace((key.clone(), topics)).is_some() {
                    push(&mut errors, duplicate());
                }
            }
            "regex_topic" => {
                let value: LitStr = meta.value()?.parse()?;
                if parsed.regex_topic.replace((key.clone(), value)).is_some() {
                    push(&mut errors, duplicate());
                }
            }
            "crate" => {
                let value: LitStr = meta.value()?.parse()?;
                let path = runtime_path::parse(&value).unwrap_or_else(|err| {
                    push(&mut errors, err);
                    runtime_path::default()
                });
                if parsed.krate.replace(path).is_some() {
                    push(&mut errors, duplicate());
                }
            }
            _ => {
                push(&mut errors, syn::Error::new_spanned(&key, format!("unknown key `{key}`; expected {KEYS}")));
                // Skip the value so parsing can go on and report later mistakes too.
                if meta.input.peek(syn::Token![=]) {
                    let _: Expr = meta.value()?.parse()?;
                }
            }
        }
        Ok(())
    });
    // A syntax error stops the parser; keep the mistakes found before it.
    if let Err(err) = parser.parse2(args) {
        push(&mut errors, err);
    }
    if let (Some((topics_key, _)), Some((regex_key, _))) = (&parsed.topics, &parsed.regex_topic) {
        let mut err = syn::Error::new_spanned(
            regex_key,
            "`topics` and `regex_topic` cannot be used together: a worker subscribes either to a list of topics or to a pattern",
        );
        err.combine(syn::Error::new_spanned(topics_key, "`topics` is given here"));
        push(&mut errors, err);
    }
    match errors {
        Some(err) => Err(err),
        None => Ok(parsed),
    }
}

fn topic_list(array: &ExprArray, errors: &mut Option<syn::Error>) -> Vec<LitStr> {
    let mut topics = Vec::new();
    for element in &array.elems {
        match element {
            Expr::Lit(ExprLit { lit: Lit::Str(topic), .. }) if !topic.value().is_empty() => topics.push(topic.clone()),
            Expr::Lit(ExprLit { lit: Lit::Str(topic), .. }) => {
                push(errors, syn::Error::new_spanned(topic, "a topic name cannot be empty"))
            }
            other => push(
                errors,
                syn::Error::new_spanned(other, "a topic must be a string literal, for example \"my-topic\""),
            ),
        }
    }
    topics
}

fn registration(func: &ItemFn, args: &WorkerArgs) -> TokenStream {
    let ident = &func.sig.ident;
    let name = match &args.name {
        Some(name) => name.clone(),
        None => LitStr::new(&ident.to_string(), ident.span()),
    };
    let fn_name = ident.to_string();
    let group = option(args.group.as_ref());
    let regex_topic = option(args.regex_topic.as_ref().map(|(_, regex)| regex));
    let topics = args.topics.as_ref().map(|(_, topics)| topics.as_slice()).unwrap_or_default();
    let krate = args.krate.clone().unwrap_or_else(runtime_path::default);
    // The runtime's hidden module under a local name, so the code below has no token of the
    // path: a path that does not resolve is reported once, on the `use`.
    let import = quote!(use #krate::__private as __kafka_private;);
    // Spanned on the function's name: a signature that fits no worker style is reported there.
    let build = quote_spanned! {ident.span()=>
        fn __kafka_worker_build() -> __kafka_private::Worker {
            __kafka_private::into_worker(#ident)
        }
    };
    let private = quote_spanned!(Span::call_site()=> __kafka_private);
    let span = func.sig.fn_token.span();
    let submit = quote_spanned! {span=>
        #private::submit_worker!(#private::WorkerRegistration {
            name: #name,
            rust_path: ::core::concat!(::core::module_path!(), "::", #fn_name),
            group: #group,
            topics: &[#(#topics),*],
            regex_topic: #regex_topic,
            failure: #private::FailureAttrs {
                retries: ::core::option::Option::None,
                retry_backoff_ms: ::core::option::Option::None,
                retry_backoff_max_ms: ::core::option::Option::None,
                dead_letter_topic: ::core::option::Option::None,
                on_decode_error: ::core::option::Option::None,
            },
            build: __kafka_worker_build,
        });
    };
    quote! {
        #func
        const _: () = {
            #import
            #build
            #submit
        };
    }
}

fn option(value: Option<&LitStr>) -> TokenStream {
    match value {
        Some(value) => quote!(::core::option::Option::Some(#value)),
        None => quote!(::core::option::Option::None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(args: TokenStream) -> String {
        let expanded = expand(
            args,
            quote!(
                async fn handler() {}
            ),
        );
        expanded.to_string()
    }

    #[test]
    fn accepts_every_key() {
        let args =
            parse_args(quote!(name = "es", group = "g", topics = ["a", "b"], crate = "::my_kafka")).ok().unwrap();
        assert_eq!(args.name.unwrap().value(), "es");
        assert_eq!(args.topics.unwrap().1.len(), 2);
        let krate = args.krate.unwrap();
        assert_eq!(quote!(#krate).to_string(), ":: my_kafka");
    }

    #[test]
    fn reports_every_mistake_at_once() {
        let out = errors_of(quote!(nme = "x", topics = [1], group = "a", group = "b"));
        assert!(out.contains("unknown key `nme`"), "{out}");
        assert!(out.contains("a topic must be a string literal"), "{out}");
        assert!(out.contains("duplicate key `group`"), "{out}");
    }

    #[test]
    fn keeps_earlier_mistakes_after_a_syntax_error() {
        let out = errors_of(quote!(nme = "x", name = 1));
        assert!(out.contains("unknown key `nme`"), "{out}");
        assert!(out.contains("expected string literal"), "{out}");
    }

    #[test]
    fn topics_and_regex_conflict() {
        let out = errors_of(quote!(topics = ["a"], regex_topic = "a.*"));
        assert!(out.contains("cannot be used together"), "{out}");
    }

    #[test]
    fn crate_replaces_every_runtime_path() {
        let out = errors_of(quote!(crate = "my_kafka", name = "w"));
        assert!(out.contains("use my_kafka :: __private as __kafka_private ;"), "{out}");
        assert!(out.contains("__kafka_private :: submit_worker !"), "{out}");
        assert!(out.contains("__kafka_private :: into_worker"), "{out}");
        assert!(out.contains("__kafka_private :: WorkerRegistration"), "{out}");
        assert!(!out.contains("kafka_runtime"), "{out}");
        assert!(!out.contains("compile_error"), "{out}");
    }

    #[test]
    fn crate_defaults_to_kafka_runtime() {
        let out = errors_of(quote!(name = "w"));
        assert!(out.contains("use :: kafka_runtime :: __private as __kafka_private ;"), "{out}");
    }

    #[test]
    fn crate_must_be_a_path() {
        let out = errors_of(quote!(crate = "my kafka", group = "a", group = "b"));
        assert!(out.contains("`crate` must be a path"), "{out}");
        // The parser goes on after a bad path.
        assert!(out.contains("duplicate key `group`"), "{out}");
        // The function is kept, without a registration.
        assert!(out.contains("async fn handler"), "{out}");
        assert!(!out.contains("submit_worker"), "{out}");
    }

    #[test]
    fn crate_is_a_string_literal() {
        let out = errors_of(quote!(crate = my_kafka));
        assert!(out.contains("expected string literal"), "{out}");
    }

    #[test]
    fn duplicate_crate() {
        let out = errors_of(quote!(crate = "a", crate = "b"));
        assert!(out.contains("duplicate key `crate`"), "{out}");
    }

    #[test]
    fn unknown_key_lists_crate() {
        let out = errors_of(quote!(krate = "a"));
        assert!(
            out.contains("unknown key `krate`; expected `name`, `group`, `topics`, `regex_topic` or `crate`"),
            "{out}"
        );
    }

    #[test]
    fn name_defaults_to_the_function() {
        let out = expand(
            quote!(),
            quote!(
                async fn my_worker() {}
            ),
        )
        .to_string();
        assert!(out.contains("name : \"my_worker\""), "{out}");
    }
}
