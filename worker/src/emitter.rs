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

use bytes::Bytes;
use serde::Serialize;
use sio_bus::Bus;
use sio_protocol::envelope::{self, Command, Emit, EmitId};
use sio_protocol::id::{GatewayId, SocketId};
use sio_protocol::subject::Subjects;

use crate::{Error, args};

/// Emits to Socket.IO clients from any process on the bus: a cron job, an
/// HTTP API, a worker.
#[derive(Debug, Clone)]
pub struct Emitter {
    pub(crate) bus: Arc<dyn Bus>,
    pub(crate) subjects: Arc<Subjects>,
}

impl Emitter {
    /// An emitter on `bus` with the default subject prefix (`sio`).
    pub fn new(bus: Arc<dyn Bus>) -> Self {
        Self {
            bus,
            subjects: Arc::new(Subjects::default()),
        }
    }

    /// An emitter for gateways started with another `--prefix`.
    pub fn with_prefix(bus: Arc<dyn Bus>, prefix: &str) -> Result<Self, Error> {
        let subjects = Subjects::new(prefix)?;
        Ok(Self {
            bus,
            subjects: Arc::new(subjects),
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
        }
    }

    /// Targets room `room` of the default namespace.
    pub fn to(&self, room: impl Into<String>) -> Operators {
        self.of("/").to(room)
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
}

impl Operators {
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
        let bus = &self.emitter.bus;
        let bytes: Bytes = envelope::encode(&emit)?.into();
        if self.rooms.is_empty() {
            return Ok(bus.publish(subjects.namespace(&self.ns), bytes).await?);
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
                    bus.publish(subjects.room(&self.ns, room), bytes.clone())
                        .await?
                }
            }
        }
        if !owners.is_empty() {
            let command: Bytes = envelope::encode(&Command::Broadcast(emit))?.into();
            for gateway in owners {
                bus.publish(subjects.gateway(gateway), command.clone())
                    .await?;
            }
        }
        Ok(())
    }
}
