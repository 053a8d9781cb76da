//! Per client address: how many connections one address holds and how
//! many it opened in the last second, so one address cannot take every
//! connection the gateway has. The address is the TCP peer's; behind a
//! trusted proxy (`--trust-proxy`) every client shares the proxy's, so the
//! limits apply to the address the proxy reports, at the handshake.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Addresses remembered at most; past it, addresses with no connection
/// open are forgotten first.
const MAX_ADDRESSES: usize = 65_536;

#[derive(Debug)]
pub(crate) struct Addresses {
    epoch: Instant,
    by_ip: Mutex<HashMap<IpAddr, Usage>>,
}

impl Default for Addresses {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            by_ip: Mutex::default(),
        }
    }
}

/// One connection (or session) counted for its address, released on drop.
#[derive(Debug)]
pub(crate) struct Slot {
    addresses: Arc<Addresses>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let now = self.addresses.now();
        self.addresses.closed(self.ip, now);
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    open: usize,
    /// The second (of the gateway's clock) `opened` counts for.
    second: u64,
    opened: u32,
}

/// Why an address may not open another connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Concurrent,
    Rate,
}

impl Refusal {
    pub(crate) const fn metric(self) -> &'static str {
        match self {
            Self::Concurrent => "address_concurrent",
            Self::Rate => "address_rate",
        }
    }
}

/// The limits; 0 is off.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) concurrent: usize,
    pub(crate) per_second: u32,
}

impl Limits {
    pub(crate) fn off(self) -> bool {
        self.concurrent == 0 && self.per_second == 0
    }
}

impl Addresses {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A slot for one more connection from `ip`, if the limits allow it.
    pub(crate) fn take(self: &Arc<Self>, ip: IpAddr, limits: Limits) -> Result<Slot, Refusal> {
        self.open(ip, self.now(), limits)?;
        Ok(Slot {
            addresses: self.clone(),
            ip,
        })
    }

    fn by_ip(&self) -> MutexGuard<'_, HashMap<IpAddr, Usage>> {
        self.by_ip.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One more connection from `ip` at `now_ms`, if the limits allow it;
    /// each allowed one is [`closed`](Self::closed) once.
    fn open(&self, ip: IpAddr, now_ms: u64, limits: Limits) -> Result<(), Refusal> {
        let second = now_ms / 1000;
        let mut by_ip = self.by_ip();
        if by_ip.len() >= MAX_ADDRESSES && !by_ip.contains_key(&ip) {
            by_ip.retain(|_, u| u.open > 0);
        }
        let usage = by_ip.entry(ip).or_default();
        if usage.second != second {
            usage.second = second;
            usage.opened = 0;
        }
        if limits.concurrent != 0 && usage.open >= limits.concurrent {
            return Err(Refusal::Concurrent);
        }
        if limits.per_second != 0 && usage.opened >= limits.per_second {
            return Err(Refusal::Rate);
        }
        usage.open += 1;
        usage.opened += 1;
        Ok(())
    }

    /// A connection from `ip` closed at `now_ms`; an address with none
    /// left whose second has passed is forgotten.
    fn closed(&self, ip: IpAddr, now_ms: u64) {
        let mut by_ip = self.by_ip();
        if let Some(usage) = by_ip.get_mut(&ip) {
            usage.open = usage.open.saturating_sub(1);
            if usage.open == 0 && usage.second != now_ms / 1000 {
                by_ip.remove(&ip);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_ip().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn concurrent_connections_per_address() {
        let a = Addresses::default();
        let limits = Limits {
            concurrent: 2,
            per_second: 0,
        };
        assert_eq!(a.open(A, 0, limits), Ok(()));
        assert_eq!(a.open(A, 0, limits), Ok(()));
        assert_eq!(a.open(A, 0, limits), Err(Refusal::Concurrent));
        assert_eq!(
            a.open(B, 0, limits),
            Ok(()),
            "another address is not affected"
        );
        a.closed(A, 0);
        assert_eq!(a.open(A, 0, limits), Ok(()));
    }

    #[test]
    fn new_connections_per_second_per_address() {
        let a = Addresses::default();
        let limits = Limits {
            concurrent: 0,
            per_second: 2,
        };
        assert_eq!(a.open(A, 1_000, limits), Ok(()));
        assert_eq!(a.open(A, 1_500, limits), Ok(()));
        assert_eq!(a.open(A, 1_999, limits), Err(Refusal::Rate));
        assert_eq!(a.open(A, 2_000, limits), Ok(()), "a new second");
    }

    #[test]
    fn a_slot_frees_on_drop() {
        let a = Arc::new(Addresses::default());
        let limits = Limits {
            concurrent: 1,
            per_second: 0,
        };
        let slot = a.take(A, limits).unwrap();
        assert_eq!(a.take(A, limits).unwrap_err(), Refusal::Concurrent);
        drop(slot);
        assert!(a.take(A, limits).is_ok());
    }

    #[test]
    fn addresses_without_connections_are_forgotten() {
        let a = Addresses::default();
        let limits = Limits {
            concurrent: 1,
            per_second: 0,
        };
        assert_eq!(a.open(A, 0, limits), Ok(()));
        a.closed(A, 10);
        assert_eq!(a.len(), 1, "its second's count is still needed");
        assert_eq!(a.open(A, 5_000, limits), Ok(()));
        a.closed(A, 6_000);
        assert_eq!(a.len(), 0);
    }
}
