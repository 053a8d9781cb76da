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
    /// Recoveries under way here, either side ([`crate::recover::Busy`]):
    /// a drain waits for them as for the sockets.
    pub(crate) under_way: usize,
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

    /// What a drain waits for: the sockets, and the recoveries under way.
    pub(crate) fn waiting(&self) -> usize {
        self.len() + self.under_way
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recovery::{Bounds, Log};

    type Test = Result<(), Box<dyn std::error::Error>>;

    const GATEWAY: GatewayId = GatewayId::from_bytes([1; 8]);

    fn pid(n: u8) -> Pid {
        Pid::from_parts(GATEWAY, [n; 16])
    }

    /// A socket of namespace "/" known by `pid`.
    fn socket(pid: Pid) -> Result<Arc<Socket>, Box<dyn std::error::Error>> {
        let bounds = Bounds {
            packets: 8,
            bytes: 1 << 10,
        };
        let socket = crate::socket::tests::socket(false)?;
        Ok(Arc::new(socket.recoverable(pid, Log::new(bounds, true))))
    }

    #[test]
    fn a_pid_is_taken_once_within_its_window() -> Test {
        let mut parked = Parked::default();
        parked.park(pid(1), socket(pid(1))?, 100);
        parked.park(pid(2), socket(pid(2))?, 200);
        assert!(
            parked.take(&pid(1), "/other", 50).is_none(),
            "another namespace's"
        );
        assert!(matches!(parked.take(&pid(1), "/", 50), Some(Ok(_))));
        assert!(parked.take(&pid(1), "/", 50).is_none(), "once");
        assert!(
            matches!(parked.take(&pid(2), "/", 200), Some(Err(_))),
            "its window ended"
        );
        assert_eq!(parked.len(), 0);
        Ok(())
    }

    #[test]
    fn windows_end_in_order_and_claimed_sockets_wait_apart() -> Test {
        let mut parked = Parked::default();
        for (n, until) in [(1, 100), (2, 200), (3, 300)] {
            parked.park(pid(n), socket(pid(n))?, until);
        }
        // Another gateway is recovering 2.
        let Some(Ok(two)) = parked.take(&pid(2), "/", 150) else {
            panic!("2 is parked");
        };
        parked.claim(pid(2), two, GatewayId::from_bytes([2; 8]));
        let (gone, next) = parked.expired(250);
        assert_eq!(gone.len(), 1, "1 only: 2 is claimed");
        assert_eq!(next, Some(300));
        assert!(parked.holds(&pid(2)) && parked.holds(&pid(3)) && !parked.holds(&pid(1)));
        assert_eq!(parked.len(), 2);
        let claimed = parked.unclaim(&pid(2)).map(|(_, by)| by);
        assert_eq!(claimed, Some(GatewayId::from_bytes([2; 8])));
        assert!(!parked.holds(&pid(2)));
        // Parked again after it came back once: the old window's entry is
        // not the new one's.
        parked.park(pid(3), socket(pid(3))?, 400);
        assert!(parked.expired(350).0.is_empty());
        assert_eq!(parked.drain().len(), 1);
        assert_eq!(parked.len(), 0);
        Ok(())
    }

    #[test]
    fn where_a_pid_went_is_known_until_it_is_back() -> Test {
        let mut parked = Parked::default();
        let there = GatewayId::from_bytes([3; 8]);
        parked.moved(pid(1), there);
        assert_eq!(parked.moved_to(&pid(1)), Some(there));
        parked.unmove(&pid(1));
        assert_eq!(parked.moved_to(&pid(1)), None);
        let one = socket(pid(1))?;
        parked.park(pid(1), one.clone(), 10);
        assert!(parked.remove(&one), "a worker's disconnect takes it out");
        assert!(!parked.remove(&one));
        Ok(())
    }
}
