//! How the producer turns values into payloads: JSON, raw bytes or text, or the app's own.

use std::fmt;
use std::sync::Arc;

use serde::ser::{self, Impossible, Serialize};

use crate::worker::error::WorkerError;

/// The producer's value serializer.
#[derive(Clone, Default)]
pub enum Serializer {
    /// JSON through serde (the default).
    #[default]
    Json,
    /// Bytes or text as they are: `&[u8]`, `Vec<u8>`, `&str`, `String`. Anything else is
    /// an error.
    Bytes,
    /// The app's own: gets the value as JSON and returns the payload.
    Custom(Arc<CustomSerializer>),
}

/// A serializer of the app's own: the value as JSON in, the payload out.
pub type CustomSerializer = dyn Fn(&serde_json::Value) -> Result<Vec<u8>, WorkerError> + Send + Sync;

impl Serializer {
    /// A serializer of the app's own.
    pub fn custom(f: impl Fn(&serde_json::Value) -> Result<Vec<u8>, WorkerError> + Send + Sync + 'static) -> Self {
        Serializer::Custom(Arc::new(f))
    }

    pub(crate) fn serialize<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, WorkerError> {
        match self {
            Serializer::Json => Ok(serde_json::to_vec(value)?),
            Serializer::Bytes => {
                let mut out = Vec::new();
                value.serialize(BytesSerializer { out: &mut out })?;
                Ok(out)
            }
            Serializer::Custom(f) => f(&serde_json::to_value(value)?),
        }
    }
}

impl fmt::Debug for Serializer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Serializer::Json => "Json",
            Serializer::Bytes => "Bytes",
            Serializer::Custom(_) => "Custom",
        })
    }
}

#[derive(Debug)]
struct BytesError(String);

impl fmt::Display for BytesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BytesError {}

impl ser::Error for BytesError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        BytesError(msg.to_string())
    }
}

fn not_bytes(what: &str) -> BytesError {
    BytesError(format!("the bytes serializer takes bytes or text, not {what}"))
}

/// Writes bytes and text as they are; a sequence of `u8` (a `Vec<u8>`) too.
struct BytesSerializer<'a> {
    out: &'a mut Vec<u8>,
}

/// Methods that refuse their value: `method(argument types) [-> Ok type] => "what it is";`,
/// each message prefixed with `$in`.
macro_rules! reject {
    ($in:literal; $($method:ident($($ty:ty),*) $(-> $ok:ty)? => $what:literal;)*) => {
        $(fn $method(self, $(_: $ty),*) -> Result<reject!(@ok $($ok)?), BytesError> {
            Err(not_bytes(concat!($in, $what)))
        })*
    };
    (@ok) => { () };
    (@ok $ok:ty) => { $ok };
}

/// The compound shapes neither serializer takes, with the types that go with them.
macro_rules! reject_compound {
    ($in:literal) => {
        type Ok = ();
        type Error = BytesError;
        type SerializeTuple = Impossible<(), BytesError>;
        type SerializeTupleStruct = Impossible<(), BytesError>;
        type SerializeTupleVariant = Impossible<(), BytesError>;
        type SerializeMap = Impossible<(), BytesError>;
        type SerializeStruct = Impossible<(), BytesError>;
        type SerializeStructVariant = Impossible<(), BytesError>;

        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result<(), BytesError> {
            Err(not_bytes(concat!($in, "an enum")))
        }

        reject! { $in;
            serialize_tuple(usize) -> Self::SerializeTuple => "a tuple";
            serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct => "a tuple struct";
            serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant => "an enum";
            serialize_map(Option<usize>) -> Self::SerializeMap => "a map";
            serialize_struct(&'static str, usize) -> Self::SerializeStruct => "a struct";
            serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant => "an enum";
        }
    };
}

impl<'a> ser::Serializer for BytesSerializer<'a> {
    type SerializeSeq = ByteSeq<'a>;

    fn serialize_bytes(self, v: &[u8]) -> Result<(), BytesError> {
        self.out.extend_from_slice(v);
        Ok(())
    }

    fn serialize_str(self, v: &str) -> Result<(), BytesError> {
        self.out.extend_from_slice(v.as_bytes());
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<(), BytesError> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<ByteSeq<'a>, BytesError> {
        self.out.reserve(len.unwrap_or(0));
        Ok(ByteSeq { out: self.out })
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result<(), BytesError> {
        value.serialize(self)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), BytesError> {
        value.serialize(self)
    }

    reject! { "";
        serialize_bool(bool) => "a boolean";
        serialize_i8(i8) => "a number";
        serialize_i16(i16) => "a number";
        serialize_i32(i32) => "a number";
        serialize_i64(i64) => "a number";
        serialize_u8(u8) => "a number";
        serialize_u16(u16) => "a number";
        serialize_u32(u32) => "a number";
        serialize_u64(u64) => "a number";
        serialize_f32(f32) => "a number";
        serialize_f64(f64) => "a number";
        serialize_none() => "None";
        serialize_unit() => "()";
        serialize_unit_struct(&'static str) => "a unit struct";
        serialize_unit_variant(&'static str, u32, &'static str) => "an enum";
    }

    reject_compound!("");
}

/// The elements of a `Vec<u8>`.
struct ByteSeq<'a> {
    out: &'a mut Vec<u8>,
}

impl ser::SerializeSeq for ByteSeq<'_> {
    type Ok = ();
    type Error = BytesError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), BytesError> {
        value.serialize(ByteElement { out: self.out })
    }

    fn end(self) -> Result<(), BytesError> {
        Ok(())
    }
}

/// One element of a byte sequence: only a `u8` fits.
struct ByteElement<'a> {
    out: &'a mut Vec<u8>,
}

impl ser::Serializer for ByteElement<'_> {
    type SerializeSeq = Impossible<(), BytesError>;

    fn serialize_u8(self, v: u8) -> Result<(), BytesError> {
        self.out.push(v);
        Ok(())
    }

    reject! { "";
        serialize_bool(bool) => "a list of booleans";
        serialize_i8(i8) => "a list of numbers other than bytes";
        serialize_i16(i16) => "a list of numbers other than bytes";
        serialize_i32(i32) => "a list of numbers other than bytes";
        serialize_i64(i64) => "a list of numbers other than bytes";
        serialize_u16(u16) => "a list of numbers other than bytes";
        serialize_u32(u32) => "a list of numbers other than bytes";
        serialize_u64(u64) => "a list of numbers other than bytes";
        serialize_f32(f32) => "a list of numbers other than bytes";
        serialize_f64(f64) => "a list of numbers other than bytes";
        serialize_char(char) => "a list of characters";
        serialize_str(&str) => "a list of strings";
        serialize_bytes(&[u8]) => "a nested list";
        serialize_none() => "a list with None";
        serialize_unit() => "a list of ()";
        serialize_unit_struct(&'static str) => "a list of unit structs";
        serialize_unit_variant(&'static str, u32, &'static str) => "a list of enums";
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), BytesError> {
        Err(not_bytes("a list of options"))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, _: &T) -> Result<(), BytesError> {
        Err(not_bytes("a list of structs"))
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, BytesError> {
        Err(not_bytes("a nested list"))
    }

    reject_compound!("a list holding ");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_the_default() {
        let out = Serializer::default().serialize(&serde_json::json!({"a": 1})).unwrap();
        assert_eq!(out, br#"{"a":1}"#);
    }

    #[test]
    fn bytes_takes_bytes_and_text_only() {
        let bytes = Serializer::Bytes;
        assert_eq!(bytes.serialize("text").unwrap(), b"text");
        assert_eq!(bytes.serialize(&vec![1u8, 2, 3]).unwrap(), [1, 2, 3]);
        assert_eq!(bytes.serialize(&b"raw"[..]).unwrap(), b"raw");
        let err = bytes.serialize(&serde_json::json!({"a": 1})).unwrap_err().to_string();
        assert!(err.contains("takes bytes or text, not a map"), "{err}");
        assert!(bytes.serialize(&vec![1u32]).is_err());
    }

    #[test]
    fn custom_gets_the_value() {
        let upper = Serializer::custom(|value| Ok(value.to_string().to_uppercase().into_bytes()));
        assert_eq!(upper.serialize(&"abc").unwrap(), br#""ABC""#);
    }
}
