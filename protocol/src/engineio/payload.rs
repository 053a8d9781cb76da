//! HTTP long-polling payloads: packets joined by the record separator
//! `\x1e`, binary packets as `b` + base64.
//!
//! Socket.IO packets are JSON, which escapes control characters, so a
//! separator never appears inside one; a raw Engine.IO message that holds
//! `\x1e` cannot travel over polling (the same holds for the reference
//! implementation).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::{Error, Frame, Packet};

/// The record separator between packets.
pub const SEPARATOR: char = '\x1e';

/// Decodes a polling request body into at most `max_packets` packets.
/// Stops at the first bad packet: the reference server closes the session
/// on a parse error, so the rest is never needed.
pub fn decode(body: &[u8], max_packets: usize) -> Result<Vec<Packet<'_>>, Error> {
    let text = std::str::from_utf8(body).map_err(|_| Error::InvalidUtf8)?;
    let mut packets = Vec::new();
    for record in text.split(SEPARATOR) {
        if packets.len() == max_packets {
            return Err(Error::TooManyPackets(max_packets));
        }
        packets.push(Packet::decode(record)?);
    }
    Ok(packets)
}

/// Appends `frames` as one polling response body: text frames as they
/// are, binary ones as `b` + base64.
pub fn encode<'f, T: std::ops::Deref<Target = str> + 'f>(
    frames: impl IntoIterator<Item = &'f Frame<T>>,
    out: &mut String,
) {
    for (i, frame) in frames.into_iter().enumerate() {
        if i > 0 {
            out.push(SEPARATOR);
        }
        match frame {
            Frame::Text(text) => out.push_str(text),
            Frame::Binary(data) => {
                out.push('b');
                BASE64.encode_string(data, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(packets: &[Packet<'_>]) -> Vec<Frame> {
        packets.iter().map(Frame::packet).collect()
    }

    #[test]
    fn spec_example() {
        let wire = "4hello\x1ebAQIDBA==";
        let packets = vec![
            Packet::Message("hello".into()),
            Packet::Binary(vec![1, 2, 3, 4].into()),
        ];
        assert_eq!(decode(wire.as_bytes(), 16), Ok(packets.clone()));
        let mut out = String::new();
        encode(&frames(&packets), &mut out);
        assert_eq!(out, wire);
    }

    #[test]
    fn edge_cases() {
        // An empty body is one empty record, which is not a packet.
        assert_eq!(decode(b"", 16), Err(Error::Empty));
        assert_eq!(decode(b"4a\x1e", 16), Err(Error::Empty));
        assert_eq!(decode(b"4a\x1e\x1e4b", 16), Err(Error::Empty));
        assert_eq!(decode(b"\xff\xfe", 16), Err(Error::InvalidUtf8));
        assert_eq!(decode(b"4a\x1e9", 16), Err(Error::UnknownType('9')));
        assert_eq!(decode(b"2\x1e2\x1e2", 2), Err(Error::TooManyPackets(2)));
        assert_eq!(decode(b"2\x1e2", 2).map(|p| p.len()), Ok(2));
        // JSON escapes the separator, so it survives inside a message.
        let escaped = r#"42["x","a\u001eb"]"#;
        assert_eq!(
            decode(escaped.as_bytes(), 16),
            Ok(vec![Packet::Message(escaped[1..].into())])
        );
        let mut out = String::new();
        encode(&[] as &[Frame], &mut out);
        assert_eq!(out, "");
    }

    #[test]
    fn hundred_packets() {
        let packets: Vec<_> = (0..100)
            .map(|i| Packet::Message(format!("2[\"ev\",{i}]").into()))
            .collect();
        let mut out = String::new();
        encode(&frames(&packets), &mut out);
        assert_eq!(decode(out.as_bytes(), 100), Ok(packets));
    }
}
