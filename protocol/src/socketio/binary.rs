//! Binary values in packet data: placeholders and attachments.
//!
//! On the wire a binary value inside a packet's JSON is the object
//! `{"_placeholder":true,"num":N}`, and its bytes travel as the packet's
//! N-th attachment. [`to_parts`] writes any `Serialize` value that way
//! (every `serialize_bytes`, e.g. a [`Bytes`] field, becomes a
//! placeholder) and [`from_parts`] reads it back (a placeholder where the
//! target type wants bytes becomes that attachment). Gateways never call
//! these: they forward data and attachments as they are; workers and
//! emitters do.
//!
//! Both wrap serde_json rather than build a tree, so field order is kept
//! and no intermediate value is allocated.

use std::cell::RefCell;
use std::fmt;

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, Deserializer, Visitor};
use serde::ser::{self, Serialize, SerializeMap as _, Serializer};

use super::Error;

/// Writes `value` as JSON text with binary values replaced by placeholders,
/// returning the text and the attachments in placeholder order.
pub fn to_parts<T: Serialize + ?Sized>(value: &T) -> Result<(String, Vec<Bytes>), Error> {
    let attachments = RefCell::new(Vec::new());
    let mut out = Vec::with_capacity(128);
    let mut json = serde_json::Serializer::new(&mut out);
    value
        .serialize(Ser {
            inner: &mut json,
            attachments: &attachments,
        })
        .map_err(|e| Error::Serialize(e.to_string()))?;
    let text = String::from_utf8(out).map_err(|e| Error::Serialize(e.to_string()))?;
    Ok((text, attachments.into_inner()))
}

/// Reads `json`, taking binary values from `attachments` where the target
/// type asks for bytes and the JSON holds a placeholder.
pub fn from_parts<'de, T: serde::Deserialize<'de>>(
    json: &'de str,
    attachments: &[Bytes],
) -> Result<T, Error> {
    let illegal = std::cell::Cell::new(false);
    let ctx = Ctx {
        attachments,
        illegal: &illegal,
    };
    let mut json_de = serde_json::Deserializer::from_str(json);
    let value = T::deserialize(De {
        inner: &mut json_de,
        ctx,
    })
    .and_then(|v| json_de.end().map(|()| v));
    value.map_err(|e| {
        if illegal.get() {
            Error::IllegalAttachment
        } else if e.is_syntax() || e.is_eof() {
            Error::InvalidJson
        } else {
            Error::Deserialize(e.to_string())
        }
    })
}

// ---------------------------------------------------------------- writing

type Attachments<'a> = &'a RefCell<Vec<Bytes>>;

/// A value serialized through [`Ser`], so that nested bytes are seen too.
struct Wrap<'a, T: ?Sized>(&'a T, Attachments<'a>);

impl<T: Serialize + ?Sized> Serialize for Wrap<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(Ser {
            inner: s,
            attachments: self.1,
        })
    }
}

/// A placeholder object for attachment `num`.
struct Placeholder(usize);

impl Serialize for Placeholder {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("_placeholder", &true)?;
        map.serialize_entry("num", &self.0)?;
        map.end()
    }
}

struct Ser<'a, S> {
    inner: S,
    attachments: Attachments<'a>,
}

/// A compound (sequence, map, struct…) whose elements go through [`Wrap`].
struct Compound<'a, C> {
    inner: C,
    attachments: Attachments<'a>,
}

macro_rules! forward_primitives {
    ($($method:ident($ty:ty)),* $(,)?) => {$(
        fn $method(self, v: $ty) -> Result<S::Ok, S::Error> {
            self.inner.$method(v)
        }
    )*};
}

impl<'a, S: Serializer> Serializer for Ser<'a, S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Compound<'a, S::SerializeSeq>;
    type SerializeTuple = Compound<'a, S::SerializeTuple>;
    type SerializeTupleStruct = Compound<'a, S::SerializeTupleStruct>;
    type SerializeTupleVariant = Compound<'a, S::SerializeTupleVariant>;
    type SerializeMap = Compound<'a, S::SerializeMap>;
    type SerializeStruct = Compound<'a, S::SerializeStruct>;
    type SerializeStructVariant = Compound<'a, S::SerializeStructVariant>;

    forward_primitives!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_unit_struct(&'static str),
    );

    fn serialize_bytes(self, v: &[u8]) -> Result<S::Ok, S::Error> {
        let num = {
            let mut attachments = self.attachments.borrow_mut();
            attachments.push(Bytes::copy_from_slice(v));
            attachments.len() - 1
        };
        Placeholder(num).serialize(self.inner)
    }

    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        self.inner.serialize_none()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<S::Ok, S::Error> {
        self.inner.serialize_some(&Wrap(v, self.attachments))
    }

    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        self.inner.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        self.inner.serialize_unit_variant(name, index, variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        v: &T,
    ) -> Result<S::Ok, S::Error> {
        self.inner
            .serialize_newtype_struct(name, &Wrap(v, self.attachments))
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<S::Ok, S::Error> {
        self.inner
            .serialize_newtype_variant(name, index, variant, &Wrap(v, self.attachments))
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        let attachments = self.attachments;
        self.inner
            .serialize_seq(len)
            .map(|inner| Compound { inner, attachments })
    }

    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        let attachments = self.attachments;
        self.inner
            .serialize_tuple(len)
            .map(|inner| Compound { inner, attachments })
    }

    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        let attachments = self.attachments;
        self.inner
            .serialize_tuple_struct(name, len)
            .map(|inner| Compound { inner, attachments })
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        let attachments = self.attachments;
        self.inner
            .serialize_tuple_variant(name, index, variant, len)
            .map(|inner| Compound { inner, attachments })
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        let attachments = self.attachments;
        self.inner
            .serialize_map(len)
            .map(|inner| Compound { inner, attachments })
    }

    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        let attachments = self.attachments;
        self.inner
            .serialize_struct(name, len)
            .map(|inner| Compound { inner, attachments })
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        let attachments = self.attachments;
        self.inner
            .serialize_struct_variant(name, index, variant, len)
            .map(|inner| Compound { inner, attachments })
    }
}

macro_rules! compound {
    ($trait:ident, fields) => {
        impl<C: ser::$trait> ser::$trait for Compound<'_, C> {
            type Ok = C::Ok;
            type Error = C::Error;

            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                v: &T,
            ) -> Result<(), C::Error> {
                self.inner.serialize_field(key, &Wrap(v, self.attachments))
            }

            fn end(self) -> Result<C::Ok, C::Error> {
                self.inner.end()
            }
        }
    };
    ($trait:ident, $method:ident) => {
        impl<C: ser::$trait> ser::$trait for Compound<'_, C> {
            type Ok = C::Ok;
            type Error = C::Error;

            fn $method<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), C::Error> {
                self.inner.$method(&Wrap(v, self.attachments))
            }

            fn end(self) -> Result<C::Ok, C::Error> {
                self.inner.end()
            }
        }
    };
}

compound!(SerializeSeq, serialize_element);
compound!(SerializeTuple, serialize_element);
compound!(SerializeTupleStruct, serialize_field);
compound!(SerializeTupleVariant, serialize_field);
compound!(SerializeStruct, fields);
compound!(SerializeStructVariant, fields);

impl<C: ser::SerializeMap> ser::SerializeMap for Compound<'_, C> {
    type Ok = C::Ok;
    type Error = C::Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), C::Error> {
        self.inner.serialize_key(&Wrap(key, self.attachments))
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), C::Error> {
        self.inner.serialize_value(&Wrap(v, self.attachments))
    }

    fn end(self) -> Result<C::Ok, C::Error> {
        self.inner.end()
    }
}

// ---------------------------------------------------------------- reading

#[derive(Clone, Copy)]
struct Ctx<'a> {
    attachments: &'a [Bytes],
    /// Set when a placeholder points nowhere, to report it as such.
    illegal: &'a std::cell::Cell<bool>,
}

/// A deserializer whose nested values all go through it, so that every
/// request for bytes can be answered from the attachments.
struct De<'a, D> {
    inner: D,
    ctx: Ctx<'a>,
}

/// A visitor whose nested deserializers are wrapped in [`De`].
struct Vis<'a, V> {
    inner: V,
    ctx: Ctx<'a>,
}

/// A seed whose deserializer is wrapped in [`De`].
struct Seed<'a, S> {
    inner: S,
    ctx: Ctx<'a>,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(De {
            inner: d,
            ctx: self.ctx,
        })
    }
}

macro_rules! forward_deserialize {
    ($($method:ident),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.inner.$method(Vis { inner: visitor, ctx: self.ctx })
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for De<'_, D> {
    type Error = D::Error;

    forward_deserialize!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any,
    );

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_any(BytesVis {
            inner: visitor,
            ctx: self.ctx,
        })
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_any(BytesVis {
            inner: visitor,
            ctx: self.ctx,
        })
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_unit_struct(
            name,
            Vis {
                inner: visitor,
                ctx: self.ctx,
            },
        )
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_newtype_struct(
            name,
            Vis {
                inner: visitor,
                ctx: self.ctx,
            },
        )
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_tuple(
            len,
            Vis {
                inner: visitor,
                ctx: self.ctx,
            },
        )
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_tuple_struct(
            name,
            len,
            Vis {
                inner: visitor,
                ctx: self.ctx,
            },
        )
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_struct(
            name,
            fields,
            Vis {
                inner: visitor,
                ctx: self.ctx,
            },
        )
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_enum(
            name,
            variants,
            Vis {
                inner: visitor,
                ctx: self.ctx,
            },
        )
    }
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty)),* $(,)?) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Vis<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit!(
        visit_bool(bool),
        visit_i64(i64),
        visit_i128(i128),
        visit_u64(u64),
        visit_u128(u128),
        visit_f64(f64),
        visit_char(char),
        visit_str(&str),
        visit_borrowed_str(&'de str),
        visit_string(String),
        visit_bytes(&[u8]),
        visit_borrowed_bytes(&'de [u8]),
        visit_byte_buf(Vec<u8>),
    );

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(De {
            inner: d,
            ctx: self.ctx,
        })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_newtype_struct(De {
            inner: d,
            ctx: self.ctx,
        })
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(Access {
            inner: seq,
            ctx: self.ctx,
        })
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(Access {
            inner: map,
            ctx: self.ctx,
        })
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(Access {
            inner: data,
            ctx: self.ctx,
        })
    }
}

/// Sequence, map and enum access whose elements go through [`De`].
struct Access<'a, A> {
    inner: A,
    ctx: Ctx<'a>,
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Access<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.inner.next_element_seed(Seed {
            inner: seed,
            ctx: self.ctx,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Access<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.inner.next_key_seed(Seed {
            inner: seed,
            ctx: self.ctx,
        })
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.inner.next_value_seed(Seed {
            inner: seed,
            ctx: self.ctx,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'a, 'de, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Access<'a, A> {
    type Error = A::Error;
    type Variant = Access<'a, A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), A::Error> {
        let ctx = self.ctx;
        let (value, variant) = self.inner.variant_seed(Seed { inner: seed, ctx })?;
        Ok((
            value,
            Access {
                inner: variant,
                ctx,
            },
        ))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Access<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.inner.newtype_variant_seed(Seed {
            inner: seed,
            ctx: self.ctx,
        })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.inner.tuple_variant(
            len,
            Vis {
                inner: visitor,
                ctx: self.ctx,
            },
        )
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.inner.struct_variant(
            fields,
            Vis {
                inner: visitor,
                ctx: self.ctx,
            },
        )
    }
}

/// Where bytes are wanted: a placeholder object becomes its attachment;
/// anything else (an array of numbers, a string) is passed on as is.
struct BytesVis<'a, V> {
    inner: V,
    ctx: Ctx<'a>,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for BytesVis<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a binary placeholder")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<V::Value, A::Error> {
        let (mut placeholder, mut num) = (false, None);
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match &*key {
                "_placeholder" => placeholder = map.next_value::<serde_json::Value>()? == true,
                "num" => num = map.next_value::<serde_json::Value>()?.as_u64(),
                _ => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        let attachment = num
            .filter(|_| placeholder)
            .and_then(|n| usize::try_from(n).ok())
            .and_then(|n| self.ctx.attachments.get(n));
        match attachment {
            Some(bytes) => self.inner.visit_bytes(bytes),
            None => {
                self.ctx.illegal.set(true);
                Err(de::Error::custom("illegal attachments"))
            }
        }
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(seq)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<V::Value, E> {
        self.inner.visit_str(v)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<V::Value, E> {
        self.inner.visit_borrowed_str(v)
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<V::Value, E> {
        self.inner.visit_string(v)
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Kind {
        Plain,
        Blob(Bytes),
        Pair { a: Bytes, n: u8 },
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Upload {
        name: String,
        parts: Vec<Bytes>,
        icon: Option<Bytes>,
        by_name: BTreeMap<String, Bytes>,
        kind: Kind,
        tuple: (Bytes, u32),
    }

    fn b(s: &'static [u8]) -> Bytes {
        Bytes::from_static(s)
    }

    #[test]
    fn spec_example() {
        let (json, att) = to_parts(&("hello", b(&[1, 2, 3]))).unwrap();
        assert_eq!(json, r#"["hello",{"_placeholder":true,"num":0}]"#);
        assert_eq!(att, [b(&[1, 2, 3])]);
        let back: (String, Bytes) = from_parts(&json, &att).unwrap();
        assert_eq!(back, ("hello".to_owned(), b(&[1, 2, 3])));
    }

    #[test]
    fn nested_values_keep_their_order() {
        let upload = Upload {
            name: "a".into(),
            parts: vec![b(b"p0"), b(b"p1")],
            icon: Some(b(b"icon")),
            by_name: [("x".to_owned(), b(b"x"))].into_iter().collect(),
            kind: Kind::Pair { a: b(b"k"), n: 1 },
            tuple: (b(b"t"), 9),
        };
        let (json, att) = to_parts(&upload).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"name":"a","parts":[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}],"#,
                r#""icon":{"_placeholder":true,"num":2},"by_name":{"x":{"_placeholder":true,"num":3}},"#,
                r#""kind":{"Pair":{"a":{"_placeholder":true,"num":4},"n":1}},"tuple":[{"_placeholder":true,"num":5},9]}"#
            )
        );
        assert_eq!(att.len(), 6);
        assert_eq!(from_parts::<Upload>(&json, &att).unwrap(), upload);
        let blob = Kind::Blob(b(b"z"));
        let (json, att) = to_parts(&blob).unwrap();
        assert_eq!(from_parts::<Kind>(&json, &att).unwrap(), blob);
        assert_eq!(from_parts::<Kind>(r#""Plain""#, &[]).unwrap(), Kind::Plain);
    }

    #[test]
    fn without_binary_the_json_is_serde_jsons() {
        let value = serde_json::json!({"z": 1, "a": [1.5, "x", null, true]});
        let (json, att) = to_parts(&value).unwrap();
        assert_eq!(json, serde_json::to_string(&value).unwrap());
        assert!(att.is_empty());
        // Byte arrays written as numbers are still read as bytes.
        let v: Bytes = from_parts("[1,2]", &[]).unwrap();
        assert_eq!(v, b(&[1, 2]));
    }

    #[test]
    fn errors() {
        let one = [b(b"x")];
        let bad = |json: &str| from_parts::<(String, Bytes)>(json, &one).unwrap_err();
        assert_eq!(
            bad(r#"["a",{"_placeholder":true,"num":1}]"#),
            Error::IllegalAttachment
        );
        assert_eq!(
            bad(r#"["a",{"_placeholder":true,"num":-1}]"#),
            Error::IllegalAttachment
        );
        assert_eq!(
            bad(r#"["a",{"_placeholder":true,"num":"0"}]"#),
            Error::IllegalAttachment
        );
        assert_eq!(
            bad(r#"["a",{"_placeholder":true}]"#),
            Error::IllegalAttachment
        );
        assert_eq!(
            bad(r#"["a",{"_placeholder":"yes","num":0}]"#),
            Error::IllegalAttachment
        );
        assert_eq!(
            bad(r#"["a",{"_placeholder":true,"num":0}"#),
            Error::InvalidJson
        );
        assert_eq!(
            bad(r#"["a",{"_placeholder":true,"num":0}] x"#),
            Error::InvalidJson
        );
        assert!(matches!(
            bad(r#"[1,{"_placeholder":true,"num":0}]"#),
            Error::Deserialize(_)
        ));
        let map_keys = [(vec![1u8], 1u8)].into_iter().collect::<BTreeMap<_, _>>();
        assert!(matches!(to_parts(&map_keys), Err(Error::Serialize(_))));
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Random {
        text: String,
        n: i64,
        blobs: Vec<Bytes>,
        maybe: Option<Bytes>,
    }

    proptest! {
        #[test]
        fn roundtrip(text in ".*", n in any::<i64>(), blobs in proptest::collection::vec(any::<Vec<u8>>(), 0..4), maybe in any::<Option<Vec<u8>>>()) {
            let value = Random { text, n, blobs: blobs.into_iter().map(Bytes::from).collect(), maybe: maybe.map(Bytes::from) };
            let (json, att) = to_parts(&value).unwrap();
            prop_assert_eq!(att.len(), value.blobs.len() + usize::from(value.maybe.is_some()));
            prop_assert_eq!(from_parts::<Random>(&json, &att).unwrap(), value);
        }
    }
}
