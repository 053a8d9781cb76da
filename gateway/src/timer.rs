//! Deadlines for every session in one place: a heap of (instant, sid) with
//! one live entry per session (its [`Session::arm`](crate::session::Session::arm)
//! deadline; others are stale and skipped), woken when an earlier deadline
//! arrives. Pings and closes happen at their deadline, not on a sweep,
//! and no session has a timer task of its own.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Mutex, MutexGuard};

use sio_protocol::id::Sid;
use tokio::sync::Notify;

#[derive(Debug, Default)]
pub(crate) struct Timer {
    heap: Mutex<BinaryHeap<Reverse<(u64, Sid)>>>,
    earlier: Notify,
}

impl Timer {
    fn heap(&self) -> MutexGuard<'_, BinaryHeap<Reverse<(u64, Sid)>>> {
        self.heap.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a deadline for `sid`.
    pub(crate) fn schedule(&self, at: u64, sid: Sid) {
        let first = {
            let mut heap = self.heap();
            let first = heap.peek().is_none_or(|Reverse((next, _))| at < *next);
            heap.push(Reverse((at, sid)));
            first
        };
        if first {
            self.earlier.notify_one();
        }
    }

    /// Takes every entry due by `now`.
    pub(crate) fn due(&self, now: u64) -> Vec<(u64, Sid)> {
        let mut heap = self.heap();
        let mut due = Vec::new();
        while let Some(Reverse((at, _))) = heap.peek() {
            if *at > now {
                break;
            }
            if let Some(Reverse(entry)) = heap.pop() {
                due.push(entry);
            }
        }
        due
    }

    /// The next deadline, if any.
    pub(crate) fn next(&self) -> Option<u64> {
        self.heap().peek().map(|Reverse((at, _))| *at)
    }

    /// Resolves when a deadline earlier than the current first one arrives.
    pub(crate) async fn earlier(&self) {
        self.earlier.notified().await;
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap().len()
    }
}

#[cfg(test)]
mod tests {
    use sio_protocol::id::GatewayId;

    use super::*;

    #[tokio::test]
    async fn deadlines_come_due_in_order_and_an_earlier_one_wakes()
    -> Result<(), Box<dyn std::error::Error>> {
        let gateway = GatewayId::random()?;
        let (a, b) = (Sid::random(gateway)?, Sid::random(gateway)?);
        let timer = Timer::default();
        timer.schedule(300, a);
        timer.schedule(500, b);
        assert_eq!(timer.next(), Some(300));
        assert!(timer.due(299).is_empty());
        timer.schedule(100, b);
        // The wake-up for the earlier deadline is stored for the waiter.
        tokio::time::timeout(std::time::Duration::from_secs(1), timer.earlier()).await?;
        assert_eq!(timer.due(300), [(100, b), (300, a)]);
        assert_eq!(timer.len(), 1);
        Ok(())
    }
}
