use std::borrow::Cow;
use std::fmt::Write as _;

use bytes::Bytes;

use super::json::{Shape, scan};
use super::{DEFAULT_NAMESPACE, Error, RESERVED_EVENTS};

/// The packet type digit on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    Connect = 0,
    Disconnect = 1,
    Event = 2,
    Ack = 3,
    ConnectError = 4,
    BinaryEvent = 5,
    BinaryAck = 6,
}

/// One Socket.IO packet: a namespace and what happens in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    pub nsp: Cow<'a, str>,
    pub kind: Kind<'a>,
}

/// What a packet says. JSON data is kept as validated raw text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind<'a> {
    /// Client: join the namespace, with optional auth object.
    /// Server: accepted, with `{"sid":"…"}`.
    Connect(Option<Cow<'a, str>>),
    Disconnect,
    Event(Event<'a>),
    Ack(Ack<'a>),
    /// Refused connect, with an object (or, from old servers, a string).
    ConnectError(Cow<'a, str>),
}

/// An event: a JSON array whose first element is the event name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    name: Cow<'a, str>,
    data: Cow<'a, str>,
    /// Set when the sender wants an acknowledgement.
    pub id: Option<u64>,
    /// `Some` for a BINARY_EVENT: the attachments its placeholders refer to.
    pub attachments: Option<Vec<Bytes>>,
}

/// An acknowledgement: a JSON array of arguments for the ack with `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack<'a> {
    pub id: u64,
    /// The arguments as a JSON array.
    pub data: Cow<'a, str>,
    /// `Some` for a BINARY_ACK.
    pub attachments: Option<Vec<Bytes>>,
}

impl<'a> Event<'a> {
    /// An event from its name and its arguments, each one JSON text.
    pub fn new<'s>(name: &str, args: impl IntoIterator<Item = &'s str>) -> Event<'static> {
        let mut data = String::with_capacity(name.len() + 16);
        data.push('[');
        push_json_string(&mut data, name);
        for arg in args {
            data.push(',');
            data.push_str(arg);
        }
        data.push(']');
        Event {
            name: Cow::Owned(name.to_owned()),
            data: Cow::Owned(data),
            id: None,
            attachments: None,
        }
    }

    /// An event from its whole data array (`["name", args…]`), checked as a
    /// decoder would check it.
    pub fn from_data(data: Cow<'a, str>, attachments: Option<Vec<Bytes>>) -> Result<Self, Error> {
        let limit = attachments.as_ref().map(Vec::len);
        let name = event_name(&data, limit)?.into_owned();
        Ok(Event {
            name: Cow::Owned(name),
            data,
            id: None,
            attachments,
        })
    }

    /// The event name (the first element of the data).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The whole data array as JSON text, name included.
    pub fn data(&self) -> &str {
        &self.data
    }

    /// Sets the ack id.
    pub fn with_id(mut self, id: u64) -> Self {
        self.id = Some(id);
        self
    }

    pub fn into_owned(self) -> Event<'static> {
        Event {
            name: Cow::Owned(self.name.into_owned()),
            data: Cow::Owned(self.data.into_owned()),
            id: self.id,
            attachments: self.attachments,
        }
    }
}

fn event_name(data: &str, attachments: Option<usize>) -> Result<Cow<'_, str>, Error> {
    match scan(data, attachments)? {
        Shape::Array { first: Some(name) } if !RESERVED_EVENTS.contains(&&*name) => Ok(name),
        _ => Err(Error::InvalidPayload(PacketType::Event)),
    }
}

fn push_json_string(out: &mut String, s: &str) {
    // Serializing a str into a String cannot fail.
    if let Ok(quoted) = serde_json::to_string(s) {
        out.push_str(&quoted);
    }
}

impl<'a> Packet<'a> {
    pub fn new(nsp: impl Into<Cow<'a, str>>, kind: Kind<'a>) -> Self {
        Packet {
            nsp: nsp.into(),
            kind,
        }
    }

    /// The type digit this packet encodes to.
    pub fn packet_type(&self) -> PacketType {
        match &self.kind {
            Kind::Connect(_) => PacketType::Connect,
            Kind::Disconnect => PacketType::Disconnect,
            Kind::Event(e) if e.attachments.is_some() => PacketType::BinaryEvent,
            Kind::Event(_) => PacketType::Event,
            Kind::Ack(a) if a.attachments.is_some() => PacketType::BinaryAck,
            Kind::Ack(_) => PacketType::Ack,
            Kind::ConnectError(_) => PacketType::ConnectError,
        }
    }

    /// The attachments that follow the text of a binary packet.
    pub fn attachments(&self) -> &[Bytes] {
        match &self.kind {
            Kind::Event(Event {
                attachments: Some(a),
                ..
            })
            | Kind::Ack(Ack {
                attachments: Some(a),
                ..
            }) => a,
            _ => &[],
        }
    }

    pub(crate) fn attachments_mut(&mut self) -> Option<&mut Vec<Bytes>> {
        match &mut self.kind {
            Kind::Event(Event { attachments, .. }) | Kind::Ack(Ack { attachments, .. }) => {
                attachments.as_mut()
            }
            _ => None,
        }
    }

    /// Appends the text part of the packet; attachments, if any, are sent
    /// after it as binary messages.
    pub fn encode(&self, out: &mut String) {
        let ty = self.packet_type();
        out.push(char::from(b'0' + ty as u8));
        if matches!(ty, PacketType::BinaryEvent | PacketType::BinaryAck) {
            let _ = write!(out, "{}-", self.attachments().len());
        }
        if self.nsp != DEFAULT_NAMESPACE {
            out.push_str(&self.nsp);
            out.push(',');
        }
        let (id, data) = match &self.kind {
            Kind::Connect(data) => (None, data.as_deref()),
            Kind::Disconnect => (None, None),
            Kind::Event(e) => (e.id, Some(&*e.data)),
            Kind::Ack(a) => (Some(a.id), Some(&*a.data)),
            Kind::ConnectError(data) => (None, Some(&**data)),
        };
        if let Some(id) = id {
            let _ = write!(out, "{id}");
        }
        if let Some(data) = data {
            out.push_str(data);
        }
    }

    /// The text part as a new string.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.encode(&mut out);
        out
    }

    /// Decodes the text part of a packet. A binary packet comes back with
    /// an empty attachment list and the number of attachments still to
    /// collect (see [`super::Decoder`], which does that).
    pub fn decode_header(text: &'a str, max_attachments: usize) -> Result<(Self, usize), Error> {
        let mut rest = text;
        let ty = match take_char(&mut rest).ok_or(Error::Empty)? {
            '0' => PacketType::Connect,
            '1' => PacketType::Disconnect,
            '2' => PacketType::Event,
            '3' => PacketType::Ack,
            '4' => PacketType::ConnectError,
            '5' => PacketType::BinaryEvent,
            '6' => PacketType::BinaryAck,
            other => return Err(Error::UnknownType(other)),
        };
        let binary = matches!(ty, PacketType::BinaryEvent | PacketType::BinaryAck);
        let mut expected = 0;
        if binary {
            let (count, after) = rest.split_once('-').ok_or(Error::InvalidAttachmentCount)?;
            expected = parse_digits(count).ok_or(Error::InvalidAttachmentCount)?;
            let expected_usize =
                usize::try_from(expected).map_err(|_| Error::InvalidAttachmentCount)?;
            if expected_usize > max_attachments {
                return Err(Error::TooManyAttachments {
                    count: expected_usize,
                    max: max_attachments,
                });
            }
            rest = after;
        }
        let nsp = if rest.starts_with('/') {
            let (nsp, after) = rest.split_once(',').unwrap_or((rest, ""));
            rest = after;
            nsp
        } else {
            DEFAULT_NAMESPACE
        };
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let (id, data) = rest.split_at(digits);
        let id = match id {
            "" => None,
            id => Some(parse_digits(id).ok_or(Error::InvalidAckId)?),
        };
        let data = (!data.is_empty()).then_some(data);
        let expected = usize::try_from(expected).unwrap_or(usize::MAX);
        let attachments = binary.then(|| Vec::with_capacity(expected));
        let limit = binary.then_some(expected);
        let invalid = Error::InvalidPayload(ty);
        let kind = match ty {
            PacketType::Connect => {
                if let Some(d) = data {
                    if scan(d, None)? != Shape::Object {
                        return Err(invalid);
                    }
                }
                Kind::Connect(data.map(Cow::Borrowed))
            }
            PacketType::Disconnect => match data {
                None => Kind::Disconnect,
                Some(_) => return Err(invalid),
            },
            PacketType::Event | PacketType::BinaryEvent => {
                let data = data.ok_or(invalid)?;
                Kind::Event(Event {
                    name: event_name(data, limit)?,
                    data: Cow::Borrowed(data),
                    id,
                    attachments,
                })
            }
            PacketType::Ack | PacketType::BinaryAck => {
                let data = data.ok_or(invalid.clone())?;
                if !matches!(scan(data, limit)?, Shape::Array { .. }) {
                    return Err(invalid);
                }
                Kind::Ack(Ack {
                    id: id.ok_or(Error::MissingAckId)?,
                    data: Cow::Borrowed(data),
                    attachments,
                })
            }
            PacketType::ConnectError => {
                let data = data.ok_or(invalid.clone())?;
                if !matches!(scan(data, None)?, Shape::Object | Shape::String) {
                    return Err(invalid);
                }
                Kind::ConnectError(Cow::Borrowed(data))
            }
        };
        Ok((Packet::new(nsp, kind), expected))
    }

    pub fn into_owned(self) -> Packet<'static> {
        let owned = |c: Cow<'_, str>| Cow::Owned(c.into_owned());
        Packet {
            nsp: owned(self.nsp),
            kind: match self.kind {
                Kind::Connect(d) => Kind::Connect(d.map(owned)),
                Kind::Disconnect => Kind::Disconnect,
                Kind::Event(e) => Kind::Event(e.into_owned()),
                Kind::Ack(a) => Kind::Ack(Ack {
                    id: a.id,
                    data: owned(a.data),
                    attachments: a.attachments,
                }),
                Kind::ConnectError(d) => Kind::ConnectError(owned(d)),
            },
        }
    }
}

fn take_char(s: &mut &str) -> Option<char> {
    let mut chars = s.chars();
    let c = chars.next()?;
    *s = chars.as_str();
    Some(c)
}

/// A non-empty run of ASCII digits as a `u64`; `None` on anything else or
/// on overflow.
fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = crate::socketio::DEFAULT_MAX_ATTACHMENTS;

    fn decode(text: &str) -> Result<(Packet<'_>, usize), Error> {
        Packet::decode_header(text, MAX)
    }

    /// Decodes `wire` to `packet` and encodes `packet` back to `wire`.
    fn both_ways(wire: &str, packet: Packet<'_>, attachments: usize) {
        let (decoded, expected) = decode(wire).unwrap_or_else(|e| panic!("{wire}: {e}"));
        assert_eq!(expected, attachments, "{wire}");
        let mut complete = decoded.clone();
        if let Some(a) = complete.attachments_mut() {
            a.extend(packet.attachments().iter().cloned());
        }
        assert_eq!(complete, packet, "{wire}");
        assert_eq!(packet.to_text(), wire);
    }

    fn event(
        nsp: &str,
        data: &str,
        id: Option<u64>,
        attachments: Option<Vec<Bytes>>,
    ) -> Packet<'static> {
        let mut e = Event::from_data(Cow::Owned(data.to_owned()), attachments).unwrap();
        e.id = id;
        Packet::new(nsp.to_owned(), Kind::Event(e))
    }

    #[test]
    fn spec_connect_and_disconnect() {
        both_ways("0", Packet::new("/", Kind::Connect(None)), 0);
        both_ways("0/admin,", Packet::new("/admin", Kind::Connect(None)), 0);
        both_ways(
            r#"0/admin,{"token":"123"}"#,
            Packet::new("/admin", Kind::Connect(Some(r#"{"token":"123"}"#.into()))),
            0,
        );
        both_ways(
            r#"0{"sid":"oSO0OpakMV_3jnilAAAA"}"#,
            Packet::new(
                "/",
                Kind::Connect(Some(r#"{"sid":"oSO0OpakMV_3jnilAAAA"}"#.into())),
            ),
            0,
        );
        both_ways(
            r#"4/admin,{"message":"Not authorized"}"#,
            Packet::new(
                "/admin",
                Kind::ConnectError(r#"{"message":"Not authorized"}"#.into()),
            ),
            0,
        );
        both_ways(
            r#"4"legacy string""#,
            Packet::new("/", Kind::ConnectError(r#""legacy string""#.into())),
            0,
        );
        both_ways("1/admin,", Packet::new("/admin", Kind::Disconnect), 0);
        both_ways("1", Packet::new("/", Kind::Disconnect), 0);
        // A namespace without the trailing comma is accepted, as the
        // reference parser does; it is encoded with the comma.
        assert_eq!(
            decode("1/admin").unwrap().0,
            Packet::new("/admin", Kind::Disconnect)
        );
    }

    #[test]
    fn spec_events_and_acks() {
        both_ways(r#"2["foo"]"#, event("/", r#"["foo"]"#, None, None), 0);
        both_ways(
            r#"2/admin,["bar"]"#,
            event("/admin", r#"["bar"]"#, None, None),
            0,
        );
        both_ways(r#"212["foo"]"#, event("/", r#"["foo"]"#, Some(12), None), 0);
        both_ways(
            r#"3/admin,13["bar"]"#,
            Packet::new(
                "/admin",
                Kind::Ack(Ack {
                    id: 13,
                    data: r#"["bar"]"#.into(),
                    attachments: None,
                }),
            ),
            0,
        );
        both_ways(
            r#"51-["baz",{"_placeholder":true,"num":0}]"#,
            event(
                "/",
                r#"["baz",{"_placeholder":true,"num":0}]"#,
                None,
                Some(vec![Bytes::from_static(&[1, 2, 3, 4])]),
            ),
            1,
        );
        both_ways(
            r#"62-/admin,15[{"_placeholder":true,"num":1},{"_placeholder":true,"num":0}]"#,
            Packet::new(
                "/admin",
                Kind::Ack(Ack {
                    id: 15,
                    data: r#"[{"_placeholder":true,"num":1},{"_placeholder":true,"num":0}]"#.into(),
                    attachments: Some(vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]),
                }),
            ),
            2,
        );
        // A binary event announcing no attachment is complete at once.
        both_ways(r#"50-["x"]"#, event("/", r#"["x"]"#, None, Some(vec![])), 0);
    }

    #[test]
    fn json_is_kept_byte_for_byte() {
        let data = r#"["ev",{"z":1,"a":1.0,"m":[1e3,-0,"\u00e9"]}, 18446744073709551616]"#;
        let wire = format!("2{data}");
        let (p, _) = decode(&wire).unwrap();
        let Kind::Event(e) = &p.kind else { panic!() };
        assert_eq!(e.data(), data);
        assert_eq!(e.name(), "ev");
        assert_eq!(p.to_text(), wire);
    }

    #[test]
    fn event_names() {
        let (p, _) = decode(r#"2["caf\u00e9 ☕",1]"#).unwrap();
        let Kind::Event(e) = p.kind else { panic!() };
        assert_eq!(e.name(), "café ☕");
        let e = Event::new("chat \"x\"", [r#"{"a":1}"#, "2"]).with_id(7);
        assert_eq!(e.data(), r#"["chat \"x\"",{"a":1},2]"#);
        assert_eq!(
            Packet::new("/", Kind::Event(e)).to_text(),
            r#"27["chat \"x\"",{"a":1},2]"#
        );
    }

    #[test]
    fn long_ack_ids() {
        let (p, _) = decode(r#"218446744073709551615["x"]"#).unwrap();
        let Kind::Event(e) = p.kind else { panic!() };
        assert_eq!(e.id, Some(u64::MAX));
        assert_eq!(
            decode(r#"218446744073709551616["x"]"#),
            Err(Error::InvalidAckId)
        );
    }

    #[test]
    fn errors() {
        use PacketType as T;
        let cases: &[(&str, Error)] = &[
            ("", Error::Empty),
            ("7", Error::UnknownType('7')),
            ("x", Error::UnknownType('x')),
            ("€", Error::UnknownType('€')),
            ("2", Error::InvalidPayload(T::Event)),
            ("2{}", Error::InvalidPayload(T::Event)),
            ("2[]", Error::InvalidPayload(T::Event)),
            ("2[1]", Error::InvalidPayload(T::Event)),
            ("2abc", Error::InvalidJson),
            ("4abc", Error::InvalidJson),
            ("42abc[\"x\"]", Error::InvalidJson),
            (r#"2["x"]junk"#, Error::InvalidJson),
            (r#"2["x""#, Error::InvalidJson),
            (r#"2["connect"]"#, Error::InvalidPayload(T::Event)),
            (r#"2["disconnecting",1]"#, Error::InvalidPayload(T::Event)),
            (r#"2["removeListener"]"#, Error::InvalidPayload(T::Event)),
            ("0[]", Error::InvalidPayload(T::Connect)),
            ("0\"s\"", Error::InvalidPayload(T::Connect)),
            ("1{}", Error::InvalidPayload(T::Disconnect)),
            ("3[]", Error::MissingAckId),
            ("31{}", Error::InvalidPayload(T::Ack)),
            ("31", Error::InvalidPayload(T::Ack)),
            ("4", Error::InvalidPayload(T::ConnectError)),
            ("4[]", Error::InvalidPayload(T::ConnectError)),
            (r#"5["x"]"#, Error::InvalidAttachmentCount),
            (r#"5-["x"]"#, Error::InvalidAttachmentCount),
            (r#"5a-["x"]"#, Error::InvalidAttachmentCount),
            (r#"5+1-["x"]"#, Error::InvalidAttachmentCount),
            (
                r#"599999999999999999999-["x"]"#,
                Error::InvalidAttachmentCount,
            ),
            (
                r#"565-["x"]"#,
                Error::TooManyAttachments { count: 65, max: 64 },
            ),
            (
                r#"51-["x",{"_placeholder":true,"num":1}]"#,
                Error::IllegalAttachment,
            ),
            (
                r#"61-1[{"_placeholder":true,"num":-1}]"#,
                Error::IllegalAttachment,
            ),
            (
                r#"51-/a,["x",{"k":[{"_placeholder":true}]}]"#,
                Error::IllegalAttachment,
            ),
        ];
        for (wire, err) in cases {
            assert_eq!(decode(wire).map(|_| ()), Err(err.clone()), "{wire:?}");
        }
    }

    #[test]
    fn placeholders_nested_in_objects_and_arrays() {
        let data = r#"["up",{"files":[{"name":"a","body":{"_placeholder":true,"num":1}}],"icon":{"num":0,"_placeholder":true}}]"#;
        let wire = format!("52-{data}");
        let (p, n) = decode(&wire).unwrap();
        assert_eq!(n, 2);
        assert_eq!(p.packet_type(), PacketType::BinaryEvent);
        assert_eq!(
            decode(&format!("51-{data}")).map(|_| ()),
            Err(Error::IllegalAttachment)
        );
    }

    #[test]
    fn unicode_namespaces() {
        let p = event("/caf\u{e9}", r#"["x"]"#, Some(1), None);
        let wire = p.to_text();
        assert_eq!(wire, "2/café,1[\"x\"]");
        assert_eq!(decode(&wire).unwrap().0, p);
    }
}
