//! Emitting from anywhere: to a namespace, to rooms, to sockets.
//!
//! An emit is encoded once, here, into the packet every gateway forwards
//! as is. It goes on `P.ns.<ns>` for a whole namespace, on
//! `P.room.<ns>.<room>` for each room (only gateways with members listen),
//! and straight to the owning gateway for rooms named by a socket id. Each
//! copy carries the same emit id, so a socket reached several ways gets it
//! once.

use std::collections::BTreeSet;
use std::sync::Arc;

use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sio_bus::{Bus, Keep};
use sio_protocol::envelope::{
    self, Command, ControlReply, ControlRequest, ControlResult, Emit, EmitId, Handshake, Selector,
    SocketContext,
};
use sio_protocol::id::{GatewayId, SocketId};
use sio_protocol::socketio;
use sio_protocol::subject::Subjects;

use crate::presence::Presence;
use crate::{Error, args};

/// Emits to Socket.IO clients from any process on the bus: a cron job, an
/// HTTP API, a worker.
#[derive(Debug, Clone)]
pub struct Emitter {
    pub(crate) bus: Arc<dyn Bus>,
    pub(crate) subjects: Arc<Subjects>,
    presence: Arc<Presence>,
}

impl Emitter {
    /// An emitter on `bus` with the default subject prefix (`sio`).
    pub fn new(bus: Arc<dyn Bus>) -> Self {
        Self {
            bus,
            subjects: Arc::new(Subjects::default()),
            presence: Arc::default(),
        }
    }

    /// An emitter for gateways started with another `--prefix`.
    pub fn with_prefix(bus: Arc<dyn Bus>, prefix: &str) -> Result<Self, Error> {
        let subjects = Subjects::new(prefix)?;
        Ok(Self {
            bus,
            subjects: Arc::new(subjects),
            presence: Arc::default(),
        })
    }

    /// Targets namespace `ns`.
    pub fn of(&self, ns: impl Into<String>) -> Operators {
        Operators {
            emitter: self.clone(),
            ns: ns.into(),
            rooms: Vec::new(),
            except: Vec::new(),
            volatile: false,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Asks every live gateway and gathers their answers.
    async fn control(
        &self,
        request: &ControlRequest,
        timeout: Duration,
    ) -> Result<Vec<ControlResult>, Error> {
        let expected = self.presence.live(&self.bus, &self.subjects).await?;
        let payload: Bytes = envelope::encode(request)?.into();
        let answers = self
            .bus
            .gather(self.subjects.control(), payload, expected, timeout)
            .await?;
        let mut results = Vec::with_capacity(answers.len());
        for answer in answers {
            results.push(envelope::decode_owned::<ControlReply>(&answer)?.body);
        }
        Ok(results)
    }

    /// Targets room `room` of the default namespace.
    pub fn to(&self, room: impl Into<String>) -> Operators {
        self.of("/").to(room)
    }

    /// Resolves once everything emitted so far has reached the bus server
    /// (call it before a short-lived process exits).
    pub async fn flush(&self) -> Result<(), Error> {
        Ok(self.bus.flush().await?)
    }

    /// Emits to every socket of the default namespace.
    pub async fn emit<T: Serialize + ?Sized>(&self, event: &str, args: &T) -> Result<(), Error> {
        self.of("/").emit(event, args).await
    }
}

/// Who an emit goes to: a namespace, narrowed to rooms, minus rooms.
#[derive(Debug, Clone)]
#[must_use = "an emit target does nothing until `emit` is called"]
pub struct Operators {
    emitter: Emitter,
    ns: String,
    rooms: Vec<String>,
    except: Vec<String>,
    volatile: bool,
    timeout: Duration,
}

/// How long cluster operations wait for gateways and clients by default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A socket somewhere in the cluster, as `fetch_sockets` finds it.
#[derive(Debug, Clone)]
pub struct RemoteSocket {
    context: SocketContext,
}

impl RemoteSocket {
    /// The socket id.
    pub fn id(&self) -> SocketId {
        self.context.id
    }

    /// The namespace.
    pub fn ns(&self) -> &str {
        &self.context.ns
    }

    /// What the client sent when it connected.
    pub fn handshake(&self) -> &Handshake {
        &self.context.handshake
    }

    /// The rooms the socket is in.
    pub fn rooms(&self) -> &[String] {
        &self.context.rooms
    }

    /// The socket data, as `T`.
    pub fn data<T: DeserializeOwned>(&self) -> Option<Result<T, Error>> {
        let data = self.context.data.as_deref()?;
        Some(
            serde_json::from_str(data)
                .map_err(|e| Error::Data(socketio::Error::Deserialize(e.to_string()))),
        )
    }
}

impl Operators {
    fn selector(&self) -> Selector {
        Selector {
            ns: self.ns.clone(),
            rooms: self.rooms.clone(),
            except: self.except.clone(),
        }
    }

    /// How long cluster operations wait (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The targeted sockets on every gateway.
    pub async fn fetch_sockets(&self) -> Result<Vec<RemoteSocket>, Error> {
        let request = ControlRequest::FetchSockets(self.selector());
        let mut found = Vec::new();
        for result in self.emitter.control(&request, self.timeout).await? {
            if let ControlResult::Sockets(sockets) = result {
                found.extend(sockets.into_iter().map(|context| RemoteSocket {
                    context: with_auth(context),
                }));
            }
        }
        Ok(found)
    }

    /// Puts the targeted sockets in `rooms`; returns how many there were.
    pub async fn sockets_join<I: IntoIterator<Item = R>, R: Into<String>>(
        &self,
        rooms: I,
    ) -> Result<u64, Error> {
        let rooms = rooms.into_iter().map(Into::into).collect();
        self.count(ControlRequest::SocketsJoin {
            selector: self.selector(),
            rooms,
        })
        .await
    }

    /// Takes the targeted sockets out of `rooms`.
    pub async fn sockets_leave<I: IntoIterator<Item = R>, R: Into<String>>(
        &self,
        rooms: I,
    ) -> Result<u64, Error> {
        let rooms = rooms.into_iter().map(Into::into).collect();
        self.count(ControlRequest::SocketsLeave {
            selector: self.selector(),
            rooms,
        })
        .await
    }

    /// Disconnects the targeted sockets (`close`: their whole connections).
    pub async fn disconnect_sockets(&self, close: bool) -> Result<u64, Error> {
        self.count(ControlRequest::DisconnectSockets {
            selector: self.selector(),
            close,
        })
        .await
    }

    async fn count(&self, request: ControlRequest) -> Result<u64, Error> {
        let results = self.emitter.control(&request, self.timeout).await?;
        Ok(results
            .iter()
            .map(|r| match r {
                ControlResult::Done { sockets } => *sockets,
                _ => 0,
            })
            .sum())
    }

    /// Emits to the targeted sockets and gathers every client's answer,
    /// read as `R`. If some do not answer within the timeout, the error
    /// says how many did.
    pub async fn emit_with_ack<T, R>(&self, event: &str, args: &T) -> Result<Vec<R>, Error>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let (data, attachments) = args::event_data(event, args)?;
        let request = ControlRequest::BroadcastWithAck {
            selector: self.selector(),
            data,
            attachments,
            timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
        };
        // Gateways answer when their clients did, or at the timeout.
        let results = self
            .emitter
            .control(&request, self.timeout + Duration::from_secs(2))
            .await?;
        let (mut answers, mut expected) = (Vec::new(), 0);
        for result in results {
            if let ControlResult::Acks { acks, expected: n } = result {
                expected += n;
                for ack in acks {
                    answers.push(args::from_array(&ack.data, &ack.attachments)?);
                }
            }
        }
        let answered = u64::try_from(answers.len()).unwrap_or(u64::MAX);
        if answered < expected {
            return Err(Error::PartialAcks { answered, expected });
        }
        Ok(answers)
    }

    /// Adds a room (or a socket id) to the targets; without any, the whole
    /// namespace is targeted.
    pub fn to(mut self, room: impl Into<String>) -> Self {
        self.rooms.push(room.into());
        self
    }

    /// Leaves out the members of a room (or one socket, by id).
    pub fn except(mut self, room: impl Into<String>) -> Self {
        self.except.push(room.into());
        self
    }

    /// Dropped for clients that are not ready to receive, instead of queued.
    pub fn volatile(mut self) -> Self {
        self.volatile = true;
        self
    }

    /// Emits `event` with `args` (a tuple such as `("hi", 1)`, or `()`).
    pub async fn emit<T: Serialize + ?Sized>(&self, event: &str, args: &T) -> Result<(), Error> {
        let emit = Emit {
            id: EmitId::random()?,
            ns: self.ns.clone(),
            rooms: self.rooms.clone(),
            except: self.except.clone(),
            volatile: self.volatile,
            packet: args::event_packet(&self.ns, event, args)?,
        };
        let subjects = &self.emitter.subjects;
        let id = emit.id;
        let mut copies = Copies::new(&self.emitter, id, !self.volatile);
        let bytes: Bytes = envelope::encode(&emit)?.into();
        if self.rooms.is_empty() {
            return copies.publish(subjects.namespace(&self.ns), bytes).await;
        }
        // Socket ids are rooms no gateway subscribes to: their owner gets
        // the emit directly, once per gateway.
        let mut owners: BTreeSet<GatewayId> = BTreeSet::new();
        for room in &self.rooms {
            match room.parse::<SocketId>() {
                Ok(socket) => {
                    owners.insert(socket.gateway());
                }
                Err(_) => {
                    copies
                        .publish(subjects.room(&self.ns, room), bytes.clone())
                        .await?;
                }
            }
        }
        if !owners.is_empty() {
            let command: Bytes = envelope::encode(&Command::Broadcast(emit))?.into();
            for gateway in owners {
                copies
                    .publish(subjects.emits_to(gateway), command.clone())
                    .await?;
            }
        }
        Ok(())
    }
}

/// How long an emit waits for the bus to take it, and for the stream that
/// keeps emits (with connection state recovery over NATS) to store it: an
/// emit a server restart would drop is sent again meanwhile.
const EMIT_WITHIN: Duration = Duration::from_secs(10);

/// The copies of one emit, one per subject, each published in turn and
/// stored (where a stream keeps emits) before the next: the stream holds
/// a handler's emits in the order it made them, and a copy sent again
/// is known by its own id. A volatile emit may be lost: it is published
/// once, without waiting for the store.
pub(crate) struct Copies<'a> {
    emitter: &'a Emitter,
    id: EmitId,
    kept: bool,
    sent: usize,
}

impl<'a> Copies<'a> {
    pub(crate) fn new(emitter: &'a Emitter, id: EmitId, kept: bool) -> Self {
        Self {
            emitter,
            id,
            kept,
            sent: 0,
        }
    }

    pub(crate) async fn publish(&mut self, subject: String, bytes: Bytes) -> Result<(), Error> {
        if !self.kept {
            return Ok(self.emitter.bus.publish(subject, bytes).await?);
        }
        let keep = Keep {
            stream: self.emitter.subjects.emits_stream(),
            id: format!("{:032x}.{}", self.id.0, self.sent),
            within: EMIT_WITHIN,
        };
        self.sent += 1;
        Ok(self.emitter.bus.publish_kept(subject, bytes, keep).await?)
    }
}

/// The handshake as socket.io shows it: the gateway sends no auth for a
/// CONNECT without payload, where socket.io's `handshake.auth` is `{}`.
pub(crate) fn with_auth(mut context: SocketContext) -> SocketContext {
    if context.handshake.auth.is_none() {
        context.handshake.auth = Some("{}".to_owned());
    }
    context
}
