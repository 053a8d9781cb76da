//! Connection state recovery from this gateway's memory: the packets each
//! socket may need again ([`Log`], bounded per socket), counted once in
//! all however many sockets keep them ([`Memory`]). The sockets waiting
//! for their clients are [`crate::parked`]'s.
//!
//! While recovery is on, every emit a client may get again (not volatile,
//! no ack id) carries its emit id as the offset, spliced into the shared
//! frames once per emit. Each socket keeps the entries it was sent, in the
//! order it was sent them, so a client back with offset `o` gets exactly
//! the entries after `o`. A socket whose transport is lost stays in its
//! rooms, keeping what reaches it; its workers hear of the disconnect only
//! when the window ends without its client.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use prometheus_client::metrics::gauge::Gauge;
use sio_protocol::envelope::EmitId;
use sio_protocol::id::GatewayId;
use sio_protocol::socketio::recovery::Offset;

use crate::config::Config;
use crate::outbox::Frame;

/// One emit's frames as the sockets that got it keep them.
#[derive(Debug)]
pub(crate) struct Entry {
    id: EmitId,
    frames: Box<[Frame]>,
    size: usize,
    memory: Arc<Used>,
}

impl Entry {
    pub(crate) fn id(&self) -> EmitId {
        self.id
    }

    pub(crate) fn frames(&self) -> &[Frame] {
        &self.frames
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.memory.bytes.fetch_sub(self.size, Ordering::Relaxed);
        self.memory
            .gauge
            .dec_by(i64::try_from(self.size).unwrap_or(i64::MAX));
    }
}

#[derive(Debug)]
struct Used {
    bytes: AtomicUsize,
    gauge: Gauge,
}

/// The bound on all kept packets, and the ids of emits made here.
#[derive(Debug)]
pub(crate) struct Memory {
    used: Arc<Used>,
    limit: usize,
    /// Emits to one socket get their ids here: this gateway's id and a
    /// count, apart from the random ids of emits from the bus.
    local: (u64, AtomicU64),
}

impl Memory {
    pub(crate) fn new(limit: usize, gauge: Gauge, gateway: GatewayId) -> Self {
        Self {
            used: Arc::new(Used {
                bytes: AtomicUsize::new(0),
                gauge,
            }),
            limit,
            local: (u64::from_le_bytes(*gateway.as_bytes()), AtomicU64::new(0)),
        }
    }

    /// An id for an emit made on this gateway: the count in the high half,
    /// and in the low half (the offset) the count scrambled one to one and
    /// mixed with the gateway, apart from other gateways' offsets.
    pub(crate) fn local_id(&self) -> EmitId {
        let n = self.local.1.fetch_add(1, Ordering::Relaxed);
        let low = self.local.0 ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        EmitId((u128::from(n) << 64) | u128::from(low))
    }

    /// Keeps `frames` of emit `id`; past the bound, gives them back.
    pub(crate) fn keep(&self, id: EmitId, frames: Vec<Frame>) -> Result<Arc<Entry>, Vec<Frame>> {
        // The entry and the log's pointer to it, roughly, beside the bytes.
        let size: usize = frames.iter().map(Frame::len).sum::<usize>() + 64;
        let before = self.used.bytes.fetch_add(size, Ordering::Relaxed);
        if before + size > self.limit {
            self.used.bytes.fetch_sub(size, Ordering::Relaxed);
            return Err(frames);
        }
        self.used
            .gauge
            .inc_by(i64::try_from(size).unwrap_or(i64::MAX));
        Ok(Arc::new(Entry {
            id,
            frames: frames.into_boxed_slice(),
            size,
            memory: self.used.clone(),
        }))
    }
}

/// The reasons socket.io lets a client recover from: the transport's, not
/// a namespace disconnect or a client that sent garbage.
pub(crate) const fn recoverable(reason: sio_protocol::envelope::DisconnectReason) -> bool {
    use sio_protocol::envelope::DisconnectReason as R;
    matches!(
        reason,
        R::TransportClose
            | R::TransportError
            | R::PingTimeout
            | R::ForcedClose
            | R::ServerShuttingDown
    )
}

/// What a delivery to a socket keeps for its recovery.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Keep<'a> {
    /// Nothing: not a packet a client gets again (an ack, a volatile emit,
    /// a DISCONNECT).
    Not,
    Entry(&'a Arc<Entry>),
    /// One it should keep, but the gateway's bound was reached.
    Over,
}

/// Bounds on one socket's log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub(crate) packets: usize,
    pub(crate) bytes: usize,
}

impl Bounds {
    /// `--recovery-packets` and `--recovery-bytes`.
    pub(crate) const fn of(config: &Config) -> Self {
        Self {
            packets: config.recovery_packets,
            bytes: config.recovery_bytes,
        }
    }
}

/// The entries one socket was sent, oldest first.
#[derive(Debug)]
pub(crate) struct Log {
    bounds: Bounds,
    entries: VecDeque<Arc<Entry>>,
    bytes: usize,
    /// Where the entries begin.
    start: Start,
    /// An entry is missing (the gateway's bound): not recoverable.
    broken: bool,
}

/// What came before a log's first entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// Nothing: every entry since the socket connected is here, and a
    /// client that got none yet (no offset) can get them all.
    Whole,
    /// This emit, the last its client had when the log began (a
    /// recovery): a client back with it again gets every entry.
    After(Offset),
    /// Entries went past the bounds.
    Unknown,
}

/// Why a socket cannot be recovered from its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unrecoverable {
    /// Its client's offset is older than anything kept.
    Behind,
    /// It missed a packet the gateway had no room to keep.
    Broken,
}

impl Unrecoverable {
    pub(crate) const fn outcome(self) -> &'static str {
        match self {
            Self::Behind => "behind",
            Self::Broken => "unrecoverable",
        }
    }
}

impl Log {
    /// A log from a socket's first packet on (`whole`), or from some
    /// packet on.
    pub(crate) fn new(bounds: Bounds, whole: bool) -> Self {
        let start = if whole { Start::Whole } else { Start::Unknown };
        Self {
            bounds,
            entries: VecDeque::new(),
            bytes: 0,
            start,
            broken: false,
        }
    }

    /// A log for a socket recovered from elsewhere, whose client's last
    /// packet was `offset`.
    pub(crate) fn after_offset(bounds: Bounds, offset: Option<Offset>) -> Self {
        let mut log = Self::new(bounds, offset.is_none());
        if let Some(offset) = offset {
            log.start = Start::After(offset);
        }
        log
    }

    /// Keeps what a delivery keeps; the oldest go past the bounds (and
    /// with them, recovery for a client that far behind).
    pub(crate) fn push(&mut self, keep: Keep<'_>) {
        let bounds = self.bounds;
        match keep {
            Keep::Not => {}
            Keep::Over => {
                self.broken = true;
                self.entries.clear();
                self.bytes = 0;
            }
            Keep::Entry(_) if self.broken => {}
            Keep::Entry(entry) => {
                self.bytes += entry.size;
                self.entries.push_back(entry.clone());
                while self.entries.len() > bounds.packets || self.bytes > bounds.bytes {
                    let Some(old) = self.entries.pop_front() else {
                        break;
                    };
                    self.bytes -= old.size;
                    self.start = Start::Unknown;
                }
            }
        }
    }

    /// For a client whose last packet was `offset`: the entries after it,
    /// and the log from there on (what the client got is let go).
    /// Unrecoverable: the log back, untouched.
    pub(crate) fn after(mut self, offset: Option<Offset>) -> Result<Missed, (Unrecoverable, Self)> {
        if self.broken {
            return Err((Unrecoverable::Broken, self));
        }
        let from = match (offset, self.start) {
            (None, Start::Whole) => 0,
            (Some(id), Start::After(before)) if id == before => 0,
            (Some(id), _) => match self.entries.iter().rposition(|e| e.id.offset() == id) {
                Some(at) => at + 1,
                None => return Err((Unrecoverable::Behind, self)),
            },
            (None, _) => return Err((Unrecoverable::Behind, self)),
        };
        let missed: Vec<Arc<Entry>> = self.entries.drain(..).skip(from).collect();
        self.bytes = missed.iter().map(|e| e.size).sum();
        // What is left starts after what the client had: it may come back
        // with the same offset before it gets anything new.
        if let Some(id) = offset {
            self.start = Start::After(id);
        }
        self.entries.extend(missed.iter().cloned());
        Ok((missed, self))
    }

    /// Where a client that got all it was sent stands: `Some(None)`
    /// before its first entry; `None` if it cannot be recovered (an entry
    /// is missing, or what it had is unknown).
    pub(crate) fn last(&self) -> Option<Option<Offset>> {
        if self.broken {
            return None;
        }
        match (self.entries.back(), self.start) {
            (Some(entry), _) => Some(Some(entry.id.offset())),
            (None, Start::Whole) => Some(None),
            (None, Start::After(offset)) => Some(Some(offset)),
            (None, Start::Unknown) => None,
        }
    }

    /// A log begun whole on the gateway a socket was handed over to, once
    /// its first gateway said where the client's packets stand (`last`):
    /// what that gateway `delivered` goes, the rest follows `last`.
    pub(crate) fn resume(&mut self, last: Option<Offset>, delivered: &HashSet<EmitId>) {
        self.entries.retain(|e| !delivered.contains(&e.id));
        self.bytes = self.entries.iter().map(|e| e.size).sum();
        if let (Start::Whole, Some(offset)) = (self.start, last) {
            self.start = Start::After(offset);
        }
    }

    /// The ids of the entries it keeps.
    pub(crate) fn ids(&self) -> Vec<EmitId> {
        self.entries.iter().map(|e| e.id).collect()
    }

    /// `newer` (kept since) after this, but for the entries this has
    /// (an emit that reached both gateways of a recovery).
    pub(crate) fn append(&mut self, newer: Self) {
        if newer.broken {
            self.push(Keep::Over);
        }
        let ours: HashSet<EmitId> = self.entries.iter().map(|e| e.id).collect();
        for entry in newer.entries.iter().filter(|e| !ours.contains(&e.id)) {
            self.push(Keep::Entry(entry));
        }
    }
}

/// What a returning client missed, and the log that goes on from there.
pub(crate) type Missed = (Vec<Arc<Entry>>, Log);

#[cfg(test)]
mod tests {
    use super::*;

    fn memory(limit: usize) -> Memory {
        Memory::new(limit, Gauge::default(), GatewayId::from_bytes([1; 8]))
    }

    fn entry(memory: &Memory, n: u8) -> Arc<Entry> {
        let frames = vec![Frame::Text(format!("42[\"n\",{n}]").into())];
        memory
            .keep(EmitId(u128::from(n)), frames)
            .unwrap_or_else(|_| panic!("room for {n}"))
    }

    fn offset(n: u8) -> Option<Offset> {
        Some(EmitId(u128::from(n)).offset())
    }

    fn ids(entries: &[Arc<Entry>]) -> Vec<u128> {
        entries.iter().map(|e| e.id.0).collect()
    }

    const BOUNDS: Bounds = Bounds {
        packets: 4,
        bytes: 1 << 20,
    };

    fn found(log: Log, offset: Option<Offset>) -> Result<Missed, String> {
        log.after(offset).map_err(|(why, _)| format!("{why:?}"))
    }

    fn why<T>(result: Result<T, (Unrecoverable, Log)>) -> Option<Unrecoverable> {
        result.err().map(|(why, _)| why)
    }

    #[test]
    fn a_client_gets_what_came_after_its_offset() -> Result<(), Box<dyn std::error::Error>> {
        let memory = memory(1 << 20);
        let mut log = Log::new(BOUNDS, true);
        for n in 1..=3 {
            log.push(Keep::Entry(&entry(&memory, n)));
        }
        log.push(Keep::Not);
        let (missed, log) = found(log, offset(1))?;
        assert_eq!(ids(&missed), [2, 3]);
        // What the client got is let go; what it is sent now stays.
        let (missed, mut log) = found(log, offset(3))?;
        assert!(missed.is_empty());
        // Back again before it got anything new: the same offset.
        log.push(Keep::Entry(&entry(&memory, 4)));
        let (missed, log) = found(log, offset(3))?;
        assert_eq!(ids(&missed), [4]);
        let (missed, log) = found(log, offset(3))?;
        assert_eq!(ids(&missed), [4], "still, if 4 never reached it");
        assert_eq!(
            why(log.after(None)),
            Some(Unrecoverable::Behind),
            "no longer whole"
        );
        // Recovered elsewhere: it starts after the client's offset.
        let mut log = Log::after_offset(BOUNDS, offset(4));
        let (missed, _) = found(log, offset(4))?;
        assert!(missed.is_empty());
        log = Log::after_offset(BOUNDS, offset(4));
        log.push(Keep::Entry(&entry(&memory, 5)));
        let (missed, _) = found(log, offset(4))?;
        assert_eq!(ids(&missed), [5]);
        log = Log::new(BOUNDS, true);
        log.push(Keep::Entry(&entry(&memory, 9)));
        let (missed, _) = found(log, None)?;
        assert_eq!(ids(&missed), [9], "before its first event: everything");
        Ok(())
    }

    #[test]
    fn bounds_make_a_socket_unrecoverable() -> Result<(), Box<dyn std::error::Error>> {
        let memory = memory(1 << 20);
        let mut log = Log::new(BOUNDS, true);
        for n in 1..=6 {
            log.push(Keep::Entry(&entry(&memory, n)));
        }
        let mut later = Log::new(BOUNDS, false);
        later.push(Keep::Entry(&entry(&memory, 7)));
        log.append(later);
        assert_eq!(log.entries.len(), 4, "at most 4 packets");
        let (missed, log) = found(log, offset(4))?;
        assert_eq!(ids(&missed), [5, 6, 7]);
        assert_eq!(why(log.after(offset(2))), Some(Unrecoverable::Behind));

        let mut log = Log::new(BOUNDS, true);
        log.push(Keep::Entry(&entry(&memory, 1)));
        log.push(Keep::Over);
        log.push(Keep::Entry(&entry(&memory, 2)));
        assert_eq!(why(log.after(offset(1))), Some(Unrecoverable::Broken));
        Ok(())
    }

    #[test]
    fn memory_counts_each_entry_once_until_dropped() {
        let memory = memory(300);
        let a = entry(&memory, 1);
        let b = a.clone();
        let used = memory.used.bytes.load(Ordering::Relaxed);
        assert!(used > 64 && used < 150, "{used}");
        let c = entry(&memory, 2);
        assert!(
            memory
                .keep(EmitId(3), vec![Frame::Text("x".repeat(200).into())])
                .is_err()
        );
        drop((a, b, c));
        assert_eq!(memory.used.bytes.load(Ordering::Relaxed), 0);
        assert_ne!(memory.local_id(), memory.local_id());
    }
}
