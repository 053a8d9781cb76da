//! `P.gw.<gateway-id>`: commands for this gateway's sockets (emit, emit
//! with ack, join, leave, disconnect, set data), broadcasts that target
//! some of them by socket id, polling requests and hand-overs of its
//! sessions. Commands for sockets it handed over go on to their gateway.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;
use sio_bus::Message;
use sio_protocol::envelope::{
    self, AckReply, Command, CommandReply, Emit, Presence, SocketCommand,
};
use sio_protocol::id::{GatewayId, Sid, SocketId};
use sio_protocol::socketio::{Event, Kind, Packet};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::config::ms;
use crate::node::Node;
use crate::registry::Hold;
use crate::socket::{self, Socket};
use crate::{delivery, event, handover, recover};

/// Serves a polling request forwarded by another gateway (the transport
/// layer's, handed in so that this file need not reach up to it).
pub(crate) type Poll = fn(Arc<Node>, Sid, bool, bytes::Bytes) -> BoxFuture<'static, CommandReply>;

/// Serves `P.gw.<id>` and `P.to.<id>` (one subscription, in order) until
/// the bus goes away: this gateway's own, or
/// (`poll` `None`) that of a gateway that died after handing sessions over
/// to this one, for the sockets it holds of them (another heir may hold
/// the others: it stays silent on those).
pub(crate) async fn serve(node: Weak<Node>, mut sub: sio_bus::Subscription, poll: Option<Poll>) {
    // Its own emits, which may wait for a catch-up (see `history`).
    let own = node.upgrade().map(|n| n.subjects.emits_to(n.id));
    while let Some(message) = sub.next().await {
        let Some(node) = node.upgrade() else {
            return;
        };
        // `P.*.<id>` matched it: commands and emits only.
        if !node.subjects.serves(&message.subject) {
            continue;
        }
        // Emits wait behind what the bus missed while it was away.
        if poll.is_some() && own.as_ref() == Some(&message.subject) {
            match node.registry.offer(message.payload.clone(), true) {
                Hold::Pass(_) => {}
                Hold::Held => continue,
                Hold::Full => {
                    node.metrics.drop("held_overflow");
                    continue;
                }
            }
        }
        let command = match envelope::decode_owned::<Command>(&message.payload) {
            Ok(command) => command,
            Err(error) => {
                tracing::error!(%error, "bad command envelope");
                node.metrics.drop("bad_envelope");
                continue;
            }
        };
        // Applied here, in order (a hand-over relies on it: whatever came
        // before its release was applied to the sockets it moves); what
        // then waits runs on its own.
        let inherited = poll.is_none();
        if inherited && !held_here(&node, &command) {
            // The questions about a dead gateway's sockets everybody may
            // answer: it is gone (the asker recovers from its record, or
            // serves its subjects).
            if let Command::Recover { .. } | Command::Lives { .. } = command {
                answer(&node, message.reply, CommandReply::Departed).await;
            }
            continue;
        }
        // A socket being handed over here: its commands apply once it has
        // its final state (in order: the loop waits).
        if let (Command::Socket { socket, .. }, true) = (&command, node.registry.any_arriving()) {
            if let Some(socket) = node.registry.socket(socket) {
                node.registry.arrival(&socket, handover::ARRIVAL).await;
            }
        }
        match apply(&node, command, &message, poll) {
            Applied::Reply(reply) => answer(&node, message.reply, reply).await,
            Applied::Inline(wait) => {
                let reply = wait.await;
                answer(&node, message.reply, reply).await;
            }
            Applied::Wait(wait) => {
                tokio::spawn(async move {
                    let reply = wait.await;
                    answer(&node, message.reply, reply).await;
                });
            }
            Applied::Forwarded => {}
        }
    }
}

/// What became of a command.
enum Applied {
    Reply(CommandReply),
    /// The reply comes once this resolves.
    Wait(BoxFuture<'static, CommandReply>),
    /// The same, resolved before the next command is applied (a hand-over's
    /// release: no command for the sockets it moves runs beside it).
    Inline(BoxFuture<'static, CommandReply>),
    /// Answered elsewhere: by the gateway the command went on to as it
    /// came (for a socket handed over or recovered there), or by a task of
    /// its own (a recovery's step 2).
    Forwarded,
}

async fn answer(node: &Node, to: Option<String>, reply: CommandReply) {
    if let (Some(to), Ok(bytes)) = (to, envelope::encode(&reply)) {
        node.publish(to, bytes.into()).await;
    }
}

/// Whether a command for a gateway that died is this one's to apply: for
/// a socket it holds, a broadcast, or one about a session (which only the
/// dead gateway had: answered "unknown" at once, as nobody would be).
/// Commands for other sockets are left to the heir that holds them.
fn held_here(node: &Node, command: &Command) -> bool {
    match command {
        Command::Socket { socket, .. } => node.registry.socket(socket).is_some(),
        Command::Broadcast(_) | Command::Poll { .. } | Command::Probe { .. } => true,
        Command::HandOver { .. } | Command::Release { .. } => true,
        Command::Recover { pid, .. } | Command::Recovered { pid, .. } => recover::holds(node, pid),
        Command::Probed { .. } | Command::Unprobe { .. } | Command::Lives { .. } => false,
    }
}

fn apply(node: &Arc<Node>, command: Command, message: &Message, poll: Option<Poll>) -> Applied {
    let (id, action) = match command {
        Command::Broadcast(emit) => {
            // A copy already delivered here (on a room subject) was
            // forwarded, or handed over, with the rest of it.
            if delivery::deliver_emit(node, &emit) && poll.is_some() {
                forward_broadcast(node, &emit, message);
            }
            return Applied::Reply(CommandReply::Done);
        }
        Command::Socket { socket, action } => (socket, action),
        Command::Poll { sid, post, body } => {
            let Some(poll) = poll else {
                return Applied::Reply(CommandReply::UnknownSocket);
            };
            return Applied::Wait(poll(node.clone(), sid, post, body));
        }
        Command::Probe { sid } => return Applied::Reply(handover::probe(node, sid)),
        Command::Probed { sid } => {
            handover::probed(node, sid);
            return Applied::Reply(CommandReply::Done);
        }
        Command::Unprobe { sid } => {
            handover::unprobe(node, sid);
            return Applied::Reply(CommandReply::Done);
        }
        Command::HandOver { sid, to } => {
            return Applied::Wait(Box::pin(handover::give(node.clone(), sid, to)));
        }
        Command::Release { sid } => {
            return Applied::Inline(Box::pin(handover::release(node.clone(), sid)));
        }
        Command::Recover { pid, ns, to } => {
            // The asker goes on there itself: if that gateway is dead, it
            // knows whose record to look for.
            if let Some(there) = recover::elsewhere(node, &pid) {
                return Applied::Reply(CommandReply::Moved(there));
            }
            return Applied::Reply(recover::give(node, pid, &ns, to));
        }
        Command::Lives { socket, pid, at } => {
            node.registry.moved_on(socket, at);
            recover::moved(node, pid, at);
            return Applied::Reply(CommandReply::Done);
        }
        Command::Recovered { pid, after } => {
            if let Some(there) = recover::elsewhere(node, &pid) {
                forward(node, there, message);
                return Applied::Forwarded;
            }
            if let Some(reply) = message.reply.clone() {
                tokio::spawn(recover::let_go(node.clone(), pid, after, reply));
            }
            return Applied::Forwarded;
        }
    };
    let Some(socket) = node.registry.socket(&id) else {
        if let SocketCommand::ClientAck { id: ack, reply } = action {
            // For a socket handed over: the emit awaiting it is here.
            if let Some(socket) = node.registry.moved_socket(&id) {
                socket.answer(ack, reply);
            }
            return Applied::Reply(CommandReply::Done);
        }
        if let Some(to) = node.registry.moved_to(&id) {
            forward(node, to, message);
            return Applied::Forwarded;
        }
        return Applied::Reply(CommandReply::UnknownSocket);
    };
    match action {
        SocketCommand::Emit {
            id,
            volatile,
            packet,
        } => {
            delivery::emit_to(node, &socket, id, volatile, &packet);
        }
        SocketCommand::EmitWithAck {
            data,
            attachments,
            timeout_ms,
        } => {
            let Some((id, answer)) = emit_with_ack(node, &socket, &data, &attachments) else {
                return Applied::Reply(CommandReply::Done);
            };
            return Applied::Wait(Box::pin(async move {
                match tokio::time::timeout(ms(timeout_ms), answer).await {
                    Ok(Ok(reply)) => CommandReply::Ack(reply),
                    _ => {
                        socket.forget_ack(id);
                        CommandReply::AckTimeout
                    }
                }
            }));
        }
        SocketCommand::Join { rooms } => {
            let ready = delivery::join(node, &socket, &rooms);
            return Applied::Wait(Box::pin(async move {
                ready.await;
                CommandReply::Done
            }));
        }
        SocketCommand::Leave { rooms } => {
            node.registry.leave(&socket, &rooms);
            node.record(&socket);
        }
        SocketCommand::Disconnect { close } => node.disconnect(&socket, close),
        SocketCommand::SetData { data } => {
            socket.set_data(data);
            node.record(&socket);
        }
        SocketCommand::Settled => event::settled(node, &socket),
        SocketCommand::ClientAck { id, reply } => {
            socket.answer(id, reply);
        }
    }
    Applied::Reply(CommandReply::Done)
}

/// Sends a command, as it came, to the gateway a socket was handed to (in
/// the order they came).
fn forward(node: &Node, to: GatewayId, message: &Message) {
    node.command_bytes(to, message.reply.clone(), message.payload.clone());
}

/// A broadcast that targets sockets handed over by id goes on to their
/// gateways (each drops a second copy by emit id).
fn forward_broadcast(node: &Arc<Node>, emit: &Emit, message: &Message) {
    let owners: BTreeSet<GatewayId> = emit
        .rooms
        .iter()
        .filter_map(|room| room.parse::<SocketId>().ok())
        .filter_map(|socket| node.registry.moved_to(&socket))
        .collect();
    for to in owners {
        forward(node, to, message);
    }
}

/// Sends a socket an event that asks for an ack; `None` (counted) if the
/// data is not a valid event.
pub(crate) fn emit_with_ack(
    node: &Arc<Node>,
    socket: &Socket,
    data: &str,
    attachments: &[bytes::Bytes],
) -> Option<(u64, oneshot::Receiver<AckReply>)> {
    let binary = (!attachments.is_empty()).then(|| attachments.to_vec());
    let Ok(event) = Event::from_data(data.to_owned().into(), binary) else {
        node.metrics.drop("bad_envelope");
        return None;
    };
    let (id, answer) = socket.expect_ack();
    let packet = Packet::new(socket.ns.clone(), Kind::Event(event.with_id(id)));
    node.send_to(socket, &socket::frames(&packet));
    Some((id, answer))
}

/// Watches `P.hb` for the gateways this one took sessions over from;
/// once one has been silent for three of its heartbeat intervals (it died),
/// serves its `P.gw` subject for the sockets it handed over here, so that
/// commands addressed to them by id still reach them. A gateway heard
/// again is given its subject back.
pub(crate) async fn inherit(node: Weak<Node>, mut heartbeats: sio_bus::Subscription) {
    let mut heard: HashMap<GatewayId, (Instant, Duration)> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            message = heartbeats.next() => {
                let Some(message) = message else { return };
                let Ok(presence) = envelope::decode_owned::<Presence>(&message.payload) else {
                    continue;
                };
                let every = Duration::from_millis(presence.interval_ms.max(100));
                heard.insert(presence.gateway, (Instant::now(), every));
                if let Some(node) = node.upgrade() {
                    node.registry.disinherit(presence.gateway);
                }
            }
            _ = tick.tick() => {}
        }
        let Some(n) = node.upgrade() else { return };
        let owners = n.registry.owners();
        // Gateways long gone that handed nothing over here are forgotten.
        heard.retain(|gateway, (last, every)| {
            owners.contains(gateway) || last.elapsed() < *every * 10
        });
        for owner in owners {
            if n.registry.inherits(owner) {
                continue;
            }
            // Never heard (it died before this gateway listened): as if
            // heard when this gateway took its first session over.
            let (last, every) = *heard
                .entry(owner)
                .or_insert((Instant::now(), ms(n.config.heartbeat_interval.max(100))));
            if last.elapsed() < every * 3 {
                continue;
            }
            serve_gone_now(&n, owner).await;
        }
    }
}

/// Serves the subjects of `owner`, a gateway that is gone, for the
/// sockets of it this gateway holds (once; a recovery from its record
/// does it at once, so that nothing emitted to the socket by id falls
/// between the stream read back and the live subscription).
pub(crate) fn serve_gone(node: Arc<Node>, owner: GatewayId) -> BoxFuture<'static, ()> {
    Box::pin(async move { serve_gone_now(&node, owner).await })
}

async fn serve_gone_now(node: &Arc<Node>, owner: GatewayId) {
    if node.registry.inherits(owner) {
        return;
    }
    let Ok(sub) = node.bus.subscribe(node.subjects.served(owner)).await else {
        return;
    };
    let _ = node.bus.flush().await;
    let task = tokio::spawn(serve(Arc::downgrade(node), sub, None));
    if node.registry.inherit(owner, task.abort_handle()) {
        tracing::info!(gateway = %owner, "serving the sockets a dead gateway handed over");
    }
}
