//! `#[kafka_worker]`: parses the attribute, keeps the function as written, and adds a
//! registration that hands the function to the runtime.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{Expr, ExprArray, ExprLit, Ident, ItemFn, Lit, LitInt, LitStr, Path};

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
    /// The failure policy: how often a failed message is tried again, how long to wait
    /// between tries, where a message goes when the tries run out, and what an undecodable
    /// message does.
    retries: Option<Given<u64>>,
    retry_backoff_ms: Option<Given<u64>>,
    retry_backoff_max_ms: Option<Given<u64>>,
    dead_letter_topic: Option<LitStr>,
    on_decode_error: Option<Given<LitStr>>,
    /// A batch worker's batches: at most `take` messages, or what arrived within `within_ms`.
    take: Option<Given<u64>>,
    within_ms: Option<Given<u64>>,
    /// Concurrency: which messages may run at once, and how many.
    ordering: Option<Given<LitStr>>,
    max_in_flight: Option<Given<u64>>,
}

/// A key whose value is checked: the value when it is valid (an invalid one is reported and
/// left out), and where it was written.
struct Given<T> {
    value: Option<T>,
    span: Span,
}

const KEYS: &str = "`name`, `group`, `topics`, `regex_topic`, `retries`, `retry_backoff_ms`, \
                    `retry_backoff_max_ms`, `dead_letter_topic`, `on_decode_error`, `take`, \
                    `within_ms`, `ordering`, `max_in_flight` or `crate`";

/// The type a numeric key has in `FailureAttrs`: its name, used as the literal's suffix, and
/// its largest value.
struct Unsigned {
    name: &'static str,
    max: u64,
}

const U32: Unsigned = Unsigned { name: "u32", max: u32::MAX as u64 };
const U64: Unsigned = Unsigned { name: "u64", max: u64::MAX };

/// The values `ordering` takes.
const ORDERINGS: [&str; 3] = ["partition", "key", "none"];

/// The values `on_decode_error` takes.
const DECODE_ERROR_ACTIONS: [&str; 2] = ["dead_letter", "stop"];

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
            "retries" => {
                let value: Expr = meta.value()?.parse()?;
                let retries =
                    Given { value: whole_number(&value, &key, "tries", &U32, &mut errors), span: value.span() };
                if parsed.retries.replace(retries).is_some() {
                    push(&mut errors, duplicate());
                }
            }
            "retry_backoff_ms" | "retry_backoff_max_ms" => {
                let value: Expr = meta.value()?.parse()?;
                let millis =
                    Given { value: whole_number(&value, &key, "milliseconds", &U64, &mut errors), span: value.span() };
                let slot = if key == "retry_backoff_ms" {
                    &mut parsed.retry_backoff_ms
                } else {
                    &mut parsed.retry_backoff_max_ms
                };
                if slot.replace(millis).is_some() {
                    push(&mut errors, duplicate());
                }
            }
            "take" => {
                let value: Expr = meta.value()?.parse()?;
                let take = whole_number(&value, &key, "messages", &U64, &mut errors);
                if take == Some(0) {
                    push(
                        &mut errors,
                        syn::Error::new_spanned(&value, "`take` must be 1 or more: a batch holds at least one message"),
                    );
                }
                if parsed.take.replace(Given { value: take.filter(|n| *n > 0), span: value.span() }).is_some() {
                    push(&mut errors, duplicate());
                }
            }
            "ordering" => {
                let value: Expr = meta.value()?.parse()?;
                let ordering = match ungroup(&value) {
                    Expr::Lit(ExprLit { lit: Lit::Str(ordering), .. })
                        if ORDERINGS.contains(&ordering.value().as_str()) =>
                    {
                        Some(ordering.clone())
                    }
                    _ => {
                        push(
                            &mut errors,
                            syn::Error::new_spanned(&value, "expected \"partition\", \"key\" or \"none\""),
                        );
                        None
                    }
                };
                if parsed.ordering.replace(Given { value: ordering, span: value.span() }).is_some() {
                    push(&mut errors, duplicate());
                }
            }
            "max_in_flight" => {
                let value: Expr = meta.value()?.parse()?;
                let limit = whole_number(&value, &key, "messages", &U64, &mut errors);
                if limit == Some(0) {
                    push(&mut errors, syn::Error::new_spanned(&value, "`max_in_flight` must be 1 or more"));
                }
                if parsed.max_in_flight.replace(Given { value: limit.filter(|n| *n > 0), span: value.span() }).is_some()
                {
                    push(&mut errors, duplicate());
                }
            }
            "within_ms" => {
                let value: Expr = meta.value()?.parse()?;
                let millis =
                    Given { value: whole_number(&value, &key, "milliseconds", &U64, &mut errors), span: value.span() };
                if parsed.within_ms.replace(millis).is_some() {
                    push(&mut errors, duplicate());
                }
            }
            "dead_letter_topic" => {
                let value: LitStr = meta.value()?.parse()?;
                if value.value().is_empty() {
                    push(&mut errors, syn::Error::new_spanned(&value, "`dead_letter_topic` cannot be empty"));
                }
                if parsed.dead_letter_topic.replace(value).is_some() {
                    push(&mut errors, duplicate());
                }
            }
            "on_decode_error" => {
                let value: Expr = meta.value()?.parse()?;
                let action = match ungroup(&value) {
                    Expr::Lit(ExprLit { lit: Lit::Str(action), .. })
                        if DECODE_ERROR_ACTIONS.contains(&action.value().as_str()) =>
                    {
                        Some(action.clone())
                    }
                    _ => {
                        push(&mut errors, syn::Error::new_spanned(&value, "expected \"dead_letter\" or \"stop\""));
                        None
                    }
                };
                if parsed.on_decode_error.replace(Given { value: action, span: value.span() }).is_some() {
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
    if let (Some(Given { value: Some(backoff), .. }), Some(Given { value: Some(max), span })) =
        (&parsed.retry_backoff_ms, &parsed.retry_backoff_max_ms)
    {
        if max < backoff {
            push(
                &mut errors,
                syn::Error::new(
                    *span,
                    format!("`retry_backoff_max_ms` ({max}) cannot be less than `retry_backoff_ms` ({backoff})"),
                ),
            );
        }
    }
    match errors {
        Some(err) => Err(err),
        None => Ok(parsed),
    }
}

/// The value of a numeric key: an integer literal that fits `ty`, unsuffixed or suffixed with
/// `ty`. Anything else is reported on the value and gives `None`.
fn whole_number(value: &Expr, key: &Ident, unit: &str, ty: &Unsigned, errors: &mut Option<syn::Error>) -> Option<u64> {
    let not_whole = || syn::Error::new_spanned(value, format!("`{key}` must be a whole number of {unit}, 0 or more"));
    match ungroup(value) {
        Expr::Lit(ExprLit { lit: Lit::Int(int), .. }) => {
            let digits = int.base10_digits();
            // Only from a token built as negative; `-1` written out is a negation, below.
            if digits.starts_with('-') {
                push(errors, not_whole());
                return None;
            }
            if !int.suffix().is_empty() && int.suffix() != ty.name {
                let message = format!("`{key}` is a `{ty}`: write {digits} or {digits}{ty}", ty = ty.name);
                push(errors, syn::Error::new_spanned(int, message));
                return None;
            }
            match int.base10_parse::<u64>() {
                Ok(number) if number <= ty.max => Some(number),
                // Only digits are left, so a number that does not parse is too large.
                _ => {
                    let message = format!("`{key}` is too large: at most {} {unit}", ty.max);
                    push(errors, syn::Error::new_spanned(int, message));
                    None
                }
            }
        }
        _ => {
            push(errors, not_whole());
            None
        }
    }
}

/// A value passed through a `macro_rules!` fragment arrives in an invisible group.
fn ungroup(mut value: &Expr) -> &Expr {
    while let Expr::Group(group) = value {
        value = &group.expr;
    }
    value
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
    let retries = number(args.retries.as_ref(), &U32);
    let retry_backoff_ms = number(args.retry_backoff_ms.as_ref(), &U64);
    let retry_backoff_max_ms = number(args.retry_backoff_max_ms.as_ref(), &U64);
    let dead_letter_topic = option(args.dead_letter_topic.as_ref());
    let on_decode_error = option(args.on_decode_error.as_ref().and_then(|given| given.value.as_ref()));
    let take = number(args.take.as_ref(), &U64);
    let within_ms = number(args.within_ms.as_ref(), &U64);
    let ordering = option(args.ordering.as_ref().and_then(|given| given.value.as_ref()));
    let max_in_flight = number(args.max_in_flight.as_ref(), &U64);
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
                retries: #retries,
                retry_backoff_ms: #retry_backoff_ms,
                retry_backoff_max_ms: #retry_backoff_max_ms,
                dead_letter_topic: #dead_letter_topic,
                on_decode_error: #on_decode_error,
            },
            batch: #private::BatchAttrs { take: #take, within_ms: #within_ms },
            concurrency: #private::ConcurrencyAttrs { ordering: #ordering, max_in_flight: #max_in_flight },
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

/// A numeric key as a literal suffixed with its type, so it has that type wherever it lands.
fn number(given: Option<&Given<u64>>, ty: &Unsigned) -> TokenStream {
    match given {
        Some(Given { value: Some(value), span }) => {
            let value = LitInt::new(&format!("{value}{}", ty.name), *span);
            quote!(::core::option::Option::Some(#value))
        }
        _ => quote!(::core::option::Option::None),
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
            out.contains(
                "unknown key `krate`; expected `name`, `group`, `topics`, `regex_topic`, `retries`, \
                 `retry_backoff_ms`, `retry_backoff_max_ms`, `dead_letter_topic`, `on_decode_error`, `take`, \
                 `within_ms`, `ordering`, `max_in_flight` or `crate`"
            ),
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

    #[test]
    fn batch_keys_are_emitted() {
        let out = errors_of(quote!(take = 500, within_ms = 2_000));
        assert!(!out.contains("compile_error"), "{out}");
        assert!(out.contains("batch : __kafka_private :: BatchAttrs { take : :: core :: option :: Option :: Some (500u64) , within_ms : :: core :: option :: Option :: Some (2000u64) }"), "{out}");
        let none = errors_of(quote!());
        assert!(none.contains("take : :: core :: option :: Option :: None"), "{none}");
    }

    #[test]
    fn concurrency_keys_are_emitted_and_checked() {
        let out = errors_of(quote!(ordering = "key", max_in_flight = 256));
        assert!(!out.contains("compile_error"), "{out}");
        assert!(out.contains("ordering : :: core :: option :: Option :: Some (\"key\")"), "{out}");
        assert!(out.contains("max_in_flight : :: core :: option :: Option :: Some (256u64)"), "{out}");
        let out = errors_of(quote!(ordering = "offset", max_in_flight = 0));
        assert!(out.contains("expected \\\"partition\\\", \\\"key\\\" or \\\"none\\\""), "{out}");
        assert!(out.contains("`max_in_flight` must be 1 or more"), "{out}");
    }

    #[test]
    fn take_must_be_positive() {
        let out = errors_of(quote!(take = 0, within_ms = -1));
        assert!(out.contains("`take` must be 1 or more"), "{out}");
        assert!(out.contains("`within_ms` must be a whole number of milliseconds"), "{out}");
    }

    #[test]
    fn failure_policy_is_emitted() {
        let out = errors_of(quote!(
            topics = ["orders"],
            retries = 3,
            retry_backoff_ms = 100,
            retry_backoff_max_ms = 30_000,
            dead_letter_topic = "dlq-{topic}",
            on_decode_error = "dead_letter"
        ));
        assert!(!out.contains("compile_error"), "{out}");
        assert!(out.contains("retries : :: core :: option :: Option :: Some (3u32)"), "{out}");
        assert!(out.contains("retry_backoff_ms : :: core :: option :: Option :: Some (100u64)"), "{out}");
        assert!(out.contains("retry_backoff_max_ms : :: core :: option :: Option :: Some (30000u64)"), "{out}");
        assert!(out.contains("dead_letter_topic : :: core :: option :: Option :: Some (\"dlq-{topic}\")"), "{out}");
        assert!(out.contains("on_decode_error : :: core :: option :: Option :: Some (\"dead_letter\")"), "{out}");
    }

    #[test]
    fn failure_policy_defaults_to_none() {
        let out = errors_of(quote!(topics = ["orders"]));
        for key in ["retries", "retry_backoff_ms", "retry_backoff_max_ms", "dead_letter_topic", "on_decode_error"] {
            assert!(out.contains(&format!("{key} : :: core :: option :: Option :: None")), "{key}: {out}");
        }
    }

    #[test]
    fn failure_policy_limits_are_accepted() {
        let out = errors_of(quote!(
            retries = 4294967295,
            retry_backoff_ms = 0u64,
            retry_backoff_max_ms = 0,
            on_decode_error = "stop"
        ));
        assert!(!out.contains("compile_error"), "{out}");
        assert!(out.contains("Some (4294967295u32)"), "{out}");
        assert!(out.contains("retry_backoff_ms : :: core :: option :: Option :: Some (0u64)"), "{out}");
        assert!(out.contains("Some (\"stop\")"), "{out}");
        // Without a `dead_letter_topic`: the configuration may give it.
        let out = errors_of(quote!(on_decode_error = "dead_letter"));
        assert!(!out.contains("compile_error"), "{out}");
    }

    #[test]
    fn retries_must_be_a_whole_number() {
        for args in [quote!(retries = -1), quote!(retries = 1.5), quote!(retries = "3"), quote!(retries = x)] {
            let out = errors_of(args);
            assert!(out.contains("`retries` must be a whole number of tries, 0 or more"), "{out}");
            assert!(!out.contains("submit_worker"), "{out}");
        }
    }

    #[test]
    fn backoff_must_be_a_whole_number() {
        let out = errors_of(quote!(retry_backoff_ms = -100, retry_backoff_max_ms = 2.5));
        assert!(out.contains("`retry_backoff_ms` must be a whole number of milliseconds, 0 or more"), "{out}");
        assert!(out.contains("`retry_backoff_max_ms` must be a whole number of milliseconds, 0 or more"), "{out}");
    }

    #[test]
    fn numbers_too_large() {
        let out = errors_of(quote!(
            retries = 4294967296,
            retry_backoff_ms = 18446744073709551616,
            retry_backoff_max_ms = 99999999999999999999999999999999999999999
        ));
        assert!(out.contains("`retries` is too large: at most 4294967295 tries"), "{out}");
        assert!(out.contains("`retry_backoff_ms` is too large: at most 18446744073709551615 milliseconds"), "{out}");
        assert!(out.contains("`retry_backoff_max_ms` is too large"), "{out}");
    }

    #[test]
    fn number_with_another_type_suffix() {
        let out = errors_of(quote!(retries = 3u64, retry_backoff_ms = 100i32));
        assert!(out.contains("`retries` is a `u32`: write 3 or 3u32"), "{out}");
        assert!(out.contains("`retry_backoff_ms` is a `u64`: write 100 or 100u64"), "{out}");
        let out = errors_of(quote!(retries = 3u32, retry_backoff_ms = 100u64));
        assert!(!out.contains("compile_error"), "{out}");
    }

    #[test]
    fn dead_letter_topic_cannot_be_empty() {
        let out = errors_of(quote!(dead_letter_topic = ""));
        assert!(out.contains("`dead_letter_topic` cannot be empty"), "{out}");
        let out = errors_of(quote!(dead_letter_topic = dlq));
        assert!(out.contains("expected string literal"), "{out}");
    }

    #[test]
    fn on_decode_error_takes_two_values() {
        for args in [quote!(on_decode_error = "skip"), quote!(on_decode_error = stop), quote!(on_decode_error = "")] {
            let out = errors_of(args);
            assert!(out.contains(r#"expected \"dead_letter\" or \"stop\""#), "{out}");
        }
    }

    #[test]
    fn backoff_max_below_backoff() {
        let out = errors_of(quote!(retry_backoff_ms = 500, retry_backoff_max_ms = 100));
        assert!(out.contains("`retry_backoff_max_ms` (100) cannot be less than `retry_backoff_ms` (500)"), "{out}");
        // Equal is fine, and so is either one alone.
        for args in [
            quote!(retry_backoff_ms = 500, retry_backoff_max_ms = 500),
            quote!(retry_backoff_max_ms = 100),
            quote!(retry_backoff_ms = 500),
        ] {
            let out = errors_of(args);
            assert!(!out.contains("compile_error"), "{out}");
        }
        // An invalid value is not compared.
        let out = errors_of(quote!(retry_backoff_ms = 500, retry_backoff_max_ms = -1));
        assert!(!out.contains("cannot be less than"), "{out}");
    }

    #[test]
    fn failure_policy_mistakes_at_once() {
        let out = errors_of(quote!(retries = -3, on_decode_error = "skip", dead_letter_topic = "", nme = 1));
        assert!(out.contains("`retries` must be a whole number"), "{out}");
        assert!(out.contains(r#"expected \"dead_letter\" or \"stop\""#), "{out}");
        assert!(out.contains("`dead_letter_topic` cannot be empty"), "{out}");
        assert!(out.contains("unknown key `nme`"), "{out}");
        // The function is kept.
        assert!(out.contains("async fn handler"), "{out}");
    }

    #[test]
    fn duplicate_failure_policy_keys() {
        let out = errors_of(quote!(
            retries = 1,
            retries = 2,
            retry_backoff_ms = 1,
            retry_backoff_ms = 2,
            retry_backoff_max_ms = 10,
            retry_backoff_max_ms = 20,
            dead_letter_topic = "a",
            dead_letter_topic = "b",
            on_decode_error = "stop",
            on_decode_error = "skip"
        ));
        for key in ["retries", "retry_backoff_ms", "retry_backoff_max_ms", "dead_letter_topic", "on_decode_error"] {
            assert!(out.contains(&format!("duplicate key `{key}`")), "{key}: {out}");
        }
        // An invalid value counts as given.
        let out = errors_of(quote!(retries = -1, retries = 2));
        assert!(out.contains("duplicate key `retries`"), "{out}");
    }

    #[test]
    fn value_from_a_macro_fragment() {
        // `macro_rules!` passes a `$x:literal` in an invisible group.
        let group = |tokens: TokenStream| proc_macro2::Group::new(proc_macro2::Delimiter::None, tokens);
        let (three, stop) = (group(quote!(3)), group(quote!("stop")));
        let out = errors_of(quote!(retries = #three, on_decode_error = #stop));
        assert!(!out.contains("compile_error"), "{out}");
        assert!(out.contains("Some (3u32)"), "{out}");
    }
}
