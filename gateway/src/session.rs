//! Engine.IO sessions: one per client connection, keyed by sid.
//!
//! A session owns the send queue, the heartbeat deadlines, the transport
//! and the upgrade state of its client. It knows nothing of Socket.IO: the
//! messages it receives go up as they are ([`Inbound`]). Its logic is
//! plain state in, verdict out (time comes in as milliseconds of the
//! gateway's clock), so it is tested without sockets or timers.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use sio_protocol::engineio::Packet;
use sio_protocol::id::Sid;

use crate::config::Transport;
use crate::fault::Fault;
use crate::outbox::{Frame, Full, Outbox};

/// Where a polling session stands in its upgrade to websocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Upgrade {
    None,
    /// A websocket answered the probe; polling still carries packets.
    Probing,
    /// The websocket carries everything now.
    Done,
}

/// What the heartbeat owes a session at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Heartbeat {
    /// Nothing before this deadline.
    Wait(u64),
    /// Send a ping now; the pong is due at the deadline.
    Ping(u64),
    TimedOut,
}

/// What a packet from the client means for the layer above.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Inbound<'a> {
    /// A message: Socket.IO text.
    Message(Cow<'a, str>),
    /// A binary message: a Socket.IO attachment.
    Binary(Bytes),
    /// The session ends.
    Close(Fault),
    /// Handled here (pong) or meaningless at this point (noop, upgrade).
    Nothing,
}

#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) sid: Sid,
    pub(crate) outbox: Outbox,
    /// When the session opened, in milliseconds of the gateway's clock.
    pub(crate) opened: u64,
    /// The next ping is due then (none is awaited).
    next_ping: AtomicU64,
    /// When the pong for the last ping is due; 0 while none is awaited.
    pong_due: AtomicU64,
    /// The deadline the heartbeat timer holds for this session.
    armed: AtomicU64,
    /// Why the session ended; set once, with the outbox's close.
    fault: OnceLock<Fault>,
    state: Mutex<State>,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) transport: Transport,
    pub(crate) upgrade: Upgrade,
    /// A polling POST is being processed.
    pub(crate) posting: bool,
}

impl Session {
    /// A session opened at `opened` whose first ping is due at `first_ping`.
    pub(crate) fn new(
        sid: Sid,
        transport: Transport,
        outbox: Outbox,
        (opened, first_ping): (u64, u64),
    ) -> Self {
        Self {
            sid,
            opened,
            outbox,
            next_ping: AtomicU64::new(first_ping),
            pong_due: AtomicU64::new(0),
            armed: AtomicU64::new(0),
            fault: OnceLock::new(),
            state: Mutex::new(State {
                transport,
                upgrade: Upgrade::None,
                posting: false,
            }),
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        // State stays consistent across a panic elsewhere: every update is
        // a single assignment.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.outbox.is_closed()
    }

    /// Ends the session for its transports; true for the call that ended
    /// it, whose fault is the one the session keeps.
    pub(crate) fn close(&self, fault: Fault) -> bool {
        // The fault first: whoever sees the queue closed can read it.
        let first = self.fault.set(fault).is_ok();
        self.outbox.close();
        first
    }

    /// Why the session ended, once it has.
    pub(crate) fn fault(&self) -> Option<Fault> {
        self.fault.get().copied()
    }

    /// Resolves when the session ends.
    pub(crate) async fn closed(&self) {
        self.outbox.closed().await;
    }

    /// A websocket probes this session: true if it may upgrade (a polling
    /// session, open, not upgrading already), and the probe begins.
    pub(crate) fn begin_upgrade(&self, allowed: bool) -> bool {
        let mut state = self.state();
        let eligible = allowed
            && state.transport == Transport::Polling
            && state.upgrade == Upgrade::None
            && !self.is_closed();
        if eligible {
            state.upgrade = Upgrade::Probing;
        }
        eligible
    }

    /// The probe failed or timed out: polling goes on, and may upgrade
    /// again.
    pub(crate) fn abort_upgrade(&self) {
        self.state().upgrade = Upgrade::None;
    }

    /// The client sent the upgrade packet: the websocket carries the
    /// session from now on.
    pub(crate) fn finish_upgrade(&self) {
        let mut state = self.state();
        state.transport = Transport::Websocket;
        state.upgrade = Upgrade::Done;
    }

    /// The packet a polling GET adds after the last frames of a session
    /// that ended while polling: the close packet for a close the server
    /// started; a noop when the client closed it (its close is done, and
    /// the pending GET only needs releasing), as the reference server does.
    pub(crate) fn last_poll_frame(&self) -> Option<Frame> {
        if !self.is_closed() || self.state().upgrade == Upgrade::Done {
            return None;
        }
        Some(match self.fault() {
            Some(Fault::ClientClose) => Frame::noop(),
            _ => Frame::close(),
        })
    }

    /// Reads one packet from the client's active transport at `now`.
    pub(crate) fn receive<'a>(
        &self,
        packet: Packet<'a>,
        now: u64,
        ping_interval: u64,
    ) -> Inbound<'a> {
        match packet {
            Packet::Message(text) => Inbound::Message(text),
            Packet::Binary(data) => Inbound::Binary(Bytes::from(data.into_owned())),
            Packet::Pong(_) => {
                self.ponged(now.saturating_add(ping_interval));
                Inbound::Nothing
            }
            Packet::Close => Inbound::Close(Fault::ClientClose),
            // In Engine.IO v4 only the server pings (probes travel on the
            // upgrading websocket, before it carries the session).
            Packet::Ping(_) => Inbound::Close(Fault::ClientPing),
            Packet::Open(_) | Packet::Upgrade | Packet::Noop => Inbound::Nothing,
        }
    }

    /// The client answered the ping; the next one is due at `next_ping`.
    fn ponged(&self, next_ping: u64) {
        self.pong_due.store(0, Ordering::Relaxed);
        self.next_ping.store(next_ping, Ordering::Relaxed);
    }

    /// What the heartbeat owes this session at `now`; a ping it returns is
    /// taken as sent.
    pub(crate) fn heartbeat(&self, now: u64, ping_timeout: u64) -> Heartbeat {
        let pong_due = self.pong_due.load(Ordering::Relaxed);
        if pong_due != 0 {
            return if now >= pong_due {
                Heartbeat::TimedOut
            } else {
                Heartbeat::Wait(pong_due)
            };
        }
        let next_ping = self.next_ping.load(Ordering::Relaxed);
        if now < next_ping {
            return Heartbeat::Wait(next_ping);
        }
        let due = now.saturating_add(ping_timeout).max(1);
        self.pong_due.store(due, Ordering::Relaxed);
        Heartbeat::Ping(due)
    }

    /// The heartbeat's next deadline: the pong due, or the next ping.
    pub(crate) fn deadline(&self) -> u64 {
        match self.pong_due.load(Ordering::Relaxed) {
            0 => self.next_ping.load(Ordering::Relaxed),
            due => due,
        }
    }

    /// Records `at` as the deadline the timer holds for this session if it
    /// is earlier than the one it holds (or that one has passed by `now`);
    /// true when the timer needs a new entry.
    pub(crate) fn arm(&self, at: u64, now: u64) -> bool {
        let armed = self.armed.load(Ordering::Relaxed);
        if armed > now && armed <= at {
            return false;
        }
        self.armed.store(at, Ordering::Relaxed);
        true
    }

    /// Whether `at` is the deadline the timer holds for this session (other
    /// entries are stale).
    pub(crate) fn is_armed(&self, at: u64) -> bool {
        self.armed.load(Ordering::Relaxed) == at
    }

    /// Queues frames for the client; a closed session takes nothing.
    pub(crate) fn send(&self, frames: impl IntoIterator<Item = Frame>) -> Result<(), Full> {
        if self.is_closed() {
            return Ok(());
        }
        self.outbox.push(frames)
    }
}

/// A session of `gateway` for the unit tests of the layers above.
#[cfg(test)]
pub(crate) fn test_session(
    gateway: sio_protocol::id::GatewayId,
    transport: Transport,
    first_ping: u64,
) -> Result<Session, sio_protocol::id::NoRandomness> {
    Ok(Session::new(
        Sid::random(gateway)?,
        transport,
        Outbox::new(8, 1024),
        (0, first_ping),
    ))
}

#[cfg(test)]
mod tests {
    use sio_protocol::id::GatewayId;

    use super::*;

    fn session(first_ping: u64) -> Result<Session, Box<dyn std::error::Error>> {
        Ok(test_session(
            GatewayId::random()?,
            Transport::Polling,
            first_ping,
        )?)
    }

    #[test]
    fn heartbeat_pings_at_the_interval_and_closes_at_the_timeout()
    -> Result<(), Box<dyn std::error::Error>> {
        let s = session(300)?;
        assert_eq!(s.heartbeat(299, 200), Heartbeat::Wait(300));
        assert_eq!(s.heartbeat(300, 200), Heartbeat::Ping(500));
        assert_eq!(s.heartbeat(400, 200), Heartbeat::Wait(500), "one ping");
        assert_eq!(s.heartbeat(499, 200), Heartbeat::Wait(500));
        assert_eq!(
            s.heartbeat(500, 200),
            Heartbeat::TimedOut,
            "exactly at the deadline"
        );
        Ok(())
    }

    #[test]
    fn a_pong_schedules_the_next_ping() -> Result<(), Box<dyn std::error::Error>> {
        let s = session(300)?;
        assert_eq!(s.heartbeat(300, 200), Heartbeat::Ping(500));
        assert_eq!(
            s.receive(Packet::Pong("".into()), 350, 300),
            Inbound::Nothing
        );
        assert_eq!(s.heartbeat(500, 200), Heartbeat::Wait(650));
        assert_eq!(s.heartbeat(650, 200), Heartbeat::Ping(850));
        Ok(())
    }

    #[test]
    fn packets_go_up_or_end_the_session() -> Result<(), Box<dyn std::error::Error>> {
        let s = session(300)?;
        assert_eq!(
            s.receive(Packet::Message("2[\"a\"]".into()), 0, 300),
            Inbound::Message("2[\"a\"]".into())
        );
        assert_eq!(
            s.receive(Packet::Binary(vec![1].into()), 0, 300),
            Inbound::Binary(Bytes::from_static(&[1]))
        );
        assert_eq!(
            s.receive(Packet::Close, 0, 300),
            Inbound::Close(Fault::ClientClose)
        );
        assert_eq!(
            s.receive(Packet::Ping("".into()), 0, 300),
            Inbound::Close(Fault::ClientPing)
        );
        assert_eq!(s.receive(Packet::Noop, 0, 300), Inbound::Nothing);
        Ok(())
    }

    #[test]
    fn an_upgrade_is_probed_once_and_finishes_once() -> Result<(), Box<dyn std::error::Error>> {
        let s = session(300)?;
        assert!(!s.begin_upgrade(false), "upgrades off");
        assert!(s.begin_upgrade(true));
        assert!(!s.begin_upgrade(true), "one probe at a time");
        s.abort_upgrade();
        assert!(s.begin_upgrade(true), "a failed probe may be retried");
        s.finish_upgrade();
        assert_eq!(s.state().transport, Transport::Websocket);
        assert!(
            !s.begin_upgrade(true),
            "a websocket session does not upgrade"
        );
        let closed = session(300)?;
        closed.close(Fault::ClientClose);
        assert!(!closed.begin_upgrade(true), "nor does a closed one");
        Ok(())
    }

    #[test]
    fn one_armed_deadline() -> Result<(), Box<dyn std::error::Error>> {
        let s = session(300)?;
        assert!(s.arm(300, 0), "the first deadline");
        assert!(!s.arm(400, 0), "a later one waits for the armed one");
        assert!(s.arm(200, 0), "an earlier one needs its own entry");
        assert!(s.is_armed(200) && !s.is_armed(300));
        assert!(s.arm(500, 200), "the armed one passed");
        Ok(())
    }

    #[test]
    fn closes_once_and_the_last_poll_frame_says_who_closed()
    -> Result<(), Box<dyn std::error::Error>> {
        let s = session(300)?;
        assert_eq!(s.last_poll_frame(), None);
        assert!(s.close(Fault::ClientClose));
        assert!(!s.close(Fault::PingTimeout), "only the first");
        assert_eq!(s.fault(), Some(Fault::ClientClose));
        assert_eq!(s.last_poll_frame(), Some(Frame::noop()));
        let t = session(300)?;
        t.close(Fault::PingTimeout);
        assert_eq!(t.last_poll_frame(), Some(Frame::close()));
        t.state().upgrade = Upgrade::Done;
        assert_eq!(
            t.last_poll_frame(),
            None,
            "a websocket sends no close packet"
        );
        Ok(())
    }
}
