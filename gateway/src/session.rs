//! Engine.IO sessions: one per client connection, keyed by sid.
//!
//! A session owns the send queue, the heartbeat, the upgrade state and the
//! Socket.IO sockets (one per namespace) of its client. It starts on
//! polling or directly on websocket; a polling session may upgrade once.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use sio_protocol::envelope::{self, Handshake};
use sio_protocol::id::Sid;
use sio_protocol::socketio::Decoder;
use tokio_util::sync::CancellationToken;

use crate::config::Transport;
use crate::outbox::{Frame, Full, Outbox};
use crate::socket::Socket;

/// Where a polling session stands in its upgrade to websocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Upgrade {
    None,
    /// A websocket answered the probe; polling still carries packets.
    Probing,
    /// The websocket carries everything now.
    Done,
}

/// What the heartbeat sweep must do for a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Heartbeat {
    Wait,
    Ping,
    TimedOut,
}

#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) sid: Sid,
    pub(crate) outbox: Outbox,
    /// Cancelled when the session ends, for whoever waits on it.
    pub(crate) closed: CancellationToken,
    /// When the session opened, in milliseconds of the gateway's clock.
    pub(crate) opened: u64,
    /// Heartbeat deadlines, in milliseconds of the gateway's clock; the
    /// gateway's sweep acts on them (no timer task per session).
    next_ping: AtomicU64,
    /// When the pong for the last ping is due; 0 while none is awaited.
    pong_due: AtomicU64,
    /// Client events waiting for a worker's ack.
    asking: AtomicUsize,
    /// What the client sent when it opened the session, kept encoded: one
    /// allocation instead of a string per header, for every idle client.
    handshake: bytes::Bytes,
    state: Mutex<State>,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) transport: Transport,
    pub(crate) upgrade: Upgrade,
    /// A polling POST is being processed.
    pub(crate) posting: bool,
    pub(crate) decoder: Decoder,
    /// The namespaces this client joined.
    pub(crate) sockets: HashMap<String, Arc<Socket>>,
    /// Set once any namespace was joined (connectTimeout).
    pub(crate) joined: bool,
    /// Namespaces whose connect the workers are deciding: a repeated
    /// CONNECT meanwhile is ignored, so a client cannot pile up requests.
    pub(crate) connecting: HashSet<String>,
}

impl Session {
    /// A session opened at `opened` whose first ping is due at `first_ping`.
    pub(crate) fn new(
        sid: Sid,
        transport: Transport,
        handshake: Handshake,
        outbox: Outbox,
        decoder: Decoder,
        (opened, first_ping): (u64, u64),
    ) -> Self {
        Self {
            sid,
            opened,
            outbox,
            closed: CancellationToken::new(),
            next_ping: AtomicU64::new(first_ping),
            pong_due: AtomicU64::new(0),
            asking: AtomicUsize::new(0),
            // Trimmed to its length: the encoder's growth left up to half
            // of the buffer unused, for the whole life of the session.
            handshake: envelope::encode(&handshake)
                .map(|encoded| bytes::Bytes::from(encoded.into_boxed_slice()))
                .unwrap_or_default(),
            state: Mutex::new(State {
                transport,
                upgrade: Upgrade::None,
                posting: false,
                decoder,
                sockets: HashMap::new(),
                joined: false,
                connecting: HashSet::new(),
            }),
        }
    }

    /// A slot for one more client event waiting for a worker's ack, if
    /// fewer than `limit` wait: each holds its payload until the answer,
    /// so a client may not start them faster than the workers answer.
    pub(crate) fn ask(self: &Arc<Self>, limit: usize) -> Option<Asking> {
        if self.asking.fetch_add(1, Ordering::AcqRel) >= limit {
            self.asking.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Asking(self.clone()))
    }

    /// What the client sent when it opened the session.
    pub(crate) fn handshake(&self) -> Handshake {
        envelope::decode_owned(&self.handshake).unwrap_or_default()
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        // State stays consistent across a panic elsewhere: every update is
        // a single assignment.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.outbox.is_closed()
    }

    /// Ends the session for its transports; true for the call that ended it.
    pub(crate) fn close(&self) -> bool {
        let first = self.outbox.close();
        self.closed.cancel();
        first
    }

    /// The client answered the ping; the next one is due at `next_ping`.
    pub(crate) fn ponged(&self, next_ping: u64) {
        self.pong_due.store(0, Ordering::Relaxed);
        self.next_ping.store(next_ping, Ordering::Relaxed);
    }

    /// What the heartbeat owes this session at `now`.
    pub(crate) fn heartbeat(&self, now: u64, ping_timeout: u64) -> Heartbeat {
        let pong_due = self.pong_due.load(Ordering::Relaxed);
        if pong_due != 0 {
            return if now >= pong_due {
                Heartbeat::TimedOut
            } else {
                Heartbeat::Wait
            };
        }
        if now < self.next_ping.load(Ordering::Relaxed) {
            return Heartbeat::Wait;
        }
        self.pong_due
            .store(now.saturating_add(ping_timeout).max(1), Ordering::Relaxed);
        Heartbeat::Ping
    }

    /// Queues frames for the client.
    pub(crate) fn send(&self, frames: impl IntoIterator<Item = Frame>) -> Result<(), Full> {
        if self.is_closed() {
            return Ok(());
        }
        self.outbox.push(frames)
    }
}

/// One client event waiting for its ack; the slot frees on drop.
#[derive(Debug)]
pub(crate) struct Asking(Arc<Session>);

impl Drop for Asking {
    fn drop(&mut self) {
        self.0.asking.fetch_sub(1, Ordering::AcqRel);
    }
}
