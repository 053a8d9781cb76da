//! Engine.IO packets encoded for the wire, once.
//!
//! A [`Frame`] is what a session queues: over websocket each frame is one
//! websocket message as it is; over polling the frames of one response are
//! joined into a [`payload`](super::payload). The text type is a parameter
//! so that a server can keep frames in its websocket library's shared
//! string type and hand one broadcast's bytes to every recipient without a
//! copy or a second UTF-8 check.

use bytes::Bytes;

use super::{Error, Packet};

/// One Engine.IO packet in its wire form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<T = String> {
    /// The packet's text form: its type digit, then its data (`2`,
    /// `3probe`, `4` + a Socket.IO packet, …).
    Text(T),
    /// A binary message (a Socket.IO attachment): a binary websocket
    /// message, or `b` + base64 in a polling payload.
    Binary(Bytes),
}

/// Whether `text` is the text form of a message packet (`4…`): what an
/// emit's already-encoded frame must be.
pub fn is_message(text: &[u8]) -> bool {
    text.first() == Some(&b'4')
}

impl<T: From<&'static str>> Frame<T> {
    /// The server's heartbeat ping, `2`.
    pub fn ping() -> Self {
        Self::Text(T::from("2"))
    }

    /// `3probe`: the answer to a websocket's upgrade probe.
    pub fn probe_pong() -> Self {
        Self::Text(T::from("3probe"))
    }

    /// `6`: releases a pending polling GET (upgrade, client close).
    pub fn noop() -> Self {
        Self::Text(T::from("6"))
    }

    /// `1`: the server closes the session.
    pub fn close() -> Self {
        Self::Text(T::from("1"))
    }
}

impl<T: From<String>> Frame<T> {
    /// Any packet; binary packets become binary messages.
    pub fn packet(packet: &Packet<'_>) -> Self {
        match packet {
            Packet::Binary(data) => Self::Binary(Bytes::copy_from_slice(data)),
            other => Self::Text(T::from(other.to_text())),
        }
    }

    /// A message packet whose text `write` appends after the type digit,
    /// so the text is built in place, in one allocation.
    pub fn message_with(capacity: usize, write: impl FnOnce(&mut String)) -> Self {
        let mut text = String::with_capacity(capacity.saturating_add(1));
        text.push('4');
        write(&mut text);
        Self::Text(T::from(text))
    }
}

impl<T: std::ops::Deref<Target = str>> Frame<T> {
    /// The packet this frame carries.
    pub fn decode(&self) -> Result<Packet<'_>, Error> {
        match self {
            Self::Text(text) => Packet::decode(text),
            Self::Binary(data) => Ok(Packet::Binary(data.as_ref().into())),
        }
    }

    /// Bytes on a websocket, which is what send queues are bounded by.
    pub fn len(&self) -> usize {
        match self {
            Self::Text(text) => text.len(),
            Self::Binary(data) => data.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_frames_are_the_spec_strings() {
        let wire = |f: Frame<&'static str>| match f {
            Frame::Text(t) => t,
            Frame::Binary(_) => "binary",
        };
        assert_eq!(wire(Frame::ping()), "2");
        assert_eq!(wire(Frame::probe_pong()), "3probe");
        assert_eq!(wire(Frame::noop()), "6");
        assert_eq!(wire(Frame::close()), "1");
        assert_eq!(Frame::<&str>::ping().decode(), Ok(Packet::Ping("".into())));
        assert_eq!(
            Frame::<&str>::probe_pong().decode(),
            Ok(Packet::Pong(Packet::PROBE.into()))
        );
        assert_eq!(Frame::<&str>::noop().decode(), Ok(Packet::Noop));
        assert_eq!(Frame::<&str>::close().decode(), Ok(Packet::Close));
    }

    #[test]
    fn packets_and_messages() {
        let text: Frame = Frame::packet(&Packet::Message("hi".into()));
        assert_eq!(text, Frame::Text("4hi".into()));
        assert_eq!(text.decode(), Ok(Packet::Message("hi".into())));
        let bin: Frame = Frame::packet(&Packet::Binary(vec![0xff, 0].into()));
        assert_eq!(bin, Frame::Binary(Bytes::from_static(&[0xff, 0])));
        assert_eq!(bin.decode(), Ok(Packet::Binary(vec![0xff, 0].into())));
        assert_eq!(bin.len(), 2);
        let built: Frame = Frame::message_with(8, |out| out.push_str("2[\"a\"]"));
        assert_eq!(built, Frame::Text("42[\"a\"]".into()));
        assert!(is_message(b"42[\"a\"]") && !is_message(b"2") && !is_message(b""));
        // A text frame beginning with `b` is base64, as in the reference parser.
        let b64: Frame<&str> = Frame::Text("bAA==");
        assert_eq!(b64.decode(), Ok(Packet::Binary(vec![0].into())));
    }
}
