//! The sockets whose transport was lost, waiting for their clients, by
//! pid (connection state recovery): when each window ends, the ones
//! another gateway is recovering, and where those recovered elsewhere
//! went.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use sio_protocol::id::{GatewayId, Pid};

use crate::socket::Socket;

/// Sockets whose transport was lost, by pid, with when each window ends.
#[derive(Debug, Default)]
pub(crate) struct Parked {
    sockets: HashMap<Pid, (Arc<Socket>, u64)>,
    /// Pids in the order their windows end (all windows are as long).
    order: VecDeque<(u64, Pid)>,
    /// Sockets another gateway is recovering (between its two steps), and
    /// which.
    claimed: HashMap<Pid, (Arc<Socket>, GatewayId)>,
    /// Where sockets recovered elsewhere went (the oldest forgotten past
    /// [`MOVED`]): their clients may come back here with the same pid.
    moved: HashMap<Pid, GatewayId>,
    moved_order: VecDeque<Pid>,
}

/// Pids of sockets recovered elsewhere, remembered.
const MOVED: usize = 65_536;

impl Parked {
    pub(crate) fn park(&mut self, pid: Pid, socket: Arc<Socket>, until: u64) {
        self.sockets.insert(pid, (socket, until));
        self.order.push_back((until, pid));
    }

    /// Takes the socket of namespace `ns` that `pid` names: a pid is
    /// restored at most once. `Err(socket)`: its window ended by `now`.
    pub(crate) fn take(
        &mut self,
        pid: &Pid,
        ns: &str,
        now: u64,
    ) -> Option<Result<Arc<Socket>, Arc<Socket>>> {
        if self.sockets.get(pid)?.0.ns != ns {
            return None;
        }
        let (socket, until) = self.sockets.remove(pid)?;
        Some(if until > now { Ok(socket) } else { Err(socket) })
    }

    /// Takes `socket` out (it leaves for another reason).
    pub(crate) fn remove(&mut self, socket: &Arc<Socket>) -> bool {
        let Some(pid) = socket.pid else { return false };
        let ours = self
            .sockets
            .get(&pid)
            .is_some_and(|(s, _)| Arc::ptr_eq(s, socket));
        ours && self.sockets.remove(&pid).is_some()
    }

    /// The sockets whose window ended by `now`, and when the next ends.
    pub(crate) fn expired(&mut self, now: u64) -> (Vec<Arc<Socket>>, Option<u64>) {
        let mut gone = Vec::new();
        while let Some(&(until, pid)) = self.order.front() {
            if until > now {
                return (gone, Some(until));
            }
            self.order.pop_front();
            // Taken meanwhile, or parked again later: not this entry's.
            if self.sockets.get(&pid).is_some_and(|(_, u)| *u == until) {
                gone.extend(self.sockets.remove(&pid).map(|(s, _)| s));
            }
        }
        (gone, None)
    }

    /// Another gateway is recovering `socket` (taken out by
    /// [`Parked::take`]).
    pub(crate) fn claim(&mut self, pid: Pid, socket: Arc<Socket>, by: GatewayId) {
        self.claimed.insert(pid, (socket, by));
    }

    /// The socket claimed with `pid`, taken back, and who claimed it.
    pub(crate) fn unclaim(&mut self, pid: &Pid) -> Option<(Arc<Socket>, GatewayId)> {
        self.claimed.remove(pid)
    }

    pub(crate) fn len(&self) -> usize {
        self.sockets.len() + self.claimed.len()
    }

    /// [`Parked::len`] for the gauge.
    pub(crate) fn gauge(&self) -> i64 {
        i64::try_from(self.len()).unwrap_or(i64::MAX)
    }

    /// The socket `pid` names lives on at `to` now.
    pub(crate) fn moved(&mut self, pid: Pid, to: GatewayId) {
        if self.moved.insert(pid, to).is_none() {
            self.moved_order.push_back(pid);
        }
        while self.moved_order.len() > MOVED {
            if let Some(old) = self.moved_order.pop_front() {
                self.moved.remove(&old);
            }
        }
    }

    /// The socket `pid` names is back here.
    pub(crate) fn unmove(&mut self, pid: &Pid) {
        self.moved.remove(pid);
    }

    /// Where the socket `pid` names went, if it was recovered elsewhere.
    pub(crate) fn moved_to(&self, pid: &Pid) -> Option<GatewayId> {
        self.moved.get(pid).copied()
    }

    /// Whether `pid` names a socket this gateway keeps.
    pub(crate) fn holds(&self, pid: &Pid) -> bool {
        self.sockets.contains_key(pid) || self.claimed.contains_key(pid)
    }

    /// Every socket, taken out.
    pub(crate) fn drain(&mut self) -> Vec<Arc<Socket>> {
        self.order.clear();
        let parked = self.sockets.drain().map(|(_, (s, _))| s);
        parked
            .chain(self.claimed.drain().map(|(_, (s, _))| s))
            .collect()
    }
}
