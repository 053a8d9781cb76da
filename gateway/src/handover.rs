//! Hand-over: a polling session moves to the gateway its websocket
//! upgrade reached, so that without sticky balancing a websocket costs
//! what a local one costs, and its first gateway is out of its path (and
//! may die).
//!
//! The owner `A` and the gateway `B` with the websocket, over `P.gw`:
//! 1. At the upgrade request, B asks `Probe`: A answers `Probing` (its
//!    session is upgrading now) or `UnknownSocket` (the client hears
//!    "Session ID unknown").
//! 2. B answers the client's `2probe` and tells A `Probed`; A releases the
//!    pending GET with a noop, as for a local upgrade.
//! 3. On the client's `5`, B asks `HandOver`. A refuses polling from now
//!    on, waits until the sockets' connects are decided, and answers
//!    `Moving` (handshake; sockets with auth, data, rooms, and with
//!    connection state recovery their pids); it notes the emits it queues
//!    for them from then on.
//! 4. B creates the session and its sockets, holding what reaches them
//!    (with emit ids), subscribes to their rooms and namespaces, and asks
//!    `Release`. A (in its `P.gw` loop, so that no command for the sockets
//!    runs beside it) publishes a marker on each of those subjects and waits
//!    until its own subscriptions hear them back: every emit the bus
//!    routed to A before B subscribed has then been queued by A. A lets
//!    the sockets go without a disconnect, answers `Released` (what it
//!    queued meanwhile, the ids of the emits in it, each socket's state
//!    and where its recovery log stands, so it stays recoverable at B)
//!    and forwards later `P.gw` commands for the sockets to B, which sends
//!    A's frames, then what it held but A's emits, then serves the
//!    websocket.
//!
//! So an emit reaches the socket once: A queued it (and B drops its
//! copy), or A heard it after its marker, and B, subscribed before the
//! marker was sent, has it too. Events A was still handling finish there
//! (their acks go on to B, and the client's answers to A's server emits
//! come back as `ClientAck`); B holds the socket's next events until A says
//! `Settled`, so they still run one after another. Workers reach the
//! socket at B directly from its events (`Delivery::holder`), and B serves
//! A's subject for it once A is dead (`command::inherit`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Utf8Bytes, WebSocket};
use bytes::Bytes;
use sio_protocol::envelope::{
    self, Command, CommandReply, EncodedHandshake, Moving, MovingSocket, QueuedFrame, Released,
};
use sio_protocol::id::{GatewayId, Sid};
use sio_protocol::socketio::Decoder;
use tokio::time::Instant;

use crate::address::Slot;
use crate::client::Client;
use crate::config::{Transport, ms};
use crate::delivery::CATCH_UP;
use crate::fault::Fault;
use crate::node::Node;
use crate::outbox::{Frame, Outbox};
use crate::recovery::{Bounds, Log};
use crate::session::{Session, Upgrade};
use crate::socket::Socket;
use crate::transport::websocket;
use crate::{delivery, event, recover};

/// Most of what an owner hands over queued in one reply (under NATS's
/// default max_payload); past it, it keeps the session.
const RELEASE_BYTES: usize = 512 << 10;

/// How long commands for a socket being handed over here wait for it.
pub(crate) const ARRIVAL: Duration = Duration::from_secs(5);

/// How often an owner looks whether a session's connects are decided.
const SETTLE_POLL: Duration = Duration::from_millis(5);

// The owner's side.

/// Step 1: may another gateway's websocket probe this session?
pub(crate) fn probe(node: &Arc<Node>, sid: Sid) -> CommandReply {
    let Some(client) = node.registry.client(&sid) else {
        return CommandReply::UnknownSocket;
    };
    if !client.session.begin_upgrade(node.config.allow_upgrades) {
        return CommandReply::UnknownSocket;
    }
    // A websocket that never switches (its gateway died) must not leave
    // the session upgrading: it may upgrade again after the timeout.
    let session = Arc::downgrade(&client.session);
    let wait = ms(node.config.upgrade_timeout) * 2;
    tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        if let Some(session) = session.upgrade() {
            if session.state().upgrade == Upgrade::Probing {
                session.abort_upgrade();
            }
        }
    });
    CommandReply::Probing
}

/// Step 2: the websocket answered the probe.
pub(crate) fn probed(node: &Node, sid: Sid) {
    if let Some(session) = probing(node, sid) {
        let _ = session.send([Frame::noop()]);
    }
}

/// The websocket went away before the switch: polling goes on.
pub(crate) fn unprobe(node: &Node, sid: Sid) {
    if let Some(session) = probing(node, sid) {
        session.abort_upgrade();
    }
}

fn probing(node: &Node, sid: Sid) -> Option<Arc<Session>> {
    let client = node.registry.client(&sid)?;
    let probing =
        client.session.state().upgrade == Upgrade::Probing && client.moving.get().is_none();
    probing.then(|| client.session.clone())
}

/// Step 3: the client switched to the websocket at `to`.
pub(crate) async fn give(node: Arc<Node>, sid: Sid, to: GatewayId) -> CommandReply {
    let Some(client) = node.registry.client(&sid) else {
        return CommandReply::UnknownSocket;
    };
    if probing(&node, sid).is_none() || client.moving.set(to).is_err() {
        return CommandReply::UnknownSocket;
    }
    // Polling is refused from now on (the client paused it before `5`).
    client.session.finish_upgrade();
    let deadline = Instant::now() + ms(node.config.event_timeout);
    while !client.connects_decided() {
        if Instant::now() >= deadline || client.session.is_closed() {
            // A connect outlasts the bound: the session ends here, and the
            // client connects again (counted as the polling it was).
            client.session.state().transport = Transport::Polling;
            node.close(&client.session, Fault::ConnectionLost);
            return CommandReply::UnknownSocket;
        }
        tokio::time::sleep(SETTLE_POLL).await;
    }
    let Ok(handshake) = client.handshake().decode(None) else {
        return CommandReply::UnknownSocket;
    };
    let sockets = client
        .sockets()
        .iter()
        .filter_map(|socket| {
            socket.start_leaving();
            socket.moving()
        })
        .collect();
    CommandReply::Moving(Moving { handshake, sockets })
}

/// Step 4: the new gateway hears everything the sockets hear.
pub(crate) async fn release(node: Arc<Node>, sid: Sid) -> CommandReply {
    let Some(client) = node.registry.client(&sid) else {
        return CommandReply::UnknownSocket;
    };
    let Some(&to) = client.moving.get() else {
        return CommandReply::UnknownSocket;
    };
    let sockets = client.sockets();
    delivery::catch_up(&node, &sockets).await;
    let session = &client.session;
    // Closed meanwhile (the workers heard its disconnect), or more queued
    // than one reply carries: the session stays, and the new gateway
    // gives up.
    if session.is_closed() || session.outbox.queued_bytes() > RELEASE_BYTES {
        return CommandReply::UnknownSocket;
    }
    // No GET holds the queue: polling was refused since `HandOver`.
    let Some(mut reader) = session.outbox.try_reader() else {
        return CommandReply::UnknownSocket;
    };
    // Rooms and data as they are now: the hand-off takes the sockets out
    // of their rooms here. Whether events are still handled here, once
    // they are marked moved (so that one finishing later says so to `to`).
    let mut states: Vec<MovingSocket> = sockets.iter().filter_map(|s| s.moving()).collect();
    node.hand_off(&client, to);
    let frames = reader.take();
    drop(reader);
    // Out of its rooms, its queue taken: its recovery log is final too.
    for (state, socket) in states.iter_mut().zip(&sockets) {
        state.busy = !socket.is_idle();
        state.recovery = socket.moving_recovery();
        if let Some(pid) = socket.pid {
            recover::moved(&node, pid, to);
        }
    }
    session.close(Fault::HandedOver);
    let frames = frames
        .into_iter()
        .map(|frame| match frame {
            Frame::Text(text) => QueuedFrame::Text(Bytes::copy_from_slice(text.as_bytes())),
            Frame::Binary(data) => QueuedFrame::Binary(data),
        })
        .collect();
    let delivered = sockets.iter().flat_map(|s| s.take_noted()).collect();
    tracing::debug!(%sid, gateway = %to, "session handed over");
    CommandReply::Released(Released {
        frames,
        delivered,
        sockets: states,
    })
}

// The side of the gateway with the websocket.

/// Step 1, at the upgrade request for another gateway's session: whether
/// its owner lets it upgrade here.
pub(crate) async fn ask(node: &Node, sid: Sid) -> bool {
    matches!(
        request(node, sid, &Command::Probe { sid }, CATCH_UP).await,
        Some(CommandReply::Probing)
    )
}

/// Steps 2 to 4 on the websocket, then serves the session here.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn stores the websocket twice"
)]
pub(crate) fn take(
    node: Arc<Node>,
    sid: Sid,
    mut ws: WebSocket,
    address: Option<Slot>,
) -> impl Future<Output = ()> + Send {
    async move {
        // In order: a `Probed` never overtakes the `Unprobe` after it.
        let owner = sid.gateway();
        let probed = || node.command(owner, &Command::Probed { sid });
        if !websocket::switch(&node, &mut ws, std::future::pending(), probed).await {
            node.command(owner, &Command::Unprobe { sid });
        } else if let Some(client) = adopt(&node, sid, address).await {
            websocket::carry(&node, &client, &mut ws).await;
        }
        websocket::close(&mut ws).await;
    }
}

/// Steps 3 and 4: the session, live here; `None` if its owner did not
/// give it (the websocket closes, and the client connects again).
async fn adopt(node: &Arc<Node>, sid: Sid, address: Option<Slot>) -> Option<Arc<Client>> {
    let to = node.id;
    let wait = ms(node.config.event_timeout) + CATCH_UP;
    let Some(CommandReply::Moving(moving)) =
        request(node, sid, &Command::HandOver { sid, to }, wait).await
    else {
        node.metrics.drop("hand_over_refused");
        return None;
    };
    let (client, sockets) = create(node, sid, &moving, address)?;
    for (socket, moved) in sockets.iter().zip(&moving.sockets) {
        delivery::join(node, socket, &moved.state.rooms).await;
    }
    // The owner answers within its catch-up bound, well inside this.
    let released = request(node, sid, &Command::Release { sid }, CATCH_UP * 2).await;
    let Some(CommandReply::Released(released)) = released else {
        // The owner kept the session (its heartbeat ends it there, and
        // the workers hear it from there); only a reply lost on the bus
        // after it let go leaves the workers without a disconnect.
        node.metrics.drop("hand_over_refused");
        for socket in &sockets {
            forget(node, &client, socket);
        }
        node.close(&client.session, Fault::ConnectionLost);
        return None;
    };
    // A socket that left at the owner meanwhile (it told the workers):
    // not here either.
    for socket in &sockets {
        if !released.sockets.iter().any(|s| s.id == socket.id) {
            forget(node, &client, socket);
        }
    }
    // Its emits reach the sockets once, also when one comes again on
    // another subject (a room and a socket id).
    for id in &released.delivered {
        node.registry.first_sight(*id);
    }
    let delivered: HashSet<_> = released.delivered.iter().copied().collect();
    // What a worker changed meanwhile, and what the owner still does.
    for now in &released.sockets {
        let Some(socket) = sockets.iter().find(|s| s.id == now.id) else {
            continue;
        };
        if socket.arrive(now) {
            event::resume(node, socket);
        } else if now.busy {
            give_up_later(node, socket);
        }
        socket.resume(now.recovery.as_ref(), &delivered);
        recover::arrived(node, socket);
        socket.set_data(now.state.data.clone());
        let gone: Vec<String> = socket
            .rooms()
            .into_iter()
            .filter(|r| !now.state.rooms.contains(r))
            .collect();
        node.registry.leave(socket, &gone);
        delivery::join(node, socket, &now.state.rooms).await;
    }
    let frames = released.frames.into_iter().filter_map(|frame| match frame {
        QueuedFrame::Text(text) => Utf8Bytes::try_from(text).ok().map(Frame::Text),
        QueuedFrame::Binary(data) => Some(Frame::Binary(data)),
    });
    node.send(&client.session, frames.collect::<Vec<_>>());
    for socket in &sockets {
        node.send(&client.session, socket.release(&delivered));
        // Commands for it apply from now on, on top of this.
        node.registry.arrived(socket);
    }
    node.registry.took_from(sid.gateway());
    node.metrics.sessions_taken.inc();
    tracing::debug!(%sid, "session taken over");
    Some(client)
}

/// Takes a socket out of this gateway without telling the workers (its
/// first gateway did, or still serves it).
fn forget(node: &Node, client: &Client, socket: &Arc<Socket>) {
    node.registry.arrived(socket);
    node.unrecord(socket);
    if client.remove(socket) && socket.leave() {
        node.registry.remove_socket(&socket.id);
        node.registry.unindex(socket);
        node.metrics
            .socket_left(crate::client::namespace_label(&node.config, &socket.ns));
    }
}

/// The socket's events go on here once the owner could no longer be
/// handling its last ones (it died, or its bus is away).
fn give_up_later(node: &Arc<Node>, socket: &Arc<Socket>) {
    let c = &node.config;
    let wait = ms(c.event_timeout) + ms(c.event_lease) * c.event_attempts.max(1);
    let (node, socket) = (Arc::downgrade(node), socket.clone());
    tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        if let Some(node) = node.upgrade() {
            event::settled(&node, &socket);
        }
    });
}

/// The session and its sockets as the owner described them, in the
/// registry, each socket holding what reaches it.
/// The sockets come in the order of `moving`'s.
fn create(
    node: &Arc<Node>,
    sid: Sid,
    moving: &Moving,
    address: Option<Slot>,
) -> Option<(Arc<Client>, Vec<Arc<Socket>>)> {
    let handshake = EncodedHandshake::new(&moving.handshake).ok()?;
    let c = &node.config;
    let now = node.now();
    let session = Arc::new(Session::new(
        sid,
        Transport::Websocket,
        Outbox::new(c.send_queue_packets, c.send_queue_bytes),
        // A ping at once: the client last heard one from the owner, up to
        // pingInterval ago, and times out pingTimeout after the next is due.
        (now, now),
    ));
    session.finish_upgrade();
    let client = Arc::new(Client::new(
        session.clone(),
        handshake.clone(),
        Decoder::new(c.max_attachments),
        address,
    ));
    let sockets = moving
        .sockets
        .iter()
        .map(|moved| {
            let socket = Socket::new(
                moved.id,
                moved.ns.clone(),
                session.clone(),
                handshake.clone(),
                moved.state.auth.clone(),
                true,
            )
            .ok()?;
            // Recoverable here too; its log begins whole, and where its
            // client stands comes with the release.
            let socket = match (&moved.recovery, c.connection_state_recovery) {
                (Some(r), true) => socket.recoverable(r.pid, Log::new(Bounds::of(c), true)),
                _ => socket,
            };
            socket.set_data(moved.state.data.clone());
            // One socket per namespace, or none at all (only a forged
            // hand-over has two).
            client.establish(&Arc::new(socket)).then_some(())?;
            client.socket(&moved.ns)
        })
        .collect::<Option<Vec<_>>>()?;
    for socket in &sockets {
        node.registry.arriving(socket);
        node.registry.add_socket(socket.clone());
        node.metrics
            .socket_joined(crate::client::namespace_label(c, &socket.ns));
    }
    node.open(client.clone(), Transport::Websocket);
    Some((client, sockets))
}

async fn request(node: &Node, sid: Sid, command: &Command, wait: Duration) -> Option<CommandReply> {
    let subject = node.subjects.gateway(sid.gateway());
    let payload = envelope::encode(command).ok()?;
    let reply = node.bus.request(subject, payload.into(), wait).await.ok()?;
    envelope::decode_owned(&reply).ok()
}
