//! A socket's context kept encoded, for the envelopes that carry it.
//!
//! Every client event carries the [`SocketContext`] of its socket. A
//! gateway encodes it when it changes (connect, join, leave, set-data), not
//! per event, and splices the bytes into each envelope: an event then costs
//! one envelope write and no decode. The context is kept in three parts so
//! that the handshake, the large part, is held once per client connection
//! and shared by all its sockets: postcard writes a struct as its fields in
//! order, so the parts side by side are the context's encoding.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Delivery, DisconnectReason, Error, Event, Handshake, SocketContext, VERSION};
use crate::id::SocketId;

/// What a socket has of its own beside the handshake, which may change.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SocketState {
    /// The CONNECT packet's auth object as JSON text, if any.
    pub auth: Option<String>,
    /// Socket data set by the application, as JSON text.
    pub data: Option<String>,
    /// The rooms the socket is in, its own id room excluded.
    pub rooms: Vec<String>,
    /// Recovered (see [`SocketContext::recovered`](super::SocketContext)).
    pub recovered: bool,
}

/// A [`Handshake`] without its `auth`, encoded once per client connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedHandshake(Bytes);

impl EncodedHandshake {
    pub fn new(handshake: &Handshake) -> Result<Self, Error> {
        let shared = (
            &handshake.headers,
            &handshake.query,
            &handshake.address,
            handshake.issued,
            &handshake.url,
            handshake.secure,
        );
        let bytes = postcard::to_allocvec(&shared).map_err(|e| Error::Encode(e.to_string()))?;
        // Trimmed to its length: it lives as long as the connection.
        Ok(Self(Bytes::from(bytes.into_boxed_slice())))
    }

    /// Back to a handshake, with `auth` as given.
    pub fn decode(&self, auth: Option<String>) -> Result<Handshake, Error> {
        type Shared = (
            Vec<(String, String)>,
            Vec<(String, String)>,
            String,
            u64,
            String,
            bool,
        );
        let (headers, query, address, issued, url, secure): Shared =
            postcard::from_bytes(&self.0).map_err(|e| Error::Malformed(e.to_string()))?;
        Ok(Handshake {
            headers,
            query,
            address,
            issued,
            url,
            secure,
            auth,
        })
    }
}

/// One socket's [`SocketContext`], encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedContext {
    /// Socket id and namespace.
    head: Box<[u8]>,
    handshake: EncodedHandshake,
    /// The [`SocketState`].
    tail: Box<[u8]>,
}

fn encode_part<T: Serialize + ?Sized>(value: &T) -> Result<Box<[u8]>, Error> {
    postcard::to_allocvec(value)
        .map(Vec::into_boxed_slice)
        .map_err(|e| Error::Encode(e.to_string()))
}

impl EncodedContext {
    pub fn new(
        id: SocketId,
        ns: &str,
        handshake: EncodedHandshake,
        state: &SocketState,
    ) -> Result<Self, Error> {
        Ok(Self {
            head: encode_part(&(id, ns))?,
            handshake,
            tail: encode_part(state)?,
        })
    }

    /// The socket's own part, decoded.
    pub fn state(&self) -> Result<SocketState, Error> {
        postcard::from_bytes(&self.tail).map_err(|e| Error::Malformed(e.to_string()))
    }

    /// Replaces the socket's own part (after a join, leave or set-data).
    pub fn set_state(&mut self, state: &SocketState) -> Result<(), Error> {
        self.tail = encode_part(state)?;
        Ok(())
    }

    /// The whole context, decoded (for `fetchSockets`).
    pub fn decode(&self) -> Result<SocketContext, Error> {
        let malformed = |e: postcard::Error| Error::Malformed(e.to_string());
        let (id, ns): (SocketId, String) = postcard::from_bytes(&self.head).map_err(malformed)?;
        let state = self.state()?;
        Ok(SocketContext {
            id,
            ns,
            handshake: self.handshake.decode(state.auth)?,
            data: state.data,
            rooms: state.rooms,
            recovered: state.recovered,
        })
    }

    /// An envelope whose first field is this context and `rest` the others.
    fn envelope<T: Serialize + ?Sized>(&self, rest: &T, extra: usize) -> Result<Vec<u8>, Error> {
        let len = self.head.len() + self.handshake.0.len() + self.tail.len();
        let mut out = postcard::to_extend(&VERSION, Vec::with_capacity(len + extra + 16))
            .map_err(|e| Error::Encode(e.to_string()))?;
        out.extend_from_slice(&self.head);
        out.extend_from_slice(&self.handshake.0);
        out.extend_from_slice(&self.tail);
        postcard::to_extend(rest, out).map_err(|e| Error::Encode(e.to_string()))
    }

    /// The [`Events`](super::Events) envelope of client events of this
    /// socket.
    pub fn events(&self, events: &[Event<'_>], delivery: Delivery) -> Result<Vec<u8>, Error> {
        let extra = events
            .iter()
            .map(|e| {
                let attachments = e.attachments.iter().map(Bytes::len).sum::<usize>();
                e.event.len() + e.data.len() + attachments + 8
            })
            .sum::<usize>();
        self.envelope(&(events, delivery), extra + 8)
    }

    /// The [`Disconnect`](super::Disconnect) envelope.
    pub fn disconnect(&self, reason: DisconnectReason) -> Result<Vec<u8>, Error> {
        self.envelope(&reason, 1)
    }

    /// The [`ConnectRequest`](super::ConnectRequest) envelope.
    pub fn connect_request(&self) -> Result<Vec<u8>, Error> {
        self.envelope(&(), 0)
    }
}
