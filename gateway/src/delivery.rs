//! Emits in: the `P.room.<ns>.<room>` and `P.ns.<ns>` subscriptions this
//! gateway holds while it has members there (interest-based delivery), and
//! the delivery of an emit to its local recipients, framed once and shared
//! by all of them.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use axum::extract::ws::Utf8Bytes;
use sio_protocol::engineio;
use sio_protocol::envelope::{self, Command, Emit, EmitId, EncodedPacket, SocketCommand};
use sio_protocol::socketio::recovery::with_offset;
use tokio::sync::watch;

use crate::node::Node;
use crate::outbox::Frame;
use crate::recovery::{Entry, Keep};
use crate::registry::Hold;
use crate::rooms::{Interest, Target};
use crate::socket::Socket;

/// Puts a socket in `rooms` (and its namespace); resolves once the bus has
/// the subscriptions this created, so that emits to them reach it.
pub(crate) fn join(
    node: &Arc<Node>,
    socket: &Socket,
    rooms: &[String],
) -> impl Future<Output = ()> + use<> {
    let ready = node
        .registry
        .join(socket, rooms, &|target| interest(node, target));
    node.record(socket);
    wait_ready(ready)
}

/// Waits for the subscriptions, 5 s at most in all: a bus that is away
/// gets them when it is back, and nobody waits for that.
async fn wait_ready(ready: Vec<watch::Receiver<bool>>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    for mut r in ready {
        let _ = tokio::time::timeout_at(deadline, r.wait_for(|ok| *ok)).await;
    }
}

/// Subscribes to a room or namespace subject for as long as the returned
/// interest lives.
fn interest(node: &Arc<Node>, target: Target<'_>) -> Interest {
    let subject = match target {
        Target::Namespace(ns) => node.subjects.namespace(ns),
        Target::Room(ns, room) => node.subjects.room(ns, room),
    };
    let (ready_tx, ready_rx) = watch::channel(false);
    let weak = Arc::downgrade(node);
    let bus = node.bus.clone();
    let task = tokio::spawn(async move {
        let mut sub = match bus.subscribe(subject.clone()).await {
            Ok(sub) => sub,
            Err(error) => {
                tracing::error!(%subject, %error, "cannot subscribe");
                return;
            }
        };
        let _ = bus.flush().await;
        let _ = ready_tx.send(true);
        while let Some(message) = sub.next().await {
            let Some(node) = weak.upgrade() else { return };
            on_emit(&node, &message.payload);
        }
    });
    Interest::new(task.abort_handle(), ready_rx)
}

fn on_emit(node: &Arc<Node>, payload: &bytes::Bytes) {
    node.metrics.emits_received.inc();
    match node.registry.offer(payload.clone(), false) {
        Hold::Pass(payload) => deliver_payload(node, &payload),
        Hold::Held => {}
        Hold::Full => node.metrics.drop("held_overflow"),
    }
}

/// Delivers an emit envelope as it came.
pub(crate) fn deliver_payload(node: &Arc<Node>, payload: &bytes::Bytes) {
    match Emit::decode_shared(payload) {
        Ok(emit) => {
            deliver_emit(node, &emit);
        }
        Err(error) => {
            tracing::error!(%error, "bad emit envelope");
            node.metrics.drop("bad_envelope");
        }
    }
}

/// Delivers an emit to its local recipients, once per socket even when it
/// reached this gateway on several subjects; false for a copy seen before
/// (or a marker).
pub(crate) fn deliver_emit(node: &Arc<Node>, emit: &Emit) -> bool {
    if node.registry.marker(emit.id) {
        return false;
    }
    // With recovery over NATS, an emit may also come back from JetStream
    // (the bus was away): every one is told apart by id.
    let copies = emit.rooms.len() > 1 || node.durable.get().is_some();
    if copies && !node.registry.first_sight(emit.id) {
        return false;
    }
    let Some(framed) = frame(node, emit.id, &emit.packet, emit.volatile) else {
        return true;
    };
    for socket in node.registry.select(&emit.ns, &emit.rooms, &emit.except) {
        deliver(node, &socket, Some(emit.id), &framed, emit.volatile);
    }
    true
}

/// An emit's frames, framed once for all its recipients.
pub(crate) enum Framed {
    /// Not for a recovery: connection state recovery is off, or the emit
    /// is volatile or waits for an ack.
    Plain(Vec<Frame>),
    /// With its offset, kept for the recoveries of its recipients.
    Kept(Arc<Entry>),
    /// With its offset, but past the gateway's bound on what it keeps.
    Over(Vec<Frame>),
}

impl Framed {
    pub(crate) fn frames(&self) -> &[Frame] {
        match self {
            Self::Plain(frames) | Self::Over(frames) => frames,
            Self::Kept(entry) => entry.frames(),
        }
    }

    pub(crate) fn keep(&self) -> Keep<'_> {
        match self {
            Self::Plain(_) => Keep::Not,
            Self::Kept(entry) => Keep::Entry(entry),
            Self::Over(_) => Keep::Over,
        }
    }
}

/// Frames emit `id`'s packet: with connection state recovery, an event a
/// client may get again carries the emit id as its last argument (the
/// offset the client reports when it comes back), and is kept.
pub(crate) fn frame(
    node: &Node,
    id: EmitId,
    packet: &EncodedPacket,
    volatile: bool,
) -> Option<Framed> {
    let spliced = match node.config.connection_state_recovery && !volatile {
        true => with_offset(&packet.message, &id.offset()),
        false => None,
    };
    let Some(message) = spliced else {
        return packet_frames(node, packet).map(Framed::Plain);
    };
    let packet = EncodedPacket {
        message: message.into(),
        attachments: packet.attachments.clone(),
    };
    let frames = packet_frames(node, &packet)?;
    Some(match node.memory.keep(id, frames) {
        Ok(entry) => Framed::Kept(entry),
        Err(frames) => Framed::Over(frames),
    })
}

/// `socket.emit`: delivered once per emit id (with recovery over NATS it
/// may come again, read back from JetStream); false for a copy.
pub(crate) fn emit_to(
    node: &Arc<Node>,
    socket: &Socket,
    id: EmitId,
    volatile: bool,
    packet: &EncodedPacket,
) -> bool {
    if node.durable.get().is_some() && !node.registry.first_sight(id) {
        return false;
    }
    if let Some(framed) = frame(node, id, packet, volatile) {
        deliver(node, socket, Some(id), &framed, volatile);
    }
    true
}

/// An emit on `P.to.<this gateway>` read back from JetStream (or held
/// while the bus was away), delivered unless it reached here before;
/// true if it was new.
pub(crate) fn replayed(node: &Arc<Node>, payload: &bytes::Bytes) -> bool {
    match envelope::decode_owned::<Command>(payload) {
        Ok(Command::Broadcast(emit)) => deliver_emit(node, &emit),
        Ok(Command::Socket {
            socket,
            action:
                SocketCommand::Emit {
                    id,
                    volatile,
                    packet,
                },
        }) => node
            .registry
            .socket(&socket)
            .is_some_and(|s| emit_to(node, &s, id, volatile, &packet)),
        _ => false,
    }
}

/// Queues an emit's frames for one socket. A volatile emit is dropped for
/// a client that still has packets waiting.
pub(crate) fn deliver(
    node: &Arc<Node>,
    socket: &Socket,
    emit: Option<EmitId>,
    framed: &Framed,
    volatile: bool,
) {
    if volatile && !socket.session.outbox.is_empty() {
        node.metrics.drop("volatile");
        return;
    }
    node.send_kept(socket, emit, framed.keep(), framed.frames());
    node.metrics.emits_delivered.inc();
}

/// An emit that reaches nobody, to learn when this gateway has heard
/// everything the bus routed to it on a subject before: it comes back
/// behind all of it ([`crate::registry::Registry::marker`]).
pub(crate) fn marker(ns: &str) -> Option<(EmitId, Bytes)> {
    let emit = marker_emit(ns)?;
    let bytes = sio_protocol::envelope::encode(&emit).ok()?;
    Some((emit.id, bytes.into()))
}

/// [`marker`], not yet encoded.
pub(crate) fn marker_emit(ns: &str) -> Option<Emit> {
    let id = EmitId::random().ok()?;
    Some(Emit {
        id,
        ns: ns.to_owned(),
        // A room nobody is in.
        rooms: vec![format!("\0marker {}", id.0)],
        except: Vec::new(),
        volatile: true,
        packet: EncodedPacket::from_text("2[\"marker\"]", Vec::new()),
    })
}

/// The Engine.IO frames of a packet a worker encoded, sharing its bytes;
/// `None` (counted) unless its message is an Engine.IO message in UTF-8.
pub(crate) fn packet_frames(node: &Node, packet: &EncodedPacket) -> Option<Vec<Frame>> {
    let message = Some(packet.message.clone())
        .filter(|m| engineio::is_message(m))
        .and_then(|m| Utf8Bytes::try_from(m).ok());
    let Some(message) = message else {
        node.metrics.drop("bad_envelope");
        return None;
    };
    let mut frames = Vec::with_capacity(1 + packet.attachments.len());
    frames.push(Frame::Text(message));
    frames.extend(packet.attachments.iter().cloned().map(Frame::Binary));
    Some(frames)
}

/// How long an owner waits for its markers to come back; past it, it
/// lets go anyway (its bus is away, and so are the emits it would wait
/// for).
pub(crate) const CATCH_UP: Duration = Duration::from_secs(2);

/// Waits (at most [`CATCH_UP`]) until this gateway's subscriptions have
/// delivered what the bus routed to it before now, on every subject the
/// sockets hear; false (logged) if it gave up.
pub(crate) async fn catch_up(node: &Arc<Node>, sockets: &[Arc<Socket>]) -> bool {
    let caught = tokio::time::timeout(CATCH_UP, markers(node, sockets)).await;
    if caught.is_err() {
        tracing::warn!("gave up waiting for this gateway's subscriptions to catch up");
    }
    caught.is_ok()
}

async fn markers(node: &Arc<Node>, sockets: &[Arc<Socket>]) {
    let mut subjects = BTreeSet::new();
    for socket in sockets {
        subjects.insert((socket.ns.clone(), node.subjects.namespace(&socket.ns)));
        for room in socket.rooms() {
            subjects.insert((socket.ns.clone(), node.subjects.room(&socket.ns, &room)));
        }
    }
    let mut ids = Vec::new();
    let mut waits = Vec::new();
    for (ns, subject) in subjects {
        let Some((id, marker)) = marker(&ns) else {
            continue;
        };
        waits.push(node.registry.await_marker(id));
        ids.push(id);
        node.publish_now(subject, marker).await;
    }
    // Forgotten however this ends (bounded in time).
    let _forget = Forget(node, ids);
    for wait in waits {
        let _ = wait.await;
    }
}

/// Stops waiting for a catch-up's markers when dropped.
struct Forget<'a>(&'a Node, Vec<sio_protocol::envelope::EmitId>);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.registry.forget_markers(&self.1);
    }
}
