use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::Error;

/// One Engine.IO packet. Text borrows from the input where it can, so
/// decoding a frame or a polling body allocates nothing for text packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// `0` + handshake JSON (server → client).
    Open(Cow<'a, str>),
    /// `1`.
    Close,
    /// `2`, `2probe` during the upgrade.
    Ping(Cow<'a, str>),
    /// `3`, `3probe` during the upgrade.
    Pong(Cow<'a, str>),
    /// `4` + text.
    Message(Cow<'a, str>),
    /// A binary message: a binary websocket frame, or `b` + base64 in polling.
    Binary(Cow<'a, [u8]>),
    /// `5`: the client switches to the probed transport.
    Upgrade,
    /// `6`: releases a pending polling GET during the upgrade.
    Noop,
}

impl<'a> Packet<'a> {
    /// The `2probe` ping a client sends over a new websocket before upgrading.
    pub const PROBE: &'static str = "probe";

    /// Decodes one packet in its text form (a websocket text frame or one
    /// record of a polling payload). As in the reference parser, data after
    /// the type of `close`, `upgrade` and `noop` is ignored.
    pub fn decode(text: &'a str) -> Result<Self, Error> {
        let mut chars = text.chars();
        let kind = chars.next().ok_or(Error::Empty)?;
        let data = chars.as_str();
        Ok(match kind {
            '0' => Packet::Open(data.into()),
            '1' => Packet::Close,
            '2' => Packet::Ping(data.into()),
            '3' => Packet::Pong(data.into()),
            '4' => Packet::Message(data.into()),
            '5' => Packet::Upgrade,
            '6' => Packet::Noop,
            'b' => Packet::Binary(
                BASE64
                    .decode(data)
                    .map_err(|_| Error::InvalidBase64)?
                    .into(),
            ),
            other => return Err(Error::UnknownType(other)),
        })
    }

    /// Appends the text form (binary as `b` + base64, as polling needs).
    pub fn encode(&self, out: &mut String) {
        let (kind, data): (char, &str) = match self {
            Packet::Open(d) => ('0', d),
            Packet::Close => ('1', ""),
            Packet::Ping(d) => ('2', d),
            Packet::Pong(d) => ('3', d),
            Packet::Message(d) => ('4', d),
            Packet::Upgrade => ('5', ""),
            Packet::Noop => ('6', ""),
            Packet::Binary(bytes) => {
                out.push('b');
                BASE64.encode_string(bytes, out);
                return;
            }
        };
        out.push(kind);
        out.push_str(data);
    }

    /// The text form as a new string.
    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(self.encoded_len_hint());
        self.encode(&mut out);
        out
    }

    /// Detaches the packet from the buffer it was decoded from.
    pub fn into_owned(self) -> Packet<'static> {
        match self {
            Packet::Open(d) => Packet::Open(d.into_owned().into()),
            Packet::Close => Packet::Close,
            Packet::Ping(d) => Packet::Ping(d.into_owned().into()),
            Packet::Pong(d) => Packet::Pong(d.into_owned().into()),
            Packet::Message(d) => Packet::Message(d.into_owned().into()),
            Packet::Binary(d) => Packet::Binary(d.into_owned().into()),
            Packet::Upgrade => Packet::Upgrade,
            Packet::Noop => Packet::Noop,
        }
    }

    fn encoded_len_hint(&self) -> usize {
        1 + match self {
            Packet::Open(d) | Packet::Ping(d) | Packet::Pong(d) | Packet::Message(d) => d.len(),
            Packet::Binary(d) => d.len().div_ceil(3) * 4,
            Packet::Close | Packet::Upgrade | Packet::Noop => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(wire: &str, packet: Packet<'_>) {
        assert_eq!(Packet::decode(wire), Ok(packet.clone()), "decode {wire:?}");
        assert_eq!(packet.to_text(), wire, "encode {packet:?}");
    }

    #[test]
    fn spec_examples() {
        roundtrip("1", Packet::Close);
        roundtrip("2", Packet::Ping("".into()));
        roundtrip("3", Packet::Pong("".into()));
        roundtrip("2probe", Packet::Ping("probe".into()));
        roundtrip("3probe", Packet::Pong("probe".into()));
        roundtrip("4hello", Packet::Message("hello".into()));
        roundtrip("4", Packet::Message("".into()));
        roundtrip("5", Packet::Upgrade);
        roundtrip("6", Packet::Noop);
        roundtrip("bAQIDBA==", Packet::Binary(vec![1, 2, 3, 4].into()));
        roundtrip("b", Packet::Binary(vec![].into()));
        roundtrip("4€ unicode ✓", Packet::Message("€ unicode ✓".into()));
    }

    #[test]
    fn trailing_data_after_dataless_types_is_ignored() {
        assert_eq!(Packet::decode("1junk"), Ok(Packet::Close));
        assert_eq!(Packet::decode("5x"), Ok(Packet::Upgrade));
        assert_eq!(Packet::decode("6x"), Ok(Packet::Noop));
    }

    #[test]
    fn errors() {
        assert_eq!(Packet::decode(""), Err(Error::Empty));
        assert_eq!(Packet::decode("7"), Err(Error::UnknownType('7')));
        assert_eq!(Packet::decode("x4"), Err(Error::UnknownType('x')));
        assert_eq!(Packet::decode("é"), Err(Error::UnknownType('é')));
        assert_eq!(Packet::decode("b!!!"), Err(Error::InvalidBase64));
    }
}
