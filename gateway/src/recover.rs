//! Connection state recovery's steps on this gateway (the state it keeps
//! is [`crate::recovery`]'s): a socket whose transport was lost is parked
//! in its rooms; a client back with its pid within the window gets it
//! back with what it missed; a window that ends without it lets the
//! socket go, its workers told why it left.
//!
//! A client that comes back to another gateway (the pid names the one
//! that parked it) is recovered from there in two steps over `P.gw`, as a
//! websocket upgrade moves a session: `Recover` (the owner gives the
//! socket's state and keeps logging what reaches it), the new gateway
//! takes the socket's subscriptions and holds what arrives, then
//! `Recovered` (the owner gives what the client missed after its offset
//! and lets the socket go, forwarding commands for it from then on). What
//! reached both is told apart by emit id, so the client gets every packet
//! once.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use sio_protocol::envelope::{
    self, Command, CommandReply, DisconnectReason, EmitId, Missed, MissedEmit, MovingSocket,
    QueuedFrame,
};
use sio_protocol::id::{GatewayId, Pid};
use sio_protocol::socketio::recovery::{Offset, Recovery};

use crate::client::Client;
use crate::config::ms;
use crate::node::Node;
use crate::outbox::Frame;
use crate::parked::Parked;
use crate::recovery::{Bounds, Keep, Log};
use crate::socket::Socket;
use crate::{delivery, history, records};

/// What the client of a recovered socket gets after the CONNECT reply,
/// before what was held for it: the packets it missed; held copies of the
/// emits among them (by id) are dropped.
#[derive(Debug, Default)]
pub(crate) struct Catch {
    pub(crate) frames: Vec<Frame>,
    pub(crate) emits: HashSet<EmitId>,
}

/// A recovery step under way on this gateway, counted while it lives: a
/// draining gateway stays until the steps it is in have answered.
pub(crate) struct Busy(Arc<Node>);

impl Busy {
    pub(crate) fn new(node: &Arc<Node>) -> Self {
        parked(node).under_way += 1;
        Self(node.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut parked = parked(&self.0);
        parked.under_way = parked.under_way.saturating_sub(1);
    }
}

fn parked(node: &Node) -> MutexGuard<'_, Parked> {
    lock(&node.parked)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The socket `recovery` asks for in place of `fresh`, in the registry
/// from now on (pending until its CONNECT reply), with what its client
/// missed; `None` if it cannot be had (counted), and `fresh` goes on as a
/// new socket. Parked here, or recovered from the gateway that has it.
pub(crate) async fn restore(
    node: &Arc<Node>,
    client: &Client,
    fresh: &Socket,
    recovery: Recovery,
) -> Option<(Arc<Socket>, Catch)> {
    let _busy = Busy::new(node);
    let (taken, moved) = {
        let mut parked = parked(node);
        let taken = parked.take(&recovery.pid, &fresh.ns, node.now());
        node.metrics.recoverable.set(parked.gauge());
        (taken, parked.moved_to(&recovery.pid))
    };
    let parked = match taken {
        None => {
            // Kept elsewhere: where it went from here, where JetStream says
            // it was parked (it may have moved on through gateways that
            // restarted since), or where the pid was made.
            let noted = match (moved, node.durable.get()) {
                (None, Some(durable)) => durable.keeper(recovery.pid).await,
                _ => None,
            };
            let born = Some(recovery.pid.gateway());
            let owner = moved.or(noted).or(born).filter(|g| *g != node.id);
            if let Some(owner) = owner {
                return match fetch(node, client, fresh, recovery, owner).await {
                    Fetched::Done(restored) => restored,
                    // Its gateway is gone (a crash): from its record.
                    Fetched::Gone(host) => revive(node, client, fresh, recovery, host).await,
                };
            }
            outcome(node, "unknown");
            return None;
        }
        Some(Err(expired)) => {
            outcome(node, "expired");
            leave(node, &expired);
            return None;
        }
        Some(Ok(parked)) => parked,
    };
    let log = Log::new(Bounds::of(&node.config), false);
    let restored = Socket::restore(
        &parked,
        fresh.session.clone(),
        client.handshake().clone(),
        fresh.auth(),
        log,
    );
    let restored = match restored {
        Ok(socket) => Arc::new(socket),
        Err(error) => {
            tracing::error!(%error, "cannot encode a socket context");
            leave(node, &parked);
            return None;
        }
    };
    let swap = || node.registry.add_socket(restored.clone());
    match parked.replace(recovery.offset, swap) {
        Ok((missed, log)) => {
            restored.adopt(log);
            // Gone, but not out of the registry or the rooms: they are
            // the restored socket's now (the same id).
            parked.leave();
            outcome(node, "recovered");
            let frames = missed
                .iter()
                .flat_map(|e| e.frames().iter().cloned())
                .collect();
            let emits = HashSet::new();
            Some((restored, Catch { frames, emits }))
        }
        Err(why) => {
            outcome(node, why.outcome());
            leave(node, &parked);
            None
        }
    }
}

fn outcome(node: &Node, outcome: &'static str) {
    if outcome != "recovered" {
        tracing::info!(
            outcome,
            "a client asked for a socket it could not have back"
        );
    }
    let label = crate::metrics::OutcomeLabel { outcome };
    node.metrics.recoveries.get_or_create(&label).inc();
}

/// What asking another gateway for a socket came to.
enum Fetched {
    Done(Option<(Arc<Socket>, Catch)>),
    /// The gateway that held it is gone: nobody listens for it, or an
    /// heir of its subject says so.
    Gone(GatewayId),
}

/// How many times a recovery follows a socket that moved on.
const HOPS: usize = 4;

/// The new gateway's side: recovers a socket `owner` parked (see the
/// module's doc).
async fn fetch(
    node: &Arc<Node>,
    client: &Client,
    fresh: &Socket,
    recovery: Recovery,
    owner: GatewayId,
) -> Fetched {
    let (pid, to) = (recovery.pid, node.id);
    let mut owner = owner;
    for _ in 0..HOPS {
        tracing::debug!(%pid, %owner, "recover: step 1");
        let ns = fresh.ns.clone();
        let asked = request(node, owner, &Command::Recover { pid, ns, to }).await;
        let (mut moving, keeper) = match asked {
            Ok(CommandReply::Recovering { socket, keeper }) => (socket, keeper),
            Ok(CommandReply::Moved(there)) if there != node.id => {
                owner = there;
                continue;
            }
            Ok(CommandReply::Departed) | Err(Unanswered::Nobody)
                if node.durable.get().is_some() =>
            {
                return Fetched::Gone(owner);
            }
            _ => break,
        };
        return Fetched::Done(fetched(node, client, fresh, recovery, &mut moving, keeper).await);
    }
    outcome(node, "unknown");
    Fetched::Done(None)
}

/// The rest of [`fetch`], once the owner (`owner` now: the gateway that
/// answered) gave the socket's state.
async fn fetched(
    node: &Arc<Node>,
    client: &Client,
    fresh: &Socket,
    recovery: Recovery,
    moving: &mut MovingSocket,
    owner: GatewayId,
) -> Option<(Arc<Socket>, Catch)> {
    let pid = recovery.pid;
    let log = Log::new(Bounds::of(&node.config), false);
    let socket = Socket::new(
        moving.id,
        fresh.ns.clone(),
        fresh.session.clone(),
        client.handshake().clone(),
        fresh.auth(),
        true,
    )
    .map(|s| s.recoverable(pid, log));
    let Ok(socket) = socket else {
        outcome(node, "unrecoverable");
        return None;
    };
    socket.recovered(moving.state.data.clone());
    let socket = Arc::new(socket);
    // Reachable and subscribed before the owner lets go: what is emitted
    // to it from now on is held here.
    node.registry.took_from(owner);
    node.registry.add_socket(socket.clone());
    delivery::join(node, &socket, &moving.state.rooms).await;
    let after = recovery.offset;
    tracing::debug!(%pid, %owner, "recover: step 2");
    let given = request(node, owner, &Command::Recovered { pid, after }).await;
    tracing::debug!(%pid, %owner, ok = matches!(given, Ok(CommandReply::Missed(_))), "recover: step 2 answered");
    let Ok(CommandReply::Missed(missed)) = given else {
        outcome(node, "behind");
        socket.leave();
        node.registry.remove_socket(&socket.id);
        node.registry.unindex(&socket);
        node.unrecord(&socket);
        return None;
    };
    // What the owner kept was emitted before it let go, so before this
    // gateway's markers: held here by the time they come back, and dropped
    // as the client's (none arrives after).
    delivery::catch_up(node, std::slice::from_ref(&socket)).await;
    moving.busy = missed.busy;
    socket.arrive(moving);
    // It lives here again, if it had gone elsewhere from here.
    parked(node).unmove(&pid);
    node.registry.back(&socket.id);
    arrived(node, &socket);
    if ![owner, node.id].contains(&socket.id.gateway()) {
        tell_origin(node, &socket, pid).await;
    }
    // Kept here too: the client may lose this connection as well.
    let mut older = Log::after_offset(Bounds::of(&node.config), recovery.offset);
    // What the owner kept, the client had or gets now: not again.
    let mut catch = Catch {
        emits: missed.kept.into_iter().collect(),
        ..Catch::default()
    };
    for MissedEmit { id, frames } in missed.emits {
        let frames: Vec<Frame> = frames.into_iter().filter_map(frame).collect();
        catch.frames.extend(frames.iter().cloned());
        catch.emits.insert(id);
        match node.memory.keep(id, frames) {
            Ok(entry) => older.push(Keep::Entry(&entry)),
            Err(_) => older.push(Keep::Over),
        }
    }
    socket.adopt(older);
    outcome(node, "recovered");
    Some((socket, catch))
}

fn frame(frame: QueuedFrame) -> Option<Frame> {
    match frame {
        QueuedFrame::Text(text) => Utf8Bytes::try_from(text).ok().map(Frame::Text),
        QueuedFrame::Binary(data) => Some(Frame::Binary(data)),
    }
}

fn queued(frame: &Frame) -> QueuedFrame {
    match frame {
        Frame::Text(text) => QueuedFrame::Text(Bytes::copy_from_slice(text.as_bytes())),
        Frame::Binary(data) => QueuedFrame::Binary(data.clone()),
    }
}

/// Why a request to another gateway got no reply.
enum Unanswered {
    /// Nobody listens for that gateway.
    Nobody,
    Failed,
}

/// A request to another gateway, bounded by `--connect-request-timeout`.
async fn request(
    node: &Node,
    to: GatewayId,
    command: &Command,
) -> Result<CommandReply, Unanswered> {
    let payload = envelope::encode(command).map_err(|_| Unanswered::Failed)?;
    let wait = ms(node.config.connect_request_timeout);
    let subject = node.subjects.gateway(to);
    let reply = node.bus.request(subject, payload.into(), wait).await;
    let reply = reply.map_err(|e| match e {
        sio_bus::Error::NoResponders(_) => Unanswered::Nobody,
        _ => Unanswered::Failed,
    })?;
    envelope::decode_owned(&reply).map_err(|_| Unanswered::Failed)
}

/// The socket of a gateway that died (`host`), restored from its record
/// and the emits JetStream kept; claimed first, so that it is restored at
/// most once and no survivor disconnects it. `None` without a record; if
/// what it missed cannot be had, its workers hear that it left.
async fn revive(
    node: &Arc<Node>,
    client: &Client,
    fresh: &Socket,
    recovery: Recovery,
    host: GatewayId,
) -> Option<(Arc<Socket>, Catch)> {
    let (durable, kv) = (node.durable.get()?, &node.records.get()?.kv);
    let key = records::key(host, recovery.pid);
    let got = tokio::time::timeout(Duration::from_secs(1), kv.get(key.clone())).await;
    let Ok(Ok(Some(entry))) = got else {
        outcome(node, "unknown");
        return None;
    };
    let record = envelope::decode_owned::<envelope::Disconnect>(&entry.value).ok();
    let Some(record) = record.filter(|r| r.socket.ns == fresh.ns) else {
        outcome(node, "unknown");
        return None;
    };
    let claimed = kv.claim(key.clone(), Bytes::new(), entry.revision);
    if !matches!(claimed.await, Ok(true)) {
        outcome(node, "unknown");
        return None;
    }
    let log = Log::new(Bounds::of(&node.config), false);
    let socket = Socket::new(
        record.socket.id,
        fresh.ns.clone(),
        fresh.session.clone(),
        client.handshake().clone(),
        fresh.auth(),
        true,
    )
    .map(|s| s.recoverable(recovery.pid, log));
    // Claimed but not restored: gone, its workers told.
    let gone = async |why| {
        outcome(node, why);
        let subject = node.subjects.disconnect(&fresh.ns);
        node.publish(subject, entry.value.clone()).await;
        let _ = kv.delete(key.clone()).await;
    };
    let Ok(socket) = socket else {
        gone("unrecoverable").await;
        return None;
    };
    socket.recovered(record.socket.data.clone());
    let socket = Arc::new(socket);
    // Reachable and subscribed before the stream is read: what is emitted
    // to it from now on is held here. What is addressed to its id goes to
    // the dead gateways' subjects, which this one serves from now on.
    // The gateway its id names, if it lives, sends what comes for it
    // here from now on instead.
    node.registry.add_socket(socket.clone());
    let origin = socket.id.gateway();
    let told =
        origin != host && origin != node.id && tell_origin(node, &socket, recovery.pid).await;
    for gone in [host, origin] {
        if gone == node.id || (gone == origin && told) {
            continue;
        }
        node.registry.took_from(gone);
        if let Some(inherit) = node.inherit.get() {
            inherit(node.clone(), gone).await;
        }
    }
    arrived(node, &socket);
    delivery::join(node, &socket, &record.socket.rooms).await;
    let window = ms(node.config.max_disconnection_duration);
    let since = match recovery.offset {
        Some(_) => SystemTime::now().checked_sub(window),
        // Everything since it connected.
        None => {
            let issued = Duration::from_millis(record.socket.handshake.issued);
            SystemTime::UNIX_EPOCH.checked_add(issued)
        }
    }
    .unwrap_or(SystemTime::UNIX_EPOCH);
    let missed = history::missed(node, durable, &socket, host, since, recovery.offset).await;
    let Some(missed) = missed else {
        socket.leave();
        node.registry.remove_socket(&socket.id);
        node.registry.unindex(&socket);
        node.unrecord(&socket);
        gone("behind").await;
        return None;
    };
    let _ = kv.delete(key.clone()).await;
    let mut older = Log::after_offset(Bounds::of(&node.config), recovery.offset);
    let mut catch = Catch::default();
    for (id, framed) in &missed {
        catch.frames.extend(framed.frames().iter().cloned());
        catch.emits.insert(*id);
        older.push(framed.keep());
    }
    socket.adopt(older);
    outcome(node, "recovered");
    tracing::debug!(pid = %recovery.pid, %host, missed = missed.len(), "recover: from JetStream");
    Some((socket, catch))
}

/// Tells the gateway `socket`'s id names that it lives here now (its
/// forwards went to a gateway that died, or that let it go); false if
/// that gateway did not answer.
async fn tell_origin(node: &Node, socket: &Socket, pid: Pid) -> bool {
    let at = node.id;
    let told = Command::Lives {
        socket: socket.id,
        pid,
        at,
    };
    matches!(
        request(node, socket.id.gateway(), &told).await,
        Ok(CommandReply::Done)
    )
}

/// Notes in JetStream that this gateway holds the socket now (it came
/// here live, by a hand-over or a recovery), for a client whose next
/// gateway knows nothing of it.
pub(crate) fn arrived(node: &Node, socket: &Socket) {
    if let (Some(pid), Some(durable)) = (socket.pid, node.durable.get()) {
        if !durable.parked(node.id, pid) {
            node.metrics.drop("record_overflow");
        }
    }
}

/// The socket `pid` names went from here to `to`.
pub(crate) fn moved(node: &Node, pid: Pid, to: GatewayId) {
    parked(node).moved(pid, to);
}

/// Where a recovery's command for `pid` goes on to, unless this gateway
/// keeps the socket: the gateway it went to when it was recovered there.
pub(crate) fn elsewhere(node: &Node, pid: &Pid) -> Option<GatewayId> {
    let parked = parked(node);
    match parked.holds(pid) {
        true => None,
        false => parked.moved_to(pid),
    }
}

/// Whether this gateway keeps the socket `pid` names (as the heir of a
/// dead gateway's subject, it answers only then).
pub(crate) fn holds(node: &Node, pid: &Pid) -> bool {
    parked(node).holds(pid)
}

/// The owner's side, step 1: gives the state of the parked socket `pid`
/// names to `to`, keeping the socket (and what reaches it) until step 2,
/// or for as long as two connect requests may take.
pub(crate) fn give(node: &Arc<Node>, pid: Pid, ns: &str, to: GatewayId) -> CommandReply {
    let taken = parked(node).take(&pid, ns, node.now());
    let socket = match taken {
        Some(Ok(socket)) => socket,
        Some(Err(expired)) => {
            leave(node, &expired);
            return CommandReply::UnknownSocket;
        }
        None => return CommandReply::UnknownSocket,
    };
    let Some(moving) = socket.moving() else {
        leave(node, &socket);
        return CommandReply::UnknownSocket;
    };
    parked(node).claim(pid, socket, to);
    let weak = Arc::downgrade(node);
    let wait = ms(node.config.connect_request_timeout.saturating_mul(2));
    tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        // Step 2 never came: the new gateway gave up.
        let Some(node) = weak.upgrade() else { return };
        let claimed = parked(&node).unclaim(&pid);
        if let Some((socket, _)) = claimed {
            leave(&node, &socket);
        }
    });
    tracing::debug!(%pid, %to, "recover: given");
    CommandReply::Recovering {
        socket: moving,
        keeper: node.id,
    }
}

/// The owner's side, step 2, answered to `reply`: what the client missed
/// after `after`, and the socket lives on where step 1 said (commands for
/// it are forwarded there). Runs beside the `P.gw` loop (a drain answers
/// many at once): what the loop applies to the socket meanwhile is in
/// what it gives. Counted until its answer is out.
pub(crate) async fn let_go(node: Arc<Node>, pid: Pid, after: Option<Offset>, reply: String) {
    let busy = Busy::new(&node);
    let answer = give_missed(&node, pid, after).await;
    if let Ok(bytes) = envelope::encode(&answer) {
        node.publish(reply, bytes.into()).await;
        let _ = tokio::time::timeout(delivery::CATCH_UP, node.bus.flush()).await;
    }
    drop(busy);
}

async fn give_missed(node: &Arc<Node>, pid: Pid, after: Option<Offset>) -> CommandReply {
    let claimed = parked(node).unclaim(&pid);
    let Some((socket, to)) = claimed else {
        tracing::debug!(%pid, "recover: step 2 for no claim");
        return CommandReply::UnknownSocket;
    };
    tracing::debug!(%pid, "recover: letting go");
    node.metrics.recoverable.set(parked(node).gauge());
    // Whatever was emitted before `to` took the socket's subscriptions
    // reaches this gateway before its markers do (as in a hand-over): in
    // the log by then. Emits after it reach `to` itself.
    delivery::catch_up(node, std::slice::from_ref(&socket)).await;
    // Moved: from now on emits reach it at `to` only, and what comes here
    // for it (direct emits, acks) goes there.
    socket.moved(to);
    let known = socket.kept();
    let kept = match socket.replace(after, || {}) {
        Ok((kept, _)) => kept,
        Err(_) => {
            leave(node, &socket);
            return CommandReply::UnknownSocket;
        }
    };
    node.registry.moved(&socket, to);
    node.unrecord(&socket);
    parked(node).moved(pid, to);
    node.registry.remove_socket(&socket.id);
    node.registry.unindex(&socket);
    socket.leave();
    let emits = kept
        .iter()
        .map(|entry| MissedEmit {
            id: entry.id(),
            frames: entry.frames().iter().map(queued).collect(),
        })
        .collect();
    CommandReply::Missed(Missed {
        emits,
        kept: known,
        busy: !socket.is_idle(),
    })
}

/// A parked socket whose client will not have it back leaves.
fn leave(node: &Arc<Node>, socket: &Arc<Socket>) {
    let reason = socket.parked().unwrap_or(DisconnectReason::TransportClose);
    node.forget_socket(socket, reason);
}

/// How many sockets wait for their clients here, or recoveries under
/// way.
pub(crate) fn parked_count(node: &Node) -> usize {
    parked(node).waiting()
}

/// The gateway is going away: every parked socket leaves now, its
/// workers told, as its memory goes with the process.
pub(crate) fn release_all(node: &Arc<Node>) {
    let gone = {
        let mut parked = parked(node);
        node.metrics.recoverable.set(0);
        parked.drain()
    };
    for socket in &gone {
        leave(node, socket);
    }
}

/// Lets parked sockets go as their windows end, for as long as the
/// gateway lives.
pub(crate) async fn expire(node: Weak<Node>) {
    loop {
        let wait = {
            let Some(node) = node.upgrade() else { return };
            let now = node.now();
            let (gone, next) = {
                let mut parked = parked(&node);
                let expired = parked.expired(now);
                node.metrics.recoverable.set(parked.gauge());
                expired
            };
            for socket in &gone {
                leave(&node, socket);
            }
            next.map_or(1000, |at| at.saturating_sub(now).clamp(1, 1000))
        };
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}
