//! The emits JetStream keeps while connection state recovery is on over
//! NATS (stream `<prefix>_emits`: every room, namespace and socket-id
//! emit, for the recovery window), read back for a socket whose gateway
//! died: what reached its rooms and its namespace after the last packet
//! its client had, and what was emitted to its id (`P.to.<gateway>`).
//!
//! And for this gateway, when the bus comes back after it was away (a
//! NATS restart): what core NATS did not deliver meanwhile is read back
//! and delivered before what arrives live, which waits its turn.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt as _;
use sio_protocol::envelope::{self, Command, Emit, EmitId, SocketCommand};
use sio_protocol::id::GatewayId;
use sio_protocol::socketio::recovery::Offset;

use crate::delivery::{self, Framed};
use crate::node::Node;
use crate::records::Durable;
use crate::recovery::Bounds;
use crate::socket::Socket;

/// How long reading the stream back may take.
const READ: std::time::Duration = std::time::Duration::from_secs(5);

/// What `socket` (subscribed here already, so that what comes next
/// reaches it live) was sent since `since` after the emit `after` names
/// (all of it without one), framed, oldest first; `host` is the dead
/// gateway it lived on. `None` if the stream cannot say (it was not read
/// to its end in time, or `after` is not in it: too old, or not an emit
/// it keeps), or if more follow `after` than `--recovery-packets`.
pub(crate) async fn missed(
    node: &Arc<Node>,
    durable: &Durable,
    socket: &Socket,
    host: GatewayId,
    since: SystemTime,
    after: Option<Offset>,
) -> Option<Vec<(EmitId, Framed)>> {
    let rooms = socket.rooms();
    let ns = &socket.ns;
    let mut subjects: Vec<String> = rooms.iter().map(|r| node.subjects.room(ns, r)).collect();
    subjects.push(node.subjects.namespace(ns));
    // Emits to its id went to the gateway it names, `socket.emit` to the
    // one that held it.
    let to: HashSet<String> = [socket.id.gateway(), host]
        .map(|g| node.subjects.emits_to(g))
        .into();
    let filter = subjects.iter().chain(&to).cloned().collect();
    let mut replay = durable
        .emits
        .replay(filter, since)
        .await
        .map_err(|error| tracing::warn!(%error, "cannot read the emits back"))
        .ok()?;
    // Markers behind everything published on these subjects so far: once
    // the replay has them, it has all that came before them, and what
    // comes after reaches the socket here.
    let mut markers = HashSet::new();
    for subject in subjects {
        let (id, bytes) = delivery::marker(ns)?;
        markers.insert(id);
        node.publish_now(subject, bytes).await;
    }
    for subject in &to {
        let emit = delivery::marker_emit(ns)?;
        markers.insert(emit.id);
        let bytes = envelope::encode(&Command::Broadcast(emit)).ok()?;
        node.publish_now(subject.clone(), bytes.into()).await;
    }
    // Only what follows the client's last packet is kept, at most as many
    // as a socket keeps here (past it, behind: not recoverable).
    let bound = Bounds::of(&node.config).packets;
    let mut placed = after.is_none();
    let mut seen = HashSet::new();
    let mut sent: Vec<Emit> = Vec::new();
    let deadline = tokio::time::Instant::now() + READ;
    while !markers.is_empty() {
        let Some(message) = next(&mut replay, deadline).await else {
            tracing::warn!("the emits were not read back in time");
            return None;
        };
        let emit = match to.contains(&message.subject) {
            true => to_socket(socket, &message.payload),
            false => Emit::decode_shared(&message.payload).ok(),
        };
        let Some(emit) = emit else { continue };
        if markers.remove(&emit.id) || !for_socket(socket, &rooms, &emit) {
            continue;
        }
        if !seen.insert(emit.id) {
            continue;
        }
        if !placed {
            placed = after == Some(emit.id.offset());
            continue;
        }
        if sent.len() == bound {
            return None;
        }
        sent.push(emit);
    }
    if !placed {
        return None;
    }
    let framed = sent
        .iter()
        .filter_map(|e| Some((e.id, delivery::frame(node, e.id, &e.packet, false)?)))
        .collect();
    Some(framed)
}

/// The next message read back; `None` past `deadline` or if the replay
/// broke off.
async fn next(
    replay: &mut sio_bus::Replay,
    deadline: tokio::time::Instant,
) -> Option<sio_bus::Message> {
    match tokio::time::timeout_at(deadline, replay.next()).await {
        Ok(Some(Ok(message))) => Some(message),
        _ => None,
    }
}

/// A `P.to` command as an emit, if it was one for `socket` (or for ids
/// among which it may be).
fn to_socket(socket: &Socket, payload: &bytes::Bytes) -> Option<Emit> {
    match envelope::decode_owned::<Command>(payload).ok()? {
        Command::Broadcast(emit) => Some(emit),
        Command::Socket {
            socket: id,
            action:
                SocketCommand::Emit {
                    id: emit,
                    volatile,
                    packet,
                },
        } if id == socket.id => Some(Emit {
            id: emit,
            ns: socket.ns.clone(),
            rooms: Vec::new(),
            except: Vec::new(),
            volatile,
            packet,
        }),
        _ => None,
    }
}

/// Whether `emit` was for `socket` (in `rooms`), and one its client may
/// get again (not volatile).
fn for_socket(socket: &Socket, rooms: &[String], emit: &Emit) -> bool {
    let id = socket.id.to_string();
    let member = |room: &String| *room == id || rooms.contains(room);
    !emit.volatile
        && emit.ns == socket.ns
        && (emit.rooms.is_empty() || emit.rooms.iter().any(member))
        && !emit.except.iter().any(member)
}

/// How far before the bus went away a gateway reads back (it noticed a
/// little late; what it had already is told apart by id).
const MARGIN: Duration = Duration::from_secs(1);

/// With recovery over NATS: holds emits when the bus goes away, and when
/// it is back delivers what was missed meanwhile, then what was held.
pub(crate) async fn watch(node: Weak<Node>) {
    let Some(mut seen) = node.upgrade().map(|n| n.bus_seen()) else {
        return;
    };
    // Up once first: the connection's start is no outage.
    if seen.wait_for(|s| s.up).await.is_err() {
        return;
    }
    loop {
        if seen.wait_for(|s| !s.up).await.is_err() {
            return;
        }
        let since = SystemTime::now()
            .checked_sub(MARGIN)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let Some(n) = node.upgrade() else { return };
        n.registry.hold();
        drop(n);
        if seen.wait_for(|s| s.up).await.is_err() {
            return;
        }
        let Some(n) = node.upgrade() else { return };
        let replayed = catch_up(&n, since).await;
        let released = release(&n);
        tracing::info!(
            replayed,
            released,
            "the bus is back: delivered what was emitted while it was away"
        );
    }
}

/// Delivers, in the order JetStream took them, the emits since `since`
/// up to a marker published now; how many were new here.
async fn catch_up(node: &Arc<Node>, since: SystemTime) -> usize {
    let Some(durable) = node.durable.get() else {
        return 0;
    };
    // The client subscribes again as it reconnects: settled before the
    // marker goes out, so what follows it arrives live.
    let _ = tokio::time::timeout(delivery::CATCH_UP, node.bus.flush()).await;
    let replay = durable
        .emits
        .replay(node.subjects.emits_for(node.id), since);
    let replay = replay.await;
    let mut replay = match replay {
        Ok(replay) => replay,
        Err(error) => {
            tracing::warn!(%error, "cannot read back what was emitted while the bus was away");
            return 0;
        }
    };
    let Some((marker, bytes)) = delivery::marker("/") else {
        return 0;
    };
    node.publish_now(node.subjects.namespace("/"), bytes).await;
    let mut delivered = 0;
    let deadline = tokio::time::Instant::now() + READ;
    let own = node.subjects.emits_to(node.id);
    loop {
        let Some(message) = next(&mut replay, deadline).await else {
            tracing::warn!("what was emitted while the bus was away was not read back in time");
            return delivered;
        };
        let new = match message.subject == own {
            true => delivery::replayed(node, &message.payload),
            false => match Emit::decode_shared(&message.payload) {
                Ok(emit) if emit.id == marker => return delivered,
                Ok(emit) => delivery::deliver_emit(node, &emit),
                Err(_) => false,
            },
        };
        if new {
            node.metrics.emits_replayed.inc();
            delivered += 1;
        }
    }
}

/// Delivers the emits held meanwhile, in order, until none is left;
/// how many.
fn release(node: &Arc<Node>) -> usize {
    let mut released = 0;
    loop {
        let held = node.registry.unhold();
        if held.is_empty() {
            return released;
        }
        released += held.len();
        for (to_socket, payload) in &held {
            match to_socket {
                true => {
                    delivery::replayed(node, payload);
                }
                false => delivery::deliver_payload(node, payload),
            }
        }
    }
}
