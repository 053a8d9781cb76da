//! Validation of raw JSON data without building a tree.
//!
//! The gateway must check that a packet's data has the right shape (an
//! event is an array whose first element is a name, placeholders point at
//! real attachments) but never needs the values themselves. [`scan`] walks
//! the text once with serde's visitor API, allocating only for an event name
//! that contains escapes; the text itself is then forwarded unchanged, so
//! key order and number spelling survive byte for byte.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::Error;

/// The top-level shape of a JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape<'a> {
    Object,
    /// An array; `first` holds its first element when that is a string.
    Array {
        first: Option<Cow<'a, str>>,
    },
    String,
    /// A number, a boolean or null.
    Scalar,
}

/// Validates `json` and returns its top-level shape. With `attachments`
/// set, every `{"_placeholder":true,"num":N}` object must have an integer
/// `N` below it.
pub fn scan(json: &str, attachments: Option<usize>) -> Result<Shape<'_>, Error> {
    let illegal = Cell::new(false);
    let mut de = serde_json::Deserializer::from_str(json);
    let walk = Walk {
        attachments,
        illegal: &illegal,
        top: true,
        keep: false,
    };
    let node = walk
        .deserialize(&mut de)
        .and_then(|node| de.end().map(|()| node));
    match node {
        Ok(Node::Object) => Ok(Shape::Object),
        Ok(Node::Array(first)) => Ok(Shape::Array { first }),
        Ok(Node::Str(_)) => Ok(Shape::String),
        Ok(Node::True | Node::Int(_) | Node::Other) => Ok(Shape::Scalar),
        Err(_) if illegal.get() => Err(Error::IllegalAttachment),
        Err(_) => Err(Error::InvalidJson),
    }
}

/// What the walk remembers of a value: just enough for the checks.
enum Node<'de> {
    Object,
    Array(Option<Cow<'de, str>>),
    /// A string, kept only when asked (the first element of the top array).
    Str(Option<Cow<'de, str>>),
    True,
    Int(u64),
    Other,
}

#[derive(Clone, Copy)]
struct Walk<'c> {
    attachments: Option<usize>,
    illegal: &'c Cell<bool>,
    /// The top-level value: its first array element is kept.
    top: bool,
    /// Keep a string value.
    keep: bool,
}

impl Walk<'_> {
    fn nested(self, keep: bool) -> Self {
        Self {
            top: false,
            keep,
            ..self
        }
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = Node<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node<'de>, E> {
        Ok(if v { Node::True } else { Node::Other })
    }

    fn visit_u64<E>(self, v: u64) -> Result<Node<'de>, E> {
        Ok(Node::Int(v))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Node<'de>, E> {
        Ok(Node::Other)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Node<'de>, E> {
        Ok(Node::Other)
    }

    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Other)
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::Str(self.keep.then_some(Cow::Borrowed(v))))
    }

    fn visit_str<E>(self, v: &str) -> Result<Node<'de>, E> {
        Ok(Node::Str(self.keep.then(|| Cow::Owned(v.to_owned()))))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        let mut first = None;
        if self.top {
            if let Some(Node::Str(name)) = seq.next_element_seed(self.nested(true))? {
                first = name;
            }
        }
        while seq.next_element_seed(self.nested(false))?.is_some() {}
        Ok(Node::Array(first))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        let (mut placeholder, mut num) = (false, None);
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let value = map.next_value_seed(self.nested(false))?;
            match (key, value) {
                (Key::Placeholder, Node::True) => placeholder = true,
                (Key::Num, Node::Int(n)) => num = Some(n),
                (Key::Num, _) => num = None,
                _ => {}
            }
        }
        if let (true, Some(limit)) = (placeholder, self.attachments) {
            let valid = num.is_some_and(|n| usize::try_from(n).is_ok_and(|n| n < limit));
            if !valid {
                self.illegal.set(true);
                return Err(de::Error::custom("illegal attachments"));
            }
        }
        Ok(Node::Object)
    }
}

/// Object keys, compared without allocating.
enum Key {
    Placeholder,
    Num,
    Other,
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, v: &str) -> Result<Key, E> {
        Ok(match v {
            "_placeholder" => Key::Placeholder,
            "num" => Key::Num,
            _ => Key::Other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(scan(r#"{"a":1}"#, None), Ok(Shape::Object));
        assert_eq!(scan("[]", None), Ok(Shape::Array { first: None }));
        assert_eq!(scan("[1,\"x\"]", None), Ok(Shape::Array { first: None }));
        assert_eq!(
            scan(r#" ["ev", {"k": [1, 2]}] "#, None),
            Ok(Shape::Array {
                first: Some("ev".into())
            })
        );
        assert_eq!(
            scan(r#"["\u00e9v\n"]"#, None),
            Ok(Shape::Array {
                first: Some("év\n".into())
            })
        );
        assert_eq!(scan(r#""s""#, None), Ok(Shape::String));
        assert_eq!(scan("1", None), Ok(Shape::Scalar));
        assert_eq!(scan("null", None), Ok(Shape::Scalar));
    }

    #[test]
    fn invalid_json() {
        for bad in ["", "[", "{}}", "[1,]", "abc", "[1] x", "{\"a\"}", "'a'"] {
            assert_eq!(scan(bad, None), Err(Error::InvalidJson), "{bad:?}");
        }
        // Nesting deeper than the parser's recursion limit is an error, not
        // a stack overflow.
        let deep = "[".repeat(100_000);
        assert_eq!(scan(&deep, None), Err(Error::InvalidJson));
    }

    #[test]
    fn placeholders() {
        let ok = r#"["ev",{"_placeholder":true,"num":0},[{"x":{"num":1,"_placeholder":true}}]]"#;
        assert!(scan(ok, Some(2)).is_ok());
        assert_eq!(scan(ok, Some(1)), Err(Error::IllegalAttachment));
        // Without a binary packet placeholders are plain objects.
        assert!(scan(ok, None).is_ok());
        for bad in [
            r#"[{"_placeholder":true}]"#,
            r#"[{"_placeholder":true,"num":-1}]"#,
            r#"[{"_placeholder":true,"num":0.5}]"#,
            r#"[{"_placeholder":true,"num":"0"}]"#,
            r#"[{"_placeholder":true,"num":18446744073709551615}]"#,
        ] {
            assert_eq!(scan(bad, Some(1)), Err(Error::IllegalAttachment), "{bad}");
        }
        // Not a placeholder unless `_placeholder` is exactly `true`.
        assert!(scan(r#"[{"_placeholder":1,"num":9}]"#, Some(1)).is_ok());
    }
}
