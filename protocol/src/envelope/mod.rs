//! Bus envelopes: what travels on each subject of the bus contract, as
//! postcard bytes behind a protocol version.
//!
//! | subject | body | reply |
//! | --- | --- | --- |
//! | `P.conn.<ns>` | [`ConnectRequest`] | [`ConnectReply`] |
//! | `P.ev.<ns>.<event>` | [`Events`] | [`EventReply`]s, when the gateway waits for the handlers |
//! | `P.disc.<ns>` | [`Disconnect`] | — |
//! | `P.room.<ns>.<room>`, `P.ns.<ns>` | [`Emit`] | — |
//! | `P.gw.<gateway-id>` | [`Command`] | [`CommandReply`] |
//! | `P.ctl` | [`ControlRequest`] | [`ControlReply`], one per gateway |
//! | `P.hb` | [`Presence`] | — |
//!
//! JSON data (auth, socket data, event arguments) travels as the raw text
//! the client sent: the gateway never parses it into a tree. Emits carry a
//! Socket.IO packet already encoded as its Engine.IO frames, so a gateway
//! slices them out of the envelope once for all its recipients.

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::id::{GatewayId, NoRandomness, SocketId};

mod context;

pub use context::{EncodedContext, EncodedHandshake, SocketState};

/// The envelope format revision. A receiver rejects every other value.
pub const VERSION: u16 = 5;

/// Why an envelope could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("envelope version {0} is not supported (expected {VERSION})")]
    UnknownVersion(u16),
    #[error("malformed envelope: {0}")]
    Malformed(String),
    #[error("cannot encode envelope: {0}")]
    Encode(String),
}

/// Serializes `body` behind the version.
pub fn encode<T: Serialize + ?Sized>(body: &T) -> Result<Vec<u8>, Error> {
    let out = postcard::to_extend(&VERSION, Vec::with_capacity(64))
        .map_err(|e| Error::Encode(e.to_string()))?;
    postcard::to_extend(body, out).map_err(|e| Error::Encode(e.to_string()))
}

/// Reads an envelope, checking the version before the body. Trailing bytes
/// are malformed, so a truncated or padded message never half-decodes.
pub fn decode<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, Error> {
    let malformed = |e: postcard::Error| Error::Malformed(e.to_string());
    let (version, rest) = postcard::take_from_bytes::<u16>(bytes).map_err(malformed)?;
    if version != VERSION {
        return Err(Error::UnknownVersion(version));
    }
    let (body, rest) = postcard::take_from_bytes(rest).map_err(malformed)?;
    if !rest.is_empty() {
        return Err(Error::Malformed(format!("{} trailing bytes", rest.len())));
    }
    Ok(body)
}

/// [`decode`] for bodies that own their data.
pub fn decode_owned<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    decode(bytes)
}

/// What the client sent when it connected (socket.io's `socket.handshake`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Handshake {
    /// Request headers, lower-case names, in arrival order.
    pub headers: Vec<(String, String)>,
    /// Query string parameters.
    pub query: Vec<(String, String)>,
    /// The client address (after trusted proxy headers).
    pub address: String,
    /// Milliseconds since the Unix epoch when the session was opened.
    pub issued: u64,
    /// The request URL (path and query).
    pub url: String,
    /// Whether the connection arrived over TLS.
    pub secure: bool,
    /// The CONNECT packet's auth object as JSON text, if any.
    pub auth: Option<String>,
}

/// Everything a handler knows about the socket an event came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketContext {
    /// The socket id; its gateway owns the socket.
    pub id: SocketId,
    pub ns: String,
    pub handshake: Handshake,
    /// Socket data set by the application, as JSON text.
    pub data: Option<String>,
    /// The rooms the socket is in, its own id room excluded.
    pub rooms: Vec<String>,
    /// Its state was recovered: the client came back within the
    /// connection state recovery window and kept its id, rooms and data.
    pub recovered: bool,
}

/// `P.conn.<ns>` request: a client wants to join a namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectRequest {
    pub socket: SocketContext,
}

/// `P.conn.<ns>` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnectReply {
    /// Accept, with initial socket data (JSON text) and rooms.
    Accept {
        data: Option<String>,
        rooms: Vec<String>,
    },
    /// Refuse; the client gets `connect_error` with this JSON object.
    Reject { data: String },
}

/// `P.ev.<ns>.<event>`: client events of one socket, handed over
/// together (consecutive events of one name; one, mostly), to be handled
/// one after another in this order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Events<'a> {
    /// The socket's context when the first was handed over.
    pub socket: SocketContext,
    #[serde(borrow)]
    pub events: Vec<Event<'a>>,
    /// Which hand-over of the events this is.
    pub delivery: Delivery,
}

/// One client event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event<'a> {
    #[serde(borrow)]
    pub event: Cow<'a, str>,
    /// The whole data array (`["event", args…]`) as the client sent it.
    #[serde(borrow)]
    pub data: Cow<'a, str>,
    /// Binary attachments its placeholders refer to.
    pub attachments: Vec<Bytes>,
    /// Whether the client asked for an ack.
    pub ack: bool,
}

/// How events are handed to a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Delivery {
    /// 1 for the first hand-over; more when a worker that held the events
    /// went silent and they were handed to another.
    pub attempt: u32,
    /// Milliseconds a worker may stay silent while it holds the events
    /// before the gateway hands them to another; the worker says
    /// [`EventReply::Working`] well within it. 0 when nobody waits (no
    /// reply subject).
    pub lease_ms: u32,
    /// The gateway that holds the socket, when it is not the one its id
    /// names (the session was handed over): commands for the socket go
    /// there, so they reach it even once the first gateway is gone.
    pub holder: Option<GatewayId>,
}

/// What a worker says on the reply subject of [`Events`]. Indexes count
/// from the first event of that envelope. The gateway takes the socket's
/// next events once every one was `Done`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventReply {
    /// Handlers still run: the lease is renewed.
    Working,
    /// The ack of event `index`, made while its handler still runs, or
    /// after it returned.
    Ack { index: u32, ack: AckReply },
    /// Events `first..first + outcomes.len()` finished. `unordered`: the
    /// application opted them out of per-socket order, so the gateway
    /// need not wait for such events next time.
    Done {
        first: u32,
        outcomes: Vec<Outcome>,
        unordered: bool,
    },
}

/// How one event's handler ended.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Outcome {
    /// Its ack, if it made one and it was not sent as [`EventReply::Ack`].
    pub ack: Option<AckReply>,
    /// It returned an error or panicked.
    pub failed: bool,
}

/// Reply to an emit-with-ack, and an event's ack: the ack arguments.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AckReply {
    /// The arguments as a JSON array.
    pub data: String,
    pub attachments: Vec<Bytes>,
}

/// Why a socket left its namespace, with socket.io's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DisconnectReason {
    ClientNamespaceDisconnect,
    ServerNamespaceDisconnect,
    TransportClose,
    TransportError,
    PingTimeout,
    ParseError,
    ForcedClose,
    ServerShuttingDown,
}

impl DisconnectReason {
    /// The reason string socket.io reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ClientNamespaceDisconnect => "client namespace disconnect",
            Self::ServerNamespaceDisconnect => "server namespace disconnect",
            Self::TransportClose => "transport close",
            Self::TransportError => "transport error",
            Self::PingTimeout => "ping timeout",
            Self::ParseError => "parse error",
            Self::ForcedClose => "forced close",
            Self::ServerShuttingDown => "server shutting down",
        }
    }
}

/// `P.disc.<ns>`: a socket is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disconnect {
    pub socket: SocketContext,
    pub reason: DisconnectReason,
}

/// Identifies one emit, so a socket reached through several rooms (and
/// subjects) gets it once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EmitId(pub u128);

impl EmitId {
    pub fn random() -> Result<Self, NoRandomness> {
        let mut b = [0; 16];
        getrandom::fill(&mut b).map_err(|_| NoRandomness)?;
        Ok(Self(u128::from_le_bytes(b)))
    }

    /// The offset a client recovering after this emit names: the id's
    /// low 64 bits.
    pub const fn offset(self) -> crate::socketio::recovery::Offset {
        // Truncation is the point: the low half of the id.
        #[allow(clippy::cast_possible_truncation)]
        let low = self.0 as u64;
        crate::socketio::recovery::Offset(low.to_le_bytes())
    }
}

/// A Socket.IO packet encoded once, by its sender, as the Engine.IO
/// frames it travels in: the message (`4` + the packet's text) and the
/// attachments. A gateway slices the message out of the envelope it
/// received ([`Emit::decode_shared`]) and hands the same bytes to every
/// recipient.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EncodedPacket {
    pub message: Bytes,
    pub attachments: Vec<Bytes>,
}

impl EncodedPacket {
    pub fn new(packet: &crate::socketio::Packet<'_>) -> Self {
        let mut message = String::with_capacity(64);
        message.push('4');
        packet.encode(&mut message);
        Self {
            message: Bytes::from(message),
            attachments: packet.attachments().to_vec(),
        }
    }

    /// From a Socket.IO packet's text as it is (`2["event",…]`).
    pub fn from_text(text: &str, attachments: Vec<Bytes>) -> Self {
        let mut message = Vec::with_capacity(text.len() + 1);
        message.push(b'4');
        message.extend_from_slice(text.as_bytes());
        Self {
            message: Bytes::from(message),
            attachments,
        }
    }
}

/// [`Emit`] as it lies in a received envelope, its message borrowed
/// (postcard writes a nested struct as its fields in order).
#[derive(Deserialize)]
struct EmitView<'a> {
    id: EmitId,
    ns: String,
    rooms: Vec<String>,
    except: Vec<String>,
    volatile: bool,
    message: &'a [u8],
    attachments: Vec<Bytes>,
}

/// `P.room.<ns>.<room>` and `P.ns.<ns>`: an emit to the local members of
/// `rooms` (all sockets of `ns` when empty), minus members of `except`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Emit {
    pub id: EmitId,
    pub ns: String,
    pub rooms: Vec<String>,
    pub except: Vec<String>,
    /// Dropped rather than queued for a socket that is not ready.
    pub volatile: bool,
    pub packet: EncodedPacket,
}

impl Emit {
    /// Decodes an emit whose message shares `payload`'s buffer: the one
    /// copy of a broadcast's text a gateway holds is the one it received.
    pub fn decode_shared(payload: &Bytes) -> Result<Self, Error> {
        let view: EmitView<'_> = decode(payload)?;
        Ok(Self {
            id: view.id,
            ns: view.ns,
            rooms: view.rooms,
            except: view.except,
            volatile: view.volatile,
            packet: EncodedPacket {
                message: payload.slice_ref(view.message),
                attachments: view.attachments,
            },
        })
    }
}

/// `P.gw.<gateway-id>`: a command for one gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Something for one of its sockets: the socket is looked up once.
    Socket {
        socket: SocketId,
        action: SocketCommand,
    },
    /// An emit whose targets include socket-id rooms on this gateway: the
    /// same handling as an emit on a room subject (rooms, except, and once
    /// per socket by emit id).
    Broadcast(Emit),
    /// A polling request for one of its sessions that reached another
    /// gateway: a GET (`body` empty), or a POST with its body (at most
    /// maxHttpBufferSize). Answered with [`CommandReply::Polled`].
    Poll {
        sid: crate::id::Sid,
        post: bool,
        body: Bytes,
    },
    /// The hand-over of a polling session to the gateway that holds its
    /// websocket, step 1 (a request, at the upgrade request): may it
    /// probe? Answered [`CommandReply::Probing`] (the owner's session is
    /// upgrading from now on) or [`CommandReply::UnknownSocket`].
    Probe { sid: crate::id::Sid },
    /// Step 2: the websocket answered the probe; the owner releases the
    /// pending GET with a noop so the client can pause polling.
    Probed { sid: crate::id::Sid },
    /// The websocket went away before the switch: polling goes on.
    Unprobe { sid: crate::id::Sid },
    /// Connection state recovery on another gateway, step 1 (a request):
    /// the client of a socket this gateway parked came back to `to` with
    /// `pid`. Answered [`CommandReply::Recovering`] with the socket as it
    /// is (kept here, with what reaches it, until step 2) or
    /// [`CommandReply::UnknownSocket`]; a pid is given out once.
    Recover {
        pid: crate::id::Pid,
        ns: String,
        to: GatewayId,
    },
    /// Step 2 (a request), once `to` holds the socket's subscriptions:
    /// answered [`CommandReply::Missed`], what the client missed after the
    /// emit `after` (`None`: it got none), and the socket lives on at `to`;
    /// or [`CommandReply::UnknownSocket`] (its offset is no longer kept).
    Recovered {
        pid: crate::id::Pid,
        after: Option<crate::socketio::recovery::Offset>,
    },
    /// Step 3 (a request): the client switched to the websocket at `to`.
    /// Once the session's connects are decided, the owner answers
    /// [`CommandReply::Moving`] and, until step 4, notes the emits it
    /// queues for the session (events it is handling finish there; their
    /// acks follow the socket).
    HandOver { sid: crate::id::Sid, to: GatewayId },
    /// Step 4 (a request): `to` is subscribed to everything the sockets
    /// hear. The owner answers [`CommandReply::Released`] once its own
    /// subscriptions have caught up with that moment, forgets the session
    /// (no disconnect for the workers) and forwards `P.gw` commands for
    /// its sockets to `to`.
    Release { sid: crate::id::Sid },
    /// To the gateway a socket was made on (its id names it): the socket
    /// lives on `at` now, where its client recovered it after the gateway
    /// it had moved to died; what comes for it goes there. Answered
    /// [`CommandReply::Done`].
    Lives {
        socket: SocketId,
        pid: crate::id::Pid,
        at: GatewayId,
    },
}

/// A session on its way to another gateway: what it needs to serve it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moving {
    /// Without `auth`, which is each socket's.
    pub handshake: Handshake,
    pub sockets: Vec<MovingSocket>,
}

/// One socket of a [`Moving`] session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovingSocket {
    pub id: SocketId,
    pub ns: String,
    pub state: SocketState,
    /// The next id for a server emit that asks for an ack: lower ones
    /// are awaited at the owner, which hears the client's answers through
    /// [`SocketCommand::ClientAck`].
    pub next_ack: u64,
    /// Its events are still being handled at the owner: the new gateway
    /// holds the next ones until [`SocketCommand::Settled`].
    pub busy: bool,
    /// With connection state recovery, and recoverable: how its client
    /// knows it and where its log stands, so that it stays recoverable
    /// where it goes.
    pub recovery: Option<MovingRecovery>,
}

/// A recoverable socket on its way to another gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovingRecovery {
    pub pid: crate::id::Pid,
    /// The last packet it was sent that a client gets again (`None`:
    /// none since it connected), as of the message that carries this.
    pub last: Option<crate::socketio::recovery::Offset>,
}

/// The end of a hand-over: what the owner queued for the client since
/// [`Moving`], and the emits among it (the new gateway drops its own
/// copies of those).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Released {
    pub frames: Vec<QueuedFrame>,
    pub delivered: Vec<EmitId>,
    /// The sockets as they are now (a worker may have changed their rooms
    /// or data meanwhile).
    pub sockets: Vec<MovingSocket>,
}

/// An Engine.IO message queued for a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueuedFrame {
    /// UTF-8, checked again by the receiver.
    Text(Bytes),
    Binary(Bytes),
}

/// What a [`Command::Socket`] asks of the socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SocketCommand {
    /// Emit to the socket (`socket.emit`), on the gateway's `P.to`
    /// subject; `id` is its offset, as an emit's.
    Emit {
        id: EmitId,
        volatile: bool,
        packet: EncodedPacket,
    },
    /// Emit an event and reply with the client's ack; the gateway assigns
    /// the ack id.
    EmitWithAck {
        /// The event's data array as JSON text.
        data: String,
        attachments: Vec<Bytes>,
        timeout_ms: u64,
    },
    Join {
        rooms: Vec<String>,
    },
    Leave {
        rooms: Vec<String>,
    },
    /// Disconnect the socket; with `close`, its whole client connection.
    Disconnect {
        close: bool,
    },
    /// Replace the socket's data (JSON text).
    SetData {
        data: Option<String>,
    },
    /// From the gateway a socket was handed over by: the events it was
    /// handling for the socket are done, the next may go.
    Settled,
    /// To the gateway a socket was handed over by: the client answered
    /// an emit that gateway is waiting on.
    ClientAck {
        id: u64,
        reply: AckReply,
    },
}

/// Reply to a [`Command`] sent as a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandReply {
    Done,
    /// The socket is not (or no longer) on this gateway.
    UnknownSocket,
    Ack(AckReply),
    /// The client did not answer an emit-with-ack in time.
    AckTimeout,
    /// The owner's answer to a [`Command::Poll`], as it would have sent
    /// it to the client.
    Polled {
        status: u16,
        content_type: String,
        body: Bytes,
    },
    /// The session may upgrade ([`Command::Probe`]).
    Probing,
    Moving(Moving),
    Released(Released),
    /// A parked socket another gateway may recover ([`Command::Recover`]),
    /// and the gateway that keeps it (the request may have been forwarded
    /// there): step 2 goes to it.
    Recovering {
        socket: MovingSocket,
        keeper: GatewayId,
    },
    /// What its client missed ([`Command::Recovered`]).
    Missed(Missed),
    /// The gateway asked is gone; an heir of its subject, which does not
    /// keep the socket, says so ([`Command::Recover`]).
    Departed,
    /// The socket went from here to that gateway (a hand-over, or a
    /// recovery there): ask it ([`Command::Recover`]).
    Moved(GatewayId),
}

/// The end of a recovery on another gateway: the emits the owner kept for
/// the socket after the client's offset, in the order it kept them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Missed {
    pub emits: Vec<MissedEmit>,
    /// Every emit the owner kept for it, the client's own included: the
    /// new gateway drops its copies of these.
    pub kept: Vec<EmitId>,
    /// Its events are still being handled at the owner (as in
    /// [`MovingSocket::busy`], as of now).
    pub busy: bool,
}

/// One emit a client missed, as its Engine.IO messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissedEmit {
    pub id: EmitId,
    pub frames: Vec<QueuedFrame>,
}

/// Which sockets a cluster operation applies to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Selector {
    pub ns: String,
    /// Members of any of these rooms; all sockets of `ns` when empty.
    pub rooms: Vec<String>,
    /// Minus members of any of these rooms.
    pub except: Vec<String>,
}

/// `P.ctl`: a cluster operation every gateway answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlRequest {
    /// Who is there: each gateway answers with its heartbeat at once (a
    /// newcomer learns the live gateways without waiting for `P.hb`).
    Presence,
    FetchSockets(Selector),
    SocketsJoin {
        selector: Selector,
        rooms: Vec<String>,
    },
    SocketsLeave {
        selector: Selector,
        rooms: Vec<String>,
    },
    DisconnectSockets {
        selector: Selector,
        close: bool,
    },
    /// Emit an event to the selected sockets and gather their acks.
    BroadcastWithAck {
        selector: Selector,
        data: String,
        attachments: Vec<Bytes>,
        timeout_ms: u64,
    },
}

/// What one gateway answers to a [`ControlRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlReply {
    pub gateway: GatewayId,
    pub body: ControlResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlResult {
    Presence(Presence),
    Sockets(Vec<SocketContext>),
    /// How many sockets the operation touched.
    Done {
        sockets: u64,
    },
    /// The acks that arrived in time, and how many sockets were asked.
    Acks {
        acks: Vec<AckReply>,
        expected: u64,
    },
}

/// `P.hb`: a gateway announcing itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    pub gateway: GatewayId,
    /// Where clients reach it.
    pub address: String,
    pub sockets: u64,
    /// The gateway's version string.
    pub version: String,
    /// Milliseconds until the next heartbeat.
    pub interval_ms: u64,
    /// False while draining: it takes no new work.
    pub ready: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::GatewayId;

    fn socket() -> SocketContext {
        SocketContext {
            id: SocketId::from_parts(GatewayId::from_bytes([7; 8]), [9; 16]),
            ns: "/chat".into(),
            handshake: Handshake {
                headers: vec![("user-agent".into(), "node".into())],
                query: vec![("EIO".into(), "4".into())],
                address: "127.0.0.1".into(),
                issued: 1_700_000_000_000,
                url: "/socket.io/?EIO=4&transport=websocket".into(),
                secure: false,
                auth: Some(r#"{"token":"t"}"#.into()),
            },
            data: None,
            rooms: vec!["lobby".into()],
            recovered: false,
        }
    }

    #[test]
    fn version_comes_first_and_is_checked() {
        let presence = Presence {
            gateway: GatewayId::from_bytes([1; 8]),
            address: "127.0.0.1:3000".into(),
            sockets: 3,
            version: "0.1.0".into(),
            interval_ms: 5000,
            ready: true,
        };
        let bytes = encode(&presence).unwrap();
        assert_eq!(bytes.first(), Some(&5), "varint version 5");
        assert_eq!(decode_owned::<Presence>(&bytes), Ok(presence.clone()));
        let mut other = bytes.clone();
        other[0] = 4;
        assert_eq!(
            decode_owned::<Presence>(&other),
            Err(Error::UnknownVersion(4)),
            "the contexts before recovery had no recovered flag"
        );
        // A version that is not even a valid varint, truncation and padding.
        assert!(matches!(
            decode_owned::<Presence>(&[0xff; 4]),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(
            decode_owned::<Presence>(&[]),
            Err(Error::Malformed(_))
        ));
        for cut in 1..bytes.len() {
            assert!(
                matches!(
                    decode_owned::<Presence>(&bytes[..cut]),
                    Err(Error::Malformed(_))
                ),
                "{cut}"
            );
        }
        let mut padded = bytes;
        padded.push(0);
        assert!(matches!(
            decode_owned::<Presence>(&padded),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn events_borrow_from_the_message() {
        let ev = Events {
            socket: socket(),
            events: vec![Event {
                event: "chat".into(),
                data: r#"["chat",{"text":"hi"}]"#.into(),
                attachments: vec![Bytes::from_static(&[0, 1, 2])],
                ack: true,
            }],
            delivery: Delivery {
                holder: None,
                attempt: 1,
                lease_ms: 5000,
            },
        };
        let bytes = encode(&ev).unwrap();
        let back: Events<'_> = decode(&bytes).unwrap();
        assert!(matches!(back.events[0].data, Cow::Borrowed(_)));
        assert_eq!(back, ev);
    }

    #[test]
    fn an_emit_decodes_sharing_the_envelope() {
        let emit = Emit {
            id: EmitId(7),
            ns: "/".into(),
            rooms: vec!["a".into()],
            except: vec![],
            volatile: false,
            packet: EncodedPacket::from_text(r#"2["x"]"#, vec![Bytes::from_static(&[1])]),
        };
        assert_eq!(&emit.packet.message[..], br#"42["x"]"#);
        let payload = Bytes::from(encode(&emit).unwrap());
        let shared = Emit::decode_shared(&payload).unwrap();
        assert_eq!(shared, emit);
        let range = payload.as_ptr() as usize..payload.as_ptr() as usize + payload.len();
        assert!(
            range.contains(&(shared.packet.message.as_ptr() as usize)),
            "a slice, not a copy"
        );
        assert!(Emit::decode_shared(&payload.slice(..payload.len() - 1)).is_err());
    }

    #[test]
    fn every_body_round_trips() {
        let packet = EncodedPacket::from_text(r#"2["x"]"#, vec![]);
        let id = socket().id;
        let sid = crate::id::Sid::random(id.gateway()).unwrap();
        let selector = Selector {
            ns: "/".into(),
            rooms: vec!["a".into()],
            except: vec!["b".into()],
        };
        macro_rules! check {
            ($($v:expr),* $(,)?) => {$({
                let v = $v;
                assert_eq!(decode_owned(&encode(&v).unwrap()), Ok(v));
            })*};
        }
        check!(
            ConnectRequest { socket: socket() },
            ConnectReply::Accept {
                data: Some("{}".into()),
                rooms: vec!["r".into()]
            },
            ConnectReply::Reject {
                data: r#"{"message":"no"}"#.into()
            },
            AckReply {
                data: "[1]".into(),
                attachments: vec![Bytes::from_static(b"z")]
            },
            Disconnect {
                socket: socket(),
                reason: DisconnectReason::PingTimeout
            },
            Emit {
                id: EmitId(u128::MAX),
                ns: "/".into(),
                rooms: vec!["a".into(), "b".into()],
                except: vec![],
                volatile: true,
                packet: packet.clone(),
            },
            Command::Socket {
                socket: id,
                action: SocketCommand::Emit {
                    id: EmitId(7),
                    volatile: false,
                    packet: packet.clone()
                }
            },
            Command::Socket {
                socket: id,
                action: SocketCommand::EmitWithAck {
                    data: r#"["q"]"#.into(),
                    attachments: vec![],
                    timeout_ms: 5000
                }
            },
            Command::Socket {
                socket: id,
                action: SocketCommand::Join {
                    rooms: vec!["a".into()]
                }
            },
            Command::Socket {
                socket: id,
                action: SocketCommand::Leave {
                    rooms: vec!["a".into()]
                }
            },
            Command::Socket {
                socket: id,
                action: SocketCommand::Disconnect { close: true }
            },
            Command::Socket {
                socket: id,
                action: SocketCommand::Settled
            },
            Command::Socket {
                socket: id,
                action: SocketCommand::ClientAck {
                    id: 2,
                    reply: AckReply::default()
                }
            },
            Command::Socket {
                socket: id,
                action: SocketCommand::SetData {
                    data: Some("1".into())
                }
            },
            Command::Broadcast(Emit {
                id: EmitId(1),
                ns: "/".into(),
                rooms: vec![id.to_string()],
                except: vec![],
                volatile: false,
                packet: packet.clone(),
            }),
            Command::Probe { sid },
            Command::Probed { sid },
            Command::Unprobe { sid },
            Command::HandOver {
                sid,
                to: id.gateway()
            },
            Command::Release { sid },
            Command::Lives {
                socket: id,
                pid: crate::id::Pid::from_parts(id.gateway(), [3; 16]),
                at: id.gateway()
            },
            Command::Recover {
                pid: crate::id::Pid::from_parts(id.gateway(), [3; 16]),
                ns: "/".into(),
                to: id.gateway()
            },
            Command::Recovered {
                pid: crate::id::Pid::from_parts(id.gateway(), [3; 16]),
                after: Some(EmitId(9).offset())
            },
            CommandReply::Recovering {
                socket: MovingSocket {
                    id,
                    ns: "/".into(),
                    state: SocketState::default(),
                    next_ack: 0,
                    busy: false,
                    recovery: None
                },
                keeper: id.gateway()
            },
            CommandReply::Moved(id.gateway()),
            CommandReply::Missed(Missed {
                emits: vec![MissedEmit {
                    id: EmitId(10),
                    frames: vec![QueuedFrame::Text(Bytes::from_static(b"42[\"y\"]"))]
                }],
                kept: vec![EmitId(9), EmitId(10)],
                busy: false
            }),
            CommandReply::Probing,
            CommandReply::Moving(Moving {
                handshake: Handshake::default(),
                sockets: vec![MovingSocket {
                    id,
                    ns: "/".into(),
                    state: SocketState {
                        auth: Some("{}".into()),
                        data: None,
                        rooms: vec!["a".into()],
                        recovered: true
                    },
                    next_ack: 3,
                    busy: true,
                    recovery: Some(MovingRecovery {
                        pid: crate::id::Pid::from_parts(id.gateway(), [3; 16]),
                        last: Some(EmitId(9).offset())
                    })
                }]
            }),
            CommandReply::Released(Released {
                frames: vec![
                    QueuedFrame::Text(Bytes::from_static(b"42[\"x\"]")),
                    QueuedFrame::Binary(Bytes::from_static(b"\x01"))
                ],
                delivered: vec![EmitId(7)],
                sockets: vec![]
            }),
            CommandReply::Done,
            CommandReply::UnknownSocket,
            CommandReply::AckTimeout,
            CommandReply::Ack(AckReply::default()),
            ControlRequest::Presence,
            ControlRequest::FetchSockets(selector.clone()),
            ControlRequest::SocketsJoin {
                selector: selector.clone(),
                rooms: vec!["c".into()]
            },
            ControlRequest::SocketsLeave {
                selector: selector.clone(),
                rooms: vec!["c".into()]
            },
            ControlRequest::DisconnectSockets {
                selector: selector.clone(),
                close: false
            },
            ControlRequest::BroadcastWithAck {
                selector,
                data: r#"["q"]"#.into(),
                attachments: vec![],
                timeout_ms: 1
            },
            ControlReply {
                gateway: id.gateway(),
                body: ControlResult::Sockets(vec![socket()])
            },
            ControlReply {
                gateway: id.gateway(),
                body: ControlResult::Done { sockets: 2 }
            },
            ControlReply {
                gateway: id.gateway(),
                body: ControlResult::Acks {
                    acks: vec![AckReply::default()],
                    expected: 3
                }
            },
        );
    }

    #[test]
    fn reasons_use_socket_io_names() {
        assert_eq!(
            DisconnectReason::ClientNamespaceDisconnect.as_str(),
            "client namespace disconnect"
        );
        assert_eq!(
            DisconnectReason::ServerShuttingDown.as_str(),
            "server shutting down"
        );
    }

    #[test]
    fn emit_ids_are_random() {
        assert_ne!(EmitId::random().unwrap(), EmitId::random().unwrap());
    }
}
