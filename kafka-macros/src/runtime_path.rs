//! The `crate = "..."` argument both macros take: the path the generated code uses to reach
//! `kafka-runtime`, for an app that renames the dependency in its Cargo.toml.

use syn::{LitStr, Path};

/// The path used when the attribute has no `crate = "..."`.
pub fn default() -> Path {
    syn::parse_quote!(::kafka_runtime)
}

/// Parses the value of `crate = "..."`, a string literal holding a path. A value that is not
/// a path is an error at the literal.
pub fn parse(value: &LitStr) -> syn::Result<Path> {
    match value.parse::<Path>() {
        // A module path: generic arguments (`a<T>`) have no place in it.
        Ok(path) if path.segments.iter().all(|segment| segment.arguments.is_none()) => Ok(path),
        _ => Err(syn::Error::new_spanned(
            value,
            "`crate` must be a path to kafka-runtime as the app's Cargo.toml names it, for example \"my_kafka\"",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proc_macro2::Span;
    use quote::ToTokens;

    #[test]
    fn accepts_paths() {
        for value in ["my_kafka", "::my_kafka", "crate::reexports::kafka"] {
            let path = parse(&LitStr::new(value, Span::call_site())).unwrap();
            assert_eq!(path.to_token_stream().to_string().replace(' ', ""), value);
        }
    }

    #[test]
    fn rejects_what_is_not_a_path() {
        for value in ["", "my kafka", "my-kafka", "1", "my_kafka::", "my_kafka<T>", "a::<T>::b"] {
            let err = parse(&LitStr::new(value, Span::call_site())).err().unwrap();
            assert!(err.to_string().contains("`crate` must be a path"), "{value:?}: {err}");
        }
    }

    #[test]
    fn defaults_to_kafka_runtime() {
        assert_eq!(default().to_token_stream().to_string(), ":: kafka_runtime");
    }
}
