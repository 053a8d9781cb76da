//! Event arguments: typed values in and out of the raw packet data.
//!
//! An event's data on the wire is `["name", arg1, arg2, …]`. Handlers get
//! the arguments as one typed value (usually a tuple) and emit with one
//! (a tuple, or `()` for none). Binary values (`bytes::Bytes`) travel as
//! attachments both ways.

use std::fmt;
use std::marker::PhantomData;

use bytes::Bytes;
use serde::de::{DeserializeOwned, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use sio_protocol::envelope::EncodedPacket;
use sio_protocol::socketio::{Event, Kind, Packet, binary};

use crate::Error;

/// Serializes `args` into the JSON array text and attachments of an
/// argument list.
pub(crate) fn to_array<T: Serialize + ?Sized>(args: &T) -> Result<(String, Vec<Bytes>), Error> {
    let (json, attachments) = binary::to_parts(args)?;
    if json == "null" {
        // `()`: no arguments.
        return Ok(("[]".into(), attachments));
    }
    if !json.starts_with('[') {
        return Err(Error::NotAnArray(json));
    }
    Ok((json, attachments))
}

/// The data array of an event: the name, then the arguments.
pub(crate) fn event_data<T: Serialize + ?Sized>(
    event: &str,
    args: &T,
) -> Result<(String, Vec<Bytes>), Error> {
    let (array, attachments) = to_array(args)?;
    let name = serde_json::to_string(event).map_err(|e| Error::NotAnArray(e.to_string()))?;
    let rest = array.strip_prefix('[').unwrap_or(&array);
    let data = match rest.trim_start().starts_with(']') {
        true => format!("[{name}]"),
        false => format!("[{name},{rest}"),
    };
    Ok((data, attachments))
}

/// An event packet for namespace `ns`, encoded once.
pub(crate) fn event_packet<T: Serialize + ?Sized>(
    ns: &str,
    event: &str,
    args: &T,
) -> Result<EncodedPacket, Error> {
    let (data, attachments) = event_data(event, args)?;
    encode(ns, Event::from_data(data.into(), binary_part(attachments))?)
}

fn binary_part(attachments: Vec<Bytes>) -> Option<Vec<Bytes>> {
    (!attachments.is_empty()).then_some(attachments)
}

pub(crate) fn encode(ns: &str, event: Event<'_>) -> Result<EncodedPacket, Error> {
    Ok(EncodedPacket::new(&Packet::new(ns, Kind::Event(event))))
}

/// Arguments exactly as the client sent them: a JSON array and the
/// attachments its placeholders point at. Handlers that only pass data
/// along (an echo, a relay) take and give these without parsing them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawArgs {
    /// The arguments as a JSON array, the event name left out.
    pub json: String,
    /// The binary attachments the placeholders in `json` point at.
    pub attachments: Vec<Bytes>,
}

impl RawArgs {
    /// The arguments of an event's data array.
    pub(crate) fn from_event(data: &str, attachments: &[Bytes]) -> Result<Self, Error> {
        let all: Vec<&serde_json::value::RawValue> = serde_json::from_str(data)
            .map_err(|e| sio_protocol::socketio::Error::Deserialize(e.to_string()))?;
        let args: Vec<&str> = all.iter().skip(1).map(|v| v.get()).collect();
        Ok(Self {
            json: format!("[{}]", args.join(",")),
            attachments: attachments.to_vec(),
        })
    }

    /// The data array of event `event` with these arguments.
    pub(crate) fn event_data(&self, event: &str) -> Result<String, Error> {
        let name = serde_json::to_string(event)
            .map_err(|e| sio_protocol::socketio::Error::Serialize(e.to_string()))?;
        let rest = self
            .json
            .trim()
            .strip_prefix('[')
            .ok_or_else(|| Error::NotAnArray(self.json.clone()))?;
        Ok(match rest.trim_start().starts_with(']') {
            true => format!("[{name}]"),
            false => format!("[{name},{rest}"),
        })
    }
}

/// Reads the arguments of an event's data array (the name skipped).
pub(crate) fn from_event<T: DeserializeOwned>(
    data: &str,
    attachments: &[Bytes],
) -> Result<T, Error> {
    Ok(binary::from_parts::<SkipFirst<T>>(data, attachments)?.0)
}

/// Reads an argument array (an ack's answer).
pub(crate) fn from_array<T: DeserializeOwned>(
    data: &str,
    attachments: &[Bytes],
) -> Result<T, Error> {
    Ok(binary::from_parts::<Args<T>>(data, attachments)?.0)
}

/// A sequence read as `T` after dropping its first element.
struct SkipFirst<T>(T);

/// A sequence read as `T`, extra trailing elements ignored (as a
/// JavaScript handler ignores extra arguments).
struct Args<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for SkipFirst<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(SeqVisitor::<T>(1, PhantomData))
            .map(SkipFirst)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Args<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(SeqVisitor::<T>(0, PhantomData)).map(Args)
    }
}

/// Skips `.0` elements, reads `T` from the rest, ignores what is left.
struct SeqVisitor<T>(usize, PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for SeqVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an argument list")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
        for _ in 0..self.0 {
            seq.next_element::<IgnoredAny>()?;
        }
        let value = T::deserialize(Rest { seq: &mut seq })?;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(value)
    }
}

/// The remaining elements of a sequence as a deserializer of their own.
struct Rest<'s, A> {
    seq: &'s mut A,
}

impl<'de, A: SeqAccess<'de>> Deserializer<'de> for Rest<'_, A> {
    type Error = A::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, A::Error> {
        visitor.visit_seq(self.seq)
    }

    /// `()` takes no arguments at all.
    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, A::Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_data_puts_the_name_first() {
        assert_eq!(
            event_data("chat", &("hi", 1)).unwrap().0,
            r#"["chat","hi",1]"#
        );
        assert_eq!(event_data("ping", &()).unwrap().0, r#"["ping"]"#);
        assert_eq!(event_data("v", &vec![1, 2]).unwrap().0, r#"["v",1,2]"#);
        let (data, att) = event_data("up", &(Bytes::from_static(b"x"),)).unwrap();
        assert_eq!(data, r#"["up",{"_placeholder":true,"num":0}]"#);
        assert_eq!(att.len(), 1);
        assert!(matches!(
            event_data("x", &"not a list"),
            Err(Error::NotAnArray(_))
        ));
        let packet = event_packet("/chat", "m", &("a",)).unwrap();
        assert_eq!(&packet.message[..], br#"42/chat,["m","a"]"#);
        let packet = event_packet("/", "up", &(Bytes::from_static(b"x"),)).unwrap();
        assert_eq!(
            &packet.message[..],
            br#"451-["up",{"_placeholder":true,"num":0}]"#
        );
    }

    #[test]
    fn raw_arguments_keep_their_placeholders() {
        let att = [Bytes::from_static(b"z")];
        let raw = RawArgs::from_event(r#"["ev", 1 ,{"_placeholder":true,"num":0}]"#, &att).unwrap();
        assert_eq!(raw.json, r#"[1,{"_placeholder":true,"num":0}]"#);
        assert_eq!(
            raw.event_data("echo").unwrap(),
            r#"["echo",1,{"_placeholder":true,"num":0}]"#
        );
        let none = RawArgs::from_event(r#"["ev"]"#, &[]).unwrap();
        assert_eq!(
            (none.json.as_str(), none.event_data("x").unwrap().as_str()),
            ("[]", r#"["x"]"#)
        );
    }

    #[test]
    fn arguments_are_read_after_the_name() {
        let (a, b): (String, u32) = from_event(r#"["ev","x",2]"#, &[]).unwrap();
        assert_eq!((a.as_str(), b), ("x", 2));
        let (only,): (String,) = from_event(r#"["ev","x",2,3]"#, &[]).unwrap();
        assert_eq!(only, "x", "extra arguments are ignored");
        assert!(
            from_event::<(String, u32)>(r#"["ev","x"]"#, &[]).is_err(),
            "missing arguments"
        );
        let () = from_event(r#"["ev",1]"#, &[]).unwrap();
        let all: Vec<serde_json::Value> = from_event(r#"["ev",1,"a"]"#, &[]).unwrap();
        assert_eq!(all, [serde_json::json!(1), serde_json::json!("a")]);
        let (bin,): (Bytes,) = from_event(
            r#"["ev",{"_placeholder":true,"num":0}]"#,
            &[Bytes::from_static(b"z")],
        )
        .unwrap();
        assert_eq!(bin, Bytes::from_static(b"z"));
        assert!(from_event::<(u32,)>(r#"["ev","x"]"#, &[]).is_err());
        let (ok,): (bool,) = from_array("[true]", &[]).unwrap();
        assert!(ok);
    }
}
