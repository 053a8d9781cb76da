//! The local room index and the interest it drives.
//!
//! The gateway subscribes to `P.room.<ns>.<room>` while at least one local
//! socket is in the room, and to `P.ns.<ns>` while at least one local
//! socket is in the namespace, so it receives no bytes for rooms it has no
//! member of. A socket's own-id room is never subscribed: emits to one
//! socket travel on `P.gw.<gateway-id>`.

use std::collections::{HashMap, HashSet};

use sio_protocol::id::SocketId;
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// A live subscription for one subject; unsubscribes when dropped.
#[derive(Debug)]
pub(crate) struct Interest {
    task: AbortHandle,
    /// Becomes true once the subscription reached the bus.
    ready: watch::Receiver<bool>,
}

impl Interest {
    pub(crate) fn new(task: AbortHandle, ready: watch::Receiver<bool>) -> Self {
        Self { task, ready }
    }
}

impl Drop for Interest {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug)]
struct Room {
    members: HashSet<SocketId>,
    _interest: Interest,
}

#[derive(Debug)]
struct Namespace {
    sockets: HashSet<SocketId>,
    rooms: HashMap<String, Room>,
    _interest: Interest,
}

/// Who is in which room on this gateway.
#[derive(Debug, Default)]
pub(crate) struct RoomIndex {
    namespaces: HashMap<String, Namespace>,
}

/// What subscribing to a new subject looks like to the index.
pub(crate) type Subscribe<'a> = &'a dyn Fn(Target<'_>) -> Interest;

/// A subject the index needs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    Namespace(&'a str),
    Room(&'a str, &'a str),
}

impl RoomIndex {
    /// Adds a socket to its namespace and to `rooms`. Returns the readiness
    /// of every subscription this created.
    pub(crate) fn add(
        &mut self,
        ns: &str,
        id: SocketId,
        rooms: &[String],
        subscribe: Subscribe<'_>,
    ) -> Vec<watch::Receiver<bool>> {
        let mut created = Vec::new();
        let namespace = self.namespaces.entry(ns.to_owned()).or_insert_with(|| {
            let interest = subscribe(Target::Namespace(ns));
            created.push(interest.ready.clone());
            Namespace {
                sockets: HashSet::new(),
                rooms: HashMap::new(),
                _interest: interest,
            }
        });
        namespace.sockets.insert(id);
        for room in rooms {
            let entry = namespace.rooms.entry(room.clone()).or_insert_with(|| {
                let interest = subscribe(Target::Room(ns, room));
                created.push(interest.ready.clone());
                Room {
                    members: HashSet::new(),
                    _interest: interest,
                }
            });
            entry.members.insert(id);
        }
        created
    }

    /// Takes a socket out of `rooms`, dropping interest in emptied rooms.
    pub(crate) fn leave(&mut self, ns: &str, id: SocketId, rooms: &[String]) {
        let Some(namespace) = self.namespaces.get_mut(ns) else {
            return;
        };
        for room in rooms {
            if let Some(entry) = namespace.rooms.get_mut(room) {
                entry.members.remove(&id);
                if entry.members.is_empty() {
                    namespace.rooms.remove(room);
                }
            }
        }
    }

    /// Takes a socket out of its rooms and its namespace.
    pub(crate) fn remove(&mut self, ns: &str, id: SocketId, rooms: &[String]) {
        self.leave(ns, id, rooms);
        let Some(namespace) = self.namespaces.get_mut(ns) else {
            return;
        };
        namespace.sockets.remove(&id);
        if namespace.sockets.is_empty() {
            self.namespaces.remove(ns);
        }
    }

    /// The local sockets an emit reaches: members of any of `rooms` (all
    /// of `ns` when empty), each once, minus members of `except`. A room
    /// named by a socket id holds that socket.
    pub(crate) fn targets(&self, ns: &str, rooms: &[String], except: &[String]) -> Vec<SocketId> {
        let Some(namespace) = self.namespaces.get(ns) else {
            return Vec::new();
        };
        let members = |room: &String| -> Vec<SocketId> {
            let own = room
                .parse::<SocketId>()
                .ok()
                .filter(|id| namespace.sockets.contains(id));
            let listed = namespace
                .rooms
                .get(room)
                .into_iter()
                .flat_map(|r| r.members.iter().copied());
            own.into_iter().chain(listed).collect()
        };
        let excluded: HashSet<SocketId> = except.iter().flat_map(members).collect();
        let mut seen = HashSet::new();
        let candidates: Box<dyn Iterator<Item = SocketId>> = if rooms.is_empty() {
            Box::new(namespace.sockets.iter().copied())
        } else {
            Box::new(rooms.iter().flat_map(members))
        };
        candidates
            .filter(|id| !excluded.contains(id) && seen.insert(*id))
            .collect()
    }

    /// Whether this gateway is subscribed for `room` in `ns`.
    #[cfg(test)]
    pub(crate) fn has_interest(&self, ns: &str, room: &str) -> bool {
        self.namespaces
            .get(ns)
            .is_some_and(|n| n.rooms.contains_key(room))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use sio_protocol::id::GatewayId;

    use super::*;

    fn id(n: u8) -> SocketId {
        SocketId::from_parts(GatewayId::from_bytes([0; 8]), [n; 16])
    }

    #[tokio::test]
    async fn interest_follows_membership() {
        let log = RefCell::new(Vec::new());
        let subscribe = |t: Target<'_>| {
            log.borrow_mut().push(format!("{t:?}"));
            let (_tx, rx) = watch::channel(false);
            Interest::new(tokio::spawn(async {}).abort_handle(), rx)
        };
        let mut index = RoomIndex::default();
        let rooms = |r: &[&str]| r.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            index.add("/", id(1), &rooms(&["a", "b"]), &subscribe).len(),
            3
        );
        assert_eq!(index.add("/", id(2), &rooms(&["b"]), &subscribe).len(), 0);
        assert_eq!(log.borrow().len(), 3);
        let mut t = index.targets("/", &rooms(&["a", "b"]), &[]);
        t.sort();
        assert_eq!(t, [id(1), id(2)], "each socket once");
        assert_eq!(index.targets("/", &rooms(&["b"]), &rooms(&["a"])), [id(2)]);
        assert_eq!(index.targets("/", &[], &[id(2).to_string()]), [id(1)]);
        assert_eq!(index.targets("/", &[id(1).to_string()], &[]), [id(1)]);
        assert!(index.targets("/other", &[], &[]).is_empty());
        index.leave("/", id(1), &rooms(&["a"]));
        assert!(!index.has_interest("/", "a"), "last member left");
        assert!(index.has_interest("/", "b"));
        index.remove("/", id(1), &rooms(&["b"]));
        index.remove("/", id(2), &rooms(&["b"]));
        assert!(!index.has_interest("/", "b"));
        assert!(index.targets("/", &[], &[]).is_empty());
    }
}
