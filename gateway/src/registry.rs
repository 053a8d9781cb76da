//! What lives on this gateway: the clients by sid, the sockets by id and
//! the room index, plus the ids of recent emits (to drop the copies of an
//! emit that reached it on several subjects), the sockets handed over to
//! other gateways, and the markers of hand-overs on their way back.
//! Everything else uses it; it uses nothing above it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use sio_protocol::envelope::EmitId;
use sio_protocol::id::{GatewayId, Sid, SocketId};
use tokio::sync::{oneshot, watch};

use crate::client::Client;
use crate::rooms::{RoomIndex, Subscribe};
use crate::socket::Socket;

/// Emit ids remembered to drop the copies of an emit that reached this
/// gateway more than once (sent to several rooms; or, with recovery over
/// NATS, read back from JetStream after the bus was away).
const RECENT_EMITS: usize = 65_536;

#[derive(Debug, Default)]
pub(crate) struct Registry {
    clients: Mutex<HashMap<Sid, Arc<Client>>>,
    sockets: Mutex<HashMap<SocketId, Arc<Socket>>>,
    rooms: Mutex<RoomIndex>,
    recent: Mutex<Recent>,
    moved: Mutex<Moved>,
    /// The gateways this one took sessions over from.
    owners: Mutex<HashSet<GatewayId>>,
    /// Those whose subjects it serves (they are gone), and the task.
    inherited: Mutex<HashMap<GatewayId, tokio::task::AbortHandle>>,
    markers: Mutex<HashMap<EmitId, oneshot::Sender<()>>>,
    /// How many markers are awaited: an emit looks them up only then.
    awaited: AtomicUsize,
    /// Woken when a hand-over to this gateway is done.
    arrivals: tokio::sync::Notify,
    /// Sockets being handed over to this gateway: a command looks for
    /// them only then.
    arriving: AtomicUsize,
    /// Emits held while the gateway catches up with what it missed when
    /// the bus was away.
    held: Mutex<Held>,
}

/// Emits held, at most this many (past it, dropped and counted).
const HELD_EMITS: usize = 65_536;

#[derive(Debug, Default)]
struct Held {
    on: bool,
    /// Each with whether it is a `P.to` command (else a room or
    /// namespace emit).
    queue: VecDeque<(bool, bytes::Bytes)>,
}

/// What became of an emit offered while emits may be held.
pub(crate) enum Hold {
    /// Deliver it now.
    Pass(bytes::Bytes),
    Held,
    /// Past the bound.
    Full,
}

/// Sockets handed over, remembered (at most this many, the oldest
/// forgotten first) to forward what reaches them here.
const MOVED_SOCKETS: usize = 65_536;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    pub(crate) fn client(&self, sid: &Sid) -> Option<Arc<Client>> {
        lock(&self.clients).get(sid).cloned()
    }

    pub(crate) fn clients(&self) -> Vec<Arc<Client>> {
        lock(&self.clients).values().cloned().collect()
    }

    pub(crate) fn client_count(&self) -> usize {
        lock(&self.clients).len()
    }

    pub(crate) fn add_client(&self, client: Arc<Client>) {
        lock(&self.clients).insert(client.session.sid, client);
    }

    pub(crate) fn remove_client(&self, sid: &Sid) -> Option<Arc<Client>> {
        lock(&self.clients).remove(sid)
    }

    pub(crate) fn socket(&self, id: &SocketId) -> Option<Arc<Socket>> {
        lock(&self.sockets).get(id).cloned()
    }

    pub(crate) fn socket_count(&self) -> usize {
        lock(&self.sockets).len()
    }

    /// Makes a socket reachable by id, unless it has left meanwhile (its
    /// removal takes the same lock after marking it gone).
    pub(crate) fn add_socket(&self, socket: Arc<Socket>) {
        let mut sockets = lock(&self.sockets);
        if !socket.is_gone() {
            sockets.insert(socket.id, socket);
        }
    }

    pub(crate) fn remove_socket(&self, id: &SocketId) {
        lock(&self.sockets).remove(id);
    }

    /// The local sockets of `ns` in any of `rooms` (all of `ns` when
    /// empty) and in none of `except`, each once.
    pub(crate) fn select(&self, ns: &str, rooms: &[String], except: &[String]) -> Vec<Arc<Socket>> {
        let ids = lock(&self.rooms).targets(ns, rooms, except);
        let sockets = lock(&self.sockets);
        ids.iter()
            .filter_map(|id| sockets.get(id).cloned())
            .collect()
    }

    /// Puts a socket in `rooms` of the index; returns the readiness of the
    /// subscriptions this created.
    pub(crate) fn join(
        &self,
        socket: &Socket,
        rooms: &[String],
        subscribe: Subscribe<'_>,
    ) -> Vec<watch::Receiver<bool>> {
        // Under the index's lock, as the removal is: a socket that left
        // while this join was on its way stays out.
        let mut index = lock(&self.rooms);
        if socket.is_gone() {
            return Vec::new();
        }
        let added = socket.add_rooms(rooms);
        index.add(&socket.ns, socket.id, &added, subscribe)
    }

    pub(crate) fn leave(&self, socket: &Socket, rooms: &[String]) {
        let mut index = lock(&self.rooms);
        let removed = socket.remove_rooms(rooms);
        index.leave(&socket.ns, socket.id, &removed);
    }

    /// Takes a socket out of the index altogether; mark it gone first
    /// ([`Socket::leave`]) so no join puts it back.
    pub(crate) fn unindex(&self, socket: &Socket) {
        let mut index = lock(&self.rooms);
        let rooms = socket.rooms();
        socket.remove_rooms(&rooms);
        index.remove(&socket.ns, socket.id, &rooms);
    }

    /// From now on emits are held (the bus went away): what comes when it
    /// is back waits behind what was missed meanwhile.
    pub(crate) fn hold(&self) {
        lock(&self.held).on = true;
    }

    /// An emit just in, held while emits are.
    pub(crate) fn offer(&self, payload: bytes::Bytes, command: bool) -> Hold {
        let mut held = lock(&self.held);
        if !held.on {
            return Hold::Pass(payload);
        }
        if held.queue.len() >= HELD_EMITS {
            return Hold::Full;
        }
        held.queue.push_back((command, payload));
        Hold::Held
    }

    /// The emits held so far, taken out; once none is left, emits are
    /// no longer held (so none overtakes those taken).
    pub(crate) fn unhold(&self) -> Vec<(bool, bytes::Bytes)> {
        let mut held = lock(&self.held);
        if held.queue.is_empty() {
            held.on = false;
        }
        held.queue.drain(..).collect()
    }

    /// True the first time an emit id is seen.
    pub(crate) fn first_sight(&self, id: EmitId) -> bool {
        lock(&self.recent).first(id)
    }

    /// The socket now lives on `to`.
    pub(crate) fn moved(&self, socket: &Arc<Socket>, to: GatewayId) {
        lock(&self.moved).insert(socket, to);
    }

    /// This gateway took a session of `owner` over.
    pub(crate) fn took_from(&self, owner: GatewayId) {
        lock(&self.owners).insert(owner);
    }

    /// Whether this gateway serves `owner`'s subjects.
    pub(crate) fn inherits(&self, owner: GatewayId) -> bool {
        lock(&self.inherited).contains_key(&owner)
    }

    /// Notes the task serving `owner`'s subjects; false (and the task
    /// stopped) if one did already.
    pub(crate) fn inherit(&self, owner: GatewayId, task: tokio::task::AbortHandle) -> bool {
        let mut inherited = lock(&self.inherited);
        if inherited.contains_key(&owner) {
            task.abort();
            return false;
        }
        inherited.insert(owner, task);
        true
    }

    /// `owner` is alive after all: its subjects are its own again.
    pub(crate) fn disinherit(&self, owner: GatewayId) {
        if let Some(task) = lock(&self.inherited).remove(&owner) {
            task.abort();
        }
    }

    pub(crate) fn owners(&self) -> Vec<GatewayId> {
        lock(&self.owners).iter().copied().collect()
    }

    /// A socket that moved from here lives on `to` now (it moved on from
    /// where it went).
    pub(crate) fn moved_on(&self, socket: SocketId, to: GatewayId) {
        lock(&self.moved).insert_id(socket, to);
    }

    /// Where a socket that was handed over lives now.
    pub(crate) fn moved_to(&self, socket: &SocketId) -> Option<GatewayId> {
        lock(&self.moved).to.get(socket).map(|(to, _)| *to)
    }

    /// A socket that had moved from here lives here again (its client
    /// recovered it here).
    pub(crate) fn back(&self, socket: &SocketId) {
        lock(&self.moved).to.remove(socket);
    }

    /// A socket handed over, while this gateway still works for it (an
    /// emit here awaits its client's answer).
    pub(crate) fn moved_socket(&self, socket: &SocketId) -> Option<Arc<Socket>> {
        lock(&self.moved).to.get(socket)?.1.upgrade()
    }

    /// Waits (at most `bound`) until a socket handed over to this gateway
    /// has its final state ([`Registry::arrived`]).
    pub(crate) async fn arrival(&self, socket: &Socket, bound: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + bound;
        while socket.is_arriving() {
            let woken = self.arrivals.notified();
            let mut woken = std::pin::pin!(woken);
            // Registered before the check, so a wake-up in between counts.
            woken.as_mut().enable();
            if !socket.is_arriving() {
                return;
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                return;
            }
        }
    }

    /// A socket is being handed over to this gateway.
    pub(crate) fn arriving(&self, socket: &Socket) {
        if !socket.set_arriving(true) {
            self.arriving.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// It has its final state: its commands may apply.
    pub(crate) fn arrived(&self, socket: &Socket) {
        if socket.set_arriving(false) {
            self.arriving.fetch_sub(1, Ordering::AcqRel);
            self.arrivals.notify_waiters();
        }
    }

    /// Whether any socket is being handed over to this gateway.
    pub(crate) fn any_arriving(&self) -> bool {
        self.arriving.load(Ordering::Acquire) > 0
    }

    /// Resolves when an emit with `id` comes through this gateway's
    /// subscriptions ([`Registry::marker`]).
    pub(crate) fn await_marker(&self, id: EmitId) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        lock(&self.markers).insert(id, tx);
        self.awaited.fetch_add(1, Ordering::AcqRel);
        rx
    }

    /// True (and its waiter told) if the emit is an awaited marker.
    pub(crate) fn marker(&self, id: EmitId) -> bool {
        if self.awaited.load(Ordering::Acquire) == 0 {
            return false;
        }
        let Some(tx) = lock(&self.markers).remove(&id) else {
            return false;
        };
        self.awaited.fetch_sub(1, Ordering::AcqRel);
        let _ = tx.send(());
        true
    }

    /// Stops waiting for markers that did not come back.
    pub(crate) fn forget_markers(&self, ids: &[EmitId]) {
        let mut markers = lock(&self.markers);
        for id in ids {
            if markers.remove(id).is_some() {
                self.awaited.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

#[derive(Debug, Default)]
struct Recent {
    ids: HashSet<EmitId>,
    order: VecDeque<EmitId>,
}

impl Recent {
    fn first(&mut self, id: EmitId) -> bool {
        if !self.ids.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > RECENT_EMITS {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        true
    }
}

#[derive(Debug, Default)]
struct Moved {
    to: HashMap<SocketId, (GatewayId, Weak<Socket>)>,
    order: VecDeque<SocketId>,
}

impl Moved {
    fn insert(&mut self, socket: &Arc<Socket>, to: GatewayId) {
        self.put(socket.id, (to, Arc::downgrade(socket)));
    }

    /// The socket here, if it waits for an answer, stays.
    fn insert_id(&mut self, socket: SocketId, to: GatewayId) {
        let here = self
            .to
            .get(&socket)
            .map(|(_, s)| s.clone())
            .unwrap_or_default();
        self.put(socket, (to, here));
    }

    fn put(&mut self, socket: SocketId, moved: (GatewayId, Weak<Socket>)) {
        if self.to.insert(socket, moved).is_none() {
            self.order.push_back(socket);
        }
        if self.order.len() > MOVED_SOCKETS {
            if let Some(old) = self.order.pop_front() {
                self.to.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_socket_that_left_is_not_joined_again() -> Result<(), Box<dyn std::error::Error>> {
        let registry = Registry::default();
        let socket = Arc::new(crate::socket::tests::socket(false)?);
        let subscribe = |_: crate::rooms::Target<'_>| {
            let (_tx, rx) = watch::channel(true);
            crate::rooms::Interest::new(tokio::spawn(async {}).abort_handle(), rx)
        };
        let lobby = ["lobby".to_owned()];
        registry.add_socket(socket.clone());
        assert_eq!(registry.join(&socket, &lobby, &subscribe).len(), 2);
        // It leaves, as Node::remove_socket does: marked, out of both maps.
        assert!(socket.leave());
        registry.remove_socket(&socket.id);
        registry.unindex(&socket);
        // A join and a connect that were on their way arrive now.
        assert!(registry.join(&socket, &lobby, &subscribe).is_empty());
        registry.add_socket(socket.clone());
        assert!(
            registry.select("/", &lobby, &[]).is_empty(),
            "not in the room"
        );
        assert!(
            registry.select("/", &[], &[]).is_empty(),
            "not in the namespace"
        );
        assert!(registry.socket(&socket.id).is_none(), "not reachable by id");
        Ok(())
    }

    #[test]
    fn recent_emits_are_seen_once_and_forgotten_in_order() {
        let mut recent = Recent::default();
        assert!(recent.first(EmitId(1)));
        assert!(!recent.first(EmitId(1)));
        for i in 2..=RECENT_EMITS as u128 + 1 {
            assert!(recent.first(EmitId(i)));
        }
        assert!(recent.first(EmitId(1)), "the oldest was forgotten");
        assert!(!recent.first(EmitId(RECENT_EMITS as u128 + 1)));
    }
}
