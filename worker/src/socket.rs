//! The socket a handler serves: who it is, and what it can do.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sio_protocol::envelope::{
    self, AckReply, Command, CommandReply, Delivery, EmitId, EventReply, Handshake, SocketCommand,
    SocketContext,
};
use sio_protocol::id::{GatewayId, SocketId};
use sio_protocol::socketio;

use crate::Error;
use crate::args::{self, RawArgs};
use crate::emitter::{Copies, Emitter, Operators, with_auth};

/// A client's socket in one namespace, as a handler sees it. Cheap to
/// clone; it can be kept and used after the handler returned.
#[derive(Debug, Clone)]
pub struct Socket {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    context: SocketContext,
    emitter: Emitter,
    /// The ack, when the client asked for one.
    ack: Option<Arc<AckSlot>>,
    /// Which hand-over of the event this is (1 outside events).
    attempt: u32,
    /// The gateway holding the socket, if not the one its id names.
    holder: Option<GatewayId>,
    /// While the connect handler runs on a namespace the gateway asks
    /// about: data and rooms go into the accept reply.
    connecting: Option<Mutex<Accept>>,
}

/// What a connect handler decided: socket data and initial rooms.
#[derive(Debug, Default, Clone)]
pub(crate) struct Accept {
    pub(crate) data: Option<String>,
    pub(crate) rooms: Vec<String>,
}

impl Socket {
    pub(crate) fn new(context: SocketContext, emitter: Emitter, connecting: bool) -> Self {
        let first = Delivery {
            attempt: 1,
            ..Delivery::default()
        };
        Self::event(context, emitter, None, first).with_connecting(connecting)
    }

    /// The socket as the handler of one event sees it.
    pub(crate) fn event(
        context: SocketContext,
        emitter: Emitter,
        ack: Option<Arc<AckSlot>>,
        delivery: Delivery,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                context: with_auth(context),
                emitter,
                ack,
                attempt: delivery.attempt,
                holder: delivery.holder,
                connecting: None,
            }),
        }
    }

    fn with_connecting(mut self, connecting: bool) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.connecting = connecting.then(Mutex::default);
        }
        self
    }

    /// Which hand-over of this event the handler sees: 1, unless a worker
    /// that held it went silent past the gateway's lease (it died, or hung)
    /// and the gateway handed it to another. A handler whose effects must
    /// not happen twice keeps what it did by event and skips it when the
    /// attempt is above 1 and the work is done.
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// The decisions of a connect handler, once it returned.
    pub(crate) fn accepted(&self) -> Accept {
        self.inner
            .connecting
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default()
    }

    fn connecting<R>(&self, f: impl FnOnce(&mut Accept) -> R) -> Option<R> {
        let state = self.inner.connecting.as_ref()?;
        Some(f(&mut state.lock().unwrap_or_else(|e| e.into_inner())))
    }

    /// The gateway that holds the socket: the one its id names, unless the
    /// session was handed over to another.
    fn gateway(&self) -> GatewayId {
        self.inner.holder.unwrap_or_else(|| self.id().gateway())
    }

    /// The socket id (also the name of the socket's own room).
    pub fn id(&self) -> SocketId {
        self.inner.context.id
    }

    /// The namespace.
    pub fn ns(&self) -> &str {
        &self.inner.context.ns
    }

    /// What the client sent when it connected. Its `auth` is `{}` when
    /// the CONNECT packet carried none, as socket.io's `handshake.auth`.
    pub fn handshake(&self) -> &Handshake {
        &self.inner.context.handshake
    }

    /// The CONNECT packet's auth payload as `T`; a client that sent none
    /// gave `{}`, as in socket.io, so a `T` whose fields all have defaults
    /// reads it. Always `Some`: the `Option` is from when no payload meant
    /// `None`.
    pub fn auth<T: DeserializeOwned>(&self) -> Option<Result<T, Error>> {
        let auth = self.inner.context.handshake.auth.as_deref()?;
        Some(json(auth))
    }

    /// The socket data set by a handler, as `T`.
    pub fn data<T: DeserializeOwned>(&self) -> Option<Result<T, Error>> {
        let data = self.inner.context.data.as_deref()?;
        Some(json(data))
    }

    /// The rooms the socket was in when the event was sent.
    pub fn rooms(&self) -> &[String] {
        &self.inner.context.rooms
    }

    /// Whether its client lost its connection and came back within the
    /// gateway's connection state recovery window (socket.io's
    /// `socket.recovered`): same id, rooms and data, and every packet it
    /// missed delivered. A connect handler sees it only with
    /// `--skip-middlewares=false`; by default a recovered socket is not
    /// asked of `on_connect` again.
    pub fn recovered(&self) -> bool {
        self.inner.context.recovered
    }

    fn emitter(&self) -> &Emitter {
        &self.inner.emitter
    }

    async fn command(&self, command: Command) -> Result<CommandReply, Error> {
        let subject = self.emitter().subjects.gateway(self.gateway());
        let reply = self
            .emitter()
            .bus
            .request(
                subject,
                envelope::encode(&command)?.into(),
                Duration::from_secs(10),
            )
            .await?;
        match envelope::decode_owned(&reply)? {
            CommandReply::UnknownSocket => Err(Error::UnknownSocket(self.id().to_string())),
            other => Ok(other),
        }
    }

    /// Emits to this client only.
    pub async fn emit<T: Serialize + ?Sized>(&self, event: &str, args: &T) -> Result<(), Error> {
        let id = EmitId::random()?;
        let command = Command::Socket {
            socket: self.id(),
            action: SocketCommand::Emit {
                id,
                volatile: false,
                packet: args::event_packet(self.ns(), event, args)?,
            },
        };
        self.emit_command(id, &command).await
    }

    /// Emits arguments received untouched (see [`crate::Namespace::on_raw`]).
    pub async fn emit_raw(&self, event: &str, args: &RawArgs) -> Result<(), Error> {
        let data = args.event_data(event)?;
        let attachments = (!args.attachments.is_empty()).then(|| args.attachments.clone());
        let event = socketio::Event::from_data(data.into(), attachments)?;
        let id = EmitId::random()?;
        let command = Command::Socket {
            socket: self.id(),
            action: SocketCommand::Emit {
                id,
                volatile: false,
                packet: args::encode(self.ns(), event)?,
            },
        };
        self.emit_command(id, &command).await
    }

    /// Sends `socket.emit`'s command to the gateway holding the socket.
    async fn emit_command(&self, id: EmitId, command: &Command) -> Result<(), Error> {
        let subject = self.emitter().subjects.emits_to(self.gateway());
        let bytes = envelope::encode(command)?.into();
        Copies::new(self.emitter(), id, true)
            .publish(subject, bytes)
            .await
    }

    /// Answers the acknowledgement with arguments received untouched.
    pub async fn ack_raw(&self, args: &RawArgs) -> Result<(), Error> {
        self.answer(AckReply {
            data: args.json.clone(),
            attachments: args.attachments.clone(),
        })
        .await
    }

    /// Emits to this client and waits for its acknowledgement, read as `R`.
    pub async fn emit_with_ack<T, R>(
        &self,
        event: &str,
        args: &T,
        timeout: Duration,
    ) -> Result<R, Error>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let (data, attachments) = args::event_data(event, args)?;
        let command = Command::Socket {
            socket: self.id(),
            action: SocketCommand::EmitWithAck {
                data,
                attachments,
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            },
        };
        match self.command(command).await? {
            CommandReply::Ack(AckReply { data, attachments }) => {
                args::from_array(&data, &attachments)
            }
            CommandReply::AckTimeout => Err(Error::AckTimeout),
            _ => Err(Error::UnexpectedReply),
        }
    }

    /// Answers the client's acknowledgement request with `args`. Only the
    /// first answer counts. The ack leaves when the handler next waits or
    /// returns (with its reply that it is done, in one message); one made
    /// after the handler returned reaches the client if it comes within
    /// the gateway's `--ack-timeout`.
    pub async fn ack<T: Serialize + ?Sized>(&self, args: &T) -> Result<(), Error> {
        let (data, attachments) = args::to_array(args)?;
        self.answer(AckReply { data, attachments }).await
    }

    async fn answer(&self, answer: AckReply) -> Result<(), Error> {
        let slot = self.inner.ack.as_ref().ok_or(Error::NoAck)?;
        let Some(late) = slot.make(answer)? else {
            return Ok(());
        };
        let bytes = envelope::encode(&EventReply::Ack {
            index: slot.index,
            ack: late,
        })?;
        Ok(self
            .emitter()
            .bus
            .publish(slot.reply.clone(), bytes.into())
            .await?)
    }

    /// Whether the client asked for an acknowledgement not yet given.
    pub fn wants_ack(&self) -> bool {
        self.inner.ack.as_ref().is_some_and(|slot| slot.open())
    }

    /// Other sockets in `room` (this one left out), in this namespace.
    pub fn to(&self, room: impl Into<String>) -> Operators {
        self.broadcast().to(room)
    }

    /// Every socket of this namespace but this one.
    pub fn broadcast(&self) -> Operators {
        self.emitter().of(self.ns()).except(self.id().to_string())
    }

    /// Another namespace (or this one), with no one left out.
    pub fn of(&self, ns: impl Into<String>) -> Operators {
        self.emitter().of(ns)
    }

    /// Puts the socket in `rooms`; returns once emits to them reach it.
    pub async fn join<I, R>(&self, rooms: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = R>,
        R: Into<String>,
    {
        let rooms: Vec<String> = rooms.into_iter().map(Into::into).collect();
        if self
            .connecting(|a| a.rooms.extend(rooms.iter().cloned()))
            .is_some()
        {
            return Ok(());
        }
        self.command(Command::Socket {
            socket: self.id(),
            action: SocketCommand::Join { rooms },
        })
        .await
        .map(drop)
    }

    /// Takes the socket out of `rooms`.
    pub async fn leave<I, R>(&self, rooms: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = R>,
        R: Into<String>,
    {
        let rooms: Vec<String> = rooms.into_iter().map(Into::into).collect();
        if self
            .connecting(|a| a.rooms.retain(|r| !rooms.contains(r)))
            .is_some()
        {
            return Ok(());
        }
        self.command(Command::Socket {
            socket: self.id(),
            action: SocketCommand::Leave { rooms },
        })
        .await
        .map(drop)
    }

    /// Replaces the socket data that later handlers see.
    pub async fn set_data<T: Serialize + ?Sized>(&self, data: &T) -> Result<(), Error> {
        let json =
            serde_json::to_string(data).map_err(|e| socketio::Error::Serialize(e.to_string()))?;
        if self.connecting(|a| a.data = Some(json.clone())).is_some() {
            return Ok(());
        }
        let command = Command::Socket {
            socket: self.id(),
            action: SocketCommand::SetData { data: Some(json) },
        };
        self.command(command).await.map(drop)
    }

    /// Disconnects the socket from its namespace (`close`: the whole client
    /// connection). The client sees "io server disconnect".
    pub async fn disconnect(&self, close: bool) -> Result<(), Error> {
        self.command(Command::Socket {
            socket: self.id(),
            action: SocketCommand::Disconnect { close },
        })
        .await
        .map(drop)
    }
}

/// The ack of one event, between its handler and the worker that
/// replies to the gateway for it.
#[derive(Debug)]
pub(crate) struct AckSlot {
    /// The event's reply subject, and its place among the events handed
    /// over with it.
    reply: String,
    index: u32,
    state: Mutex<AckState>,
    /// Wakes the worker when the handler made the ack.
    pub(crate) made: tokio::sync::Notify,
}

#[derive(Debug)]
enum AckState {
    /// Not made yet, the handler runs.
    Open,
    /// Made, not sent yet.
    Made(AckReply),
    /// Sent, or on its way.
    Taken,
    /// The handler returned without it: one made now is sent at once.
    Returned,
}

impl AckSlot {
    pub(crate) fn new(reply: String, index: u32) -> Arc<Self> {
        Arc::new(Self {
            reply,
            index,
            state: Mutex::new(AckState::Open),
            made: tokio::sync::Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AckState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn open(&self) -> bool {
        matches!(*self.lock(), AckState::Open | AckState::Returned)
    }

    /// Records the handler's ack; `Some` when it must be sent by the
    /// caller, the handler having returned.
    fn make(&self, answer: AckReply) -> Result<Option<AckReply>, Error> {
        let mut state = self.lock();
        match *state {
            AckState::Open => {
                *state = AckState::Made(answer);
                drop(state);
                self.made.notify_one();
                Ok(None)
            }
            AckState::Returned => {
                *state = AckState::Taken;
                Ok(Some(answer))
            }
            AckState::Made(_) | AckState::Taken => Err(Error::NoAck),
        }
    }

    /// The ack made and not sent yet, to send now, with its event's index.
    pub(crate) fn take(&self) -> Option<(u32, AckReply)> {
        let mut state = self.lock();
        match std::mem::replace(&mut *state, AckState::Taken) {
            AckState::Made(answer) => Some((self.index, answer)),
            other => {
                *state = other;
                None
            }
        }
    }

    /// The handler returned: its ack if made and not sent yet.
    pub(crate) fn returned(&self) -> Option<AckReply> {
        let mut state = self.lock();
        match std::mem::replace(&mut *state, AckState::Taken) {
            AckState::Made(answer) => Some(answer),
            AckState::Open => {
                *state = AckState::Returned;
                None
            }
            other => {
                *state = other;
                None
            }
        }
    }
}

fn json<T: DeserializeOwned>(text: &str) -> Result<T, Error> {
    serde_json::from_str(text).map_err(|e| Error::Data(socketio::Error::Deserialize(e.to_string())))
}
