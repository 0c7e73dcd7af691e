//! `#[kafka_main]`: wraps `async fn main` into a synchronous `main` that hands its body to
//! the runtime's command-line entry point.

use proc_macro2::TokenStream;
use quote::quote;
use syn::ItemFn;

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
    if !args.is_empty() {
        fail(syn::Error::new_spanned(&args, "#[kafka_main] takes no arguments"));
    }
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
            ::kafka_runtime::__private::run_main(#body)
        }
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
