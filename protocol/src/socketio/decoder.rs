use bytes::Bytes;

use super::{DEFAULT_MAX_ATTACHMENTS, Error, Packet};

/// Incremental decoder for one connection: a binary packet's text header
/// comes first, then exactly as many binary messages as it announced.
#[derive(Debug)]
pub struct Decoder {
    max_attachments: usize,
    /// A binary packet waiting for attachments, and how many are missing.
    pending: Option<(Packet<'static>, usize)>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_ATTACHMENTS)
    }
}

impl Decoder {
    pub fn new(max_attachments: usize) -> Self {
        Self {
            max_attachments,
            pending: None,
        }
    }

    /// True while a binary packet is waiting for attachments.
    pub fn is_awaiting_attachments(&self) -> bool {
        self.pending.is_some()
    }

    /// Feeds the text of an Engine.IO message. Returns the packet when it is
    /// complete, `None` when it announced attachments.
    pub fn decode_text<'a>(&mut self, text: &'a str) -> Result<Option<Packet<'a>>, Error> {
        if self.pending.is_some() {
            return Err(Error::UnexpectedText);
        }
        let (packet, expected) = Packet::decode_header(text, self.max_attachments)?;
        if expected == 0 {
            return Ok(Some(packet));
        }
        self.pending = Some((packet.into_owned(), expected));
        Ok(None)
    }

    /// Feeds a binary Engine.IO message: the next attachment of the pending
    /// packet. Returns the packet once the last one has arrived.
    pub fn decode_binary(&mut self, data: Bytes) -> Result<Option<Packet<'static>>, Error> {
        let (mut packet, missing) = self.pending.take().ok_or(Error::UnexpectedBinary)?;
        if let Some(attachments) = packet.attachments_mut() {
            attachments.push(data);
        }
        match missing.saturating_sub(1) {
            0 => Ok(Some(packet)),
            missing => {
                self.pending = Some((packet, missing));
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socketio::Kind;

    #[test]
    fn binary_packet_is_assembled_from_its_attachments() {
        let mut d = Decoder::default();
        let header = r#"52-["up",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#;
        assert_eq!(d.decode_text(header), Ok(None));
        assert!(d.is_awaiting_attachments());
        assert_eq!(d.decode_text(r#"2["x"]"#), Err(Error::UnexpectedText));
        // The gateway closes the connection on any error, so a decoder is
        // not reused after one.
        let mut d = Decoder::default();
        assert_eq!(d.decode_text(header), Ok(None));
        assert_eq!(d.decode_binary(Bytes::from_static(b"one")), Ok(None));
        let packet = d
            .decode_binary(Bytes::from_static(b"two"))
            .unwrap()
            .unwrap();
        assert!(!d.is_awaiting_attachments());
        assert_eq!(
            packet.attachments(),
            [Bytes::from_static(b"one"), Bytes::from_static(b"two")]
        );
        let Kind::Event(e) = &packet.kind else {
            panic!()
        };
        assert_eq!(e.name(), "up");
        assert_eq!(packet.to_text(), header);
        // Back to plain packets.
        assert!(d.decode_text(r#"2["x"]"#).unwrap().is_some());
    }

    #[test]
    fn unexpected_binary() {
        let mut d = Decoder::default();
        assert_eq!(d.decode_binary(Bytes::new()), Err(Error::UnexpectedBinary));
        assert!(d.decode_text(r#"2["x"]"#).unwrap().is_some());
        assert_eq!(d.decode_binary(Bytes::new()), Err(Error::UnexpectedBinary));
    }

    #[test]
    fn attachment_limit_is_configurable() {
        let mut d = Decoder::new(1);
        assert_eq!(
            d.decode_text(r#"52-["x"]"#),
            Err(Error::TooManyAttachments { count: 2, max: 1 })
        );
        assert_eq!(d.decode_text(r#"51-["x"]"#), Ok(None));
    }
}
