//! One client's presence in one namespace: its id, its context (kept
//! encoded, see [`EncodedContext`]), the frames held back while its
//! connect is decided, its events on their way to the workers, and the
//! server emits waiting for its acks.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use sio_protocol::envelope::{
    self, AckReply, Delivery, DisconnectReason, EmitId, EncodedContext, EncodedHandshake,
    MovingRecovery, MovingSocket, SocketContext, SocketState,
};
use sio_protocol::id::{GatewayId, SocketId};
use sio_protocol::socketio::recovery::{Offset, Pid};
use sio_protocol::socketio::{Ack, Packet};
use tokio::sync::oneshot;

use crate::outbox::Frame;
use crate::queue::{Bounds, Job, Push, Queue};
use crate::recovery::{Keep, Log, Missed, Unrecoverable};
use crate::session::Session;

#[derive(Debug)]
pub(crate) struct Socket {
    pub(crate) id: SocketId,
    pub(crate) ns: String,
    pub(crate) session: Arc<Session>,
    /// Its private id, with connection state recovery on.
    pub(crate) pid: Option<Pid>,
    inner: Mutex<Inner>,
    /// Its events (and its disconnect) on their way to the workers.
    queue: Mutex<Queue>,
    next_ack: AtomicU64,
    /// Set once the socket has left: a join or a connect still in flight
    /// must not put it back into the registry or the room index.
    gone: AtomicBool,
    /// The gateway it was handed over to: what this one still sends it
    /// (acks of the events it was handling) goes there.
    moved_to: OnceLock<GatewayId>,
    /// Server emits with lower ack ids were sent by the gateway it was
    /// handed over by, which awaits their answers.
    first_ack: AtomicU64,
    /// Where the events of the gateway it was handed over by stand:
    /// [`PREVIOUS_NONE`], [`PREVIOUS_BUSY`] (its queue waits) or
    /// [`PREVIOUS_SETTLED`] (said so, maybe before the hand-over was done).
    previous: AtomicU8,
    /// Set while a hand-over to this gateway is being completed: commands
    /// for the socket wait for it, so they apply on top of its final state
    /// ([`crate::registry::Registry::arrival`]).
    arriving: AtomicBool,
}

const PREVIOUS_NONE: u8 = 0;
const PREVIOUS_BUSY: u8 = 1;
const PREVIOUS_SETTLED: u8 = 2;

#[derive(Debug)]
struct Inner {
    /// The context every envelope about this socket carries; the one copy
    /// of its auth, data and rooms.
    context: EncodedContext,
    /// Frames emitted while the workers decide on the connect, or while
    /// the socket is handed over to this gateway, with the emit each came
    /// from; sent right after the CONNECT reply (or the hand-over), never
    /// before it.
    pending: Option<Vec<(Option<EmitId>, Frame)>>,
    /// While the socket is handed over to another gateway: the emits
    /// queued for it since (that gateway drops its own copies of these).
    leaving: Option<Vec<EmitId>>,
    /// Server emits waiting for the client's ack, by ack id.
    acks: HashMap<u64, oneshot::Sender<AckReply>>,
    /// With connection state recovery: what it was sent that its client
    /// may get again.
    log: Option<Log>,
    /// Its transport was lost, for this reason; it waits for its client.
    parked: Option<DisconnectReason>,
    /// Its client came back: the socket that took its place has its log.
    replaced: bool,
}

/// Where frames for a socket went.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Hold {
    /// The socket is live: queued to its client.
    Sent,
    /// Its client's queue is full: it must be cut.
    Full,
    /// Held until the CONNECT reply.
    Held,
    /// Dropped: too many held.
    Overflow,
    /// Kept (if the client may get it again) until its client is back.
    Parked,
    /// Another socket took its place: deliver to that one.
    Replaced,
}

impl Socket {
    /// A socket whose `auth` is the CONNECT packet's; `pending` until its
    /// CONNECT reply is sent.
    pub(crate) fn new(
        id: SocketId,
        ns: String,
        session: Arc<Session>,
        handshake: EncodedHandshake,
        auth: Option<String>,
        pending: bool,
    ) -> Result<Self, envelope::Error> {
        let state = SocketState {
            auth,
            ..SocketState::default()
        };
        let context = EncodedContext::new(id, &ns, handshake, &state)?;
        Ok(Self {
            id,
            ns,
            session,
            pid: None,
            inner: Mutex::new(Inner {
                context,
                pending: pending.then(Vec::new),
                leaving: None,
                acks: HashMap::new(),
                log: None,
                parked: None,
                replaced: false,
            }),
            queue: Mutex::default(),
            next_ack: AtomicU64::new(0),
            gone: AtomicBool::new(false),
            moved_to: OnceLock::new(),
            first_ack: AtomicU64::new(0),
            previous: AtomicU8::new(PREVIOUS_NONE),
            arriving: AtomicBool::new(false),
        })
    }

    /// With connection state recovery: the socket keeps what it is sent
    /// in `log` and is known to its client by `pid`.
    pub(crate) fn recoverable(mut self, pid: Pid, log: Log) -> Self {
        self.pid = Some(pid);
        self.inner.get_mut().unwrap_or_else(|e| e.into_inner()).log = Some(log);
        self
    }

    /// A socket in `session` taking the place of `parked`, whose client
    /// came back: its id, pid, namespace, rooms and data, with the auth the
    /// client sent now. Pending until its CONNECT reply; its log holds
    /// only what it is sent itself until [`Socket::adopt`].
    pub(crate) fn restore(
        parked: &Socket,
        session: Arc<Session>,
        handshake: EncodedHandshake,
        auth: Option<String>,
        log: Log,
    ) -> Result<Self, envelope::Error> {
        let socket = Self::new(
            parked.id,
            parked.ns.clone(),
            session,
            handshake,
            auth.clone(),
            true,
        )?;
        let state = parked.inner().context.state()?;
        // The rooms too: the index has them already, under the same id.
        socket.recovered(state.data);
        socket.change(|s| s.rooms = state.rooms);
        Ok(match parked.pid {
            Some(pid) => socket.recoverable(pid, log),
            None => socket,
        })
    }

    /// Lets `replacement` take this parked socket's place (`swap` puts it
    /// in the registry) if its client, whose last packet was `offset`,
    /// can be given what it missed: returns that, and the log that goes
    /// on with the replacement. Done under this socket's lock, so that
    /// every delivery to it comes before (and is in the log) or after
    /// (and goes to the replacement).
    pub(crate) fn replace(
        &self,
        offset: Option<Offset>,
        swap: impl FnOnce(),
    ) -> Result<Missed, Unrecoverable> {
        let mut inner = self.inner();
        let log = inner.log.take().ok_or(Unrecoverable::Broken)?;
        match log.after(offset) {
            Ok(found) => {
                inner.replaced = true;
                swap();
                Ok(found)
            }
            Err((why, log)) => {
                inner.log = Some(log);
                Err(why)
            }
        }
    }

    /// The emits its log keeps.
    pub(crate) fn kept(&self) -> Vec<EmitId> {
        self.inner().log.as_ref().map(Log::ids).unwrap_or_default()
    }

    /// Puts `older` (the log of the socket this one replaced) before what
    /// this one kept since.
    pub(crate) fn adopt(&self, mut older: Log) {
        let mut inner = self.inner();
        if let Some(newer) = inner.log.take() {
            older.append(newer);
        }
        inner.log = Some(older);
    }

    /// Its transport was lost: it waits for its client, keeping what it
    /// is sent. False if it cannot be recovered (no log).
    pub(crate) fn park(&self, reason: DisconnectReason) -> bool {
        let mut inner = self.inner();
        if inner.log.is_none() {
            return false;
        }
        inner.parked = Some(reason);
        true
    }

    /// Takes the data of the socket it recovers, marked recovered (its
    /// rooms come by a join, which indexes them; the auth stays its own).
    pub(crate) fn recovered(&self, data: Option<String>) {
        self.change(|s| {
            s.data = data;
            s.recovered = true;
        });
    }

    /// The auth its client sent with its CONNECT.
    pub(crate) fn auth(&self) -> Option<String> {
        self.inner().context.state().ok()?.auth
    }

    /// Whether it took the place of a socket whose client came back.
    pub(crate) fn is_recovered(&self) -> bool {
        self.inner()
            .context
            .state()
            .is_ok_and(|state| state.recovered)
    }

    /// Why its transport was lost, while it waits for its client.
    pub(crate) fn parked(&self) -> Option<DisconnectReason> {
        self.inner().parked
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What handlers learn about this socket, decoded (`fetchSockets`).
    pub(crate) fn context(&self) -> Result<SocketContext, envelope::Error> {
        self.inner().context.decode()
    }

    /// The envelope of events from this socket, handed over together.
    pub(crate) fn events(
        &self,
        events: &[sio_protocol::socketio::Event<'_>],
        delivery: Delivery,
    ) -> Result<Vec<u8>, envelope::Error> {
        let events: Vec<envelope::Event<'_>> = events
            .iter()
            .map(|e| envelope::Event {
                event: e.name().into(),
                data: e.data().into(),
                attachments: e.attachments.clone().unwrap_or_default(),
                ack: e.id.is_some(),
            })
            .collect();
        self.inner().context.events(&events, delivery)
    }

    /// Adds the events waiting behind `batch` that go with it (see
    /// [`Queue::take_like`]).
    pub(crate) fn take_like(
        &self,
        batch: &mut Vec<sio_protocol::socketio::Event<'static>>,
        bounds: Bounds,
    ) {
        self.queue().take_like(batch, bounds);
    }

    /// Queues a job for the workers (see [`Queue::push`]).
    pub(crate) fn push(&self, job: Job, bounds: Bounds) -> Push {
        self.queue().push(job, bounds)
    }

    /// The job after the one just handled, if any.
    pub(crate) fn next_job(&self) -> Option<Job> {
        self.queue().next()
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn connect_request(&self) -> Result<Vec<u8>, envelope::Error> {
        self.inner().context.connect_request()
    }

    pub(crate) fn disconnect(&self, reason: DisconnectReason) -> Result<Vec<u8>, envelope::Error> {
        self.inner().context.disconnect(reason)
    }

    /// Changes the socket's own state and re-encodes it; returns what the
    /// change returned.
    fn change<R>(&self, change: impl FnOnce(&mut SocketState) -> R) -> R {
        let mut inner = self.inner();
        let mut state = inner.context.state().unwrap_or_default();
        let result = change(&mut state);
        if let Err(error) = inner.context.set_state(&state) {
            tracing::error!(%error, socket = %self.id, "cannot encode the socket context");
        }
        result
    }

    /// The socket left for good; true the first time.
    pub(crate) fn leave(&self) -> bool {
        !self.gone.swap(true, Ordering::AcqRel)
    }

    pub(crate) fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    pub(crate) fn set_data(&self, data: Option<String>) {
        self.change(|state| state.data = data);
    }

    /// Records room membership (the rooms kept sorted); returns the rooms
    /// that were new.
    pub(crate) fn add_rooms<'r>(&self, rooms: impl IntoIterator<Item = &'r String>) -> Vec<String> {
        self.change(|state| {
            rooms
                .into_iter()
                .filter(|r| match state.rooms.binary_search(r) {
                    Ok(_) => false,
                    Err(at) => {
                        state.rooms.insert(at, (*r).clone());
                        true
                    }
                })
                .cloned()
                .collect()
        })
    }

    /// Forgets room membership; returns the rooms it was in.
    pub(crate) fn remove_rooms<'r>(
        &self,
        rooms: impl IntoIterator<Item = &'r String>,
    ) -> Vec<String> {
        self.change(|state| {
            rooms
                .into_iter()
                .filter(|r| match state.rooms.binary_search(r) {
                    Ok(at) => {
                        state.rooms.remove(at);
                        true
                    }
                    Err(_) => false,
                })
                .cloned()
                .collect()
        })
    }

    pub(crate) fn rooms(&self) -> Vec<String> {
        self.inner()
            .context
            .state()
            .map(|s| s.rooms)
            .unwrap_or_default()
    }

    /// Queues `frames` (of `emit`, if they are an emit's) to the client,
    /// or holds them back while the connect or a hand-over to this gateway
    /// is pending (at most `limit`); notes the emit while the socket
    /// leaves for another; keeps what `keep` says for a recovery. Queued
    /// under the socket's lock, so that its log is in the order sent.
    pub(crate) fn hold(
        &self,
        emit: Option<EmitId>,
        keep: Keep<'_>,
        frames: &[Frame],
        limit: usize,
    ) -> Hold {
        let mut inner = self.inner();
        if inner.replaced {
            return Hold::Replaced;
        }
        if let (Some(id), Some(noted)) = (emit, inner.leaving.as_mut()) {
            noted.push(id);
        }
        if let Some(log) = inner.log.as_mut() {
            log.push(keep);
        }
        if inner.parked.is_some() {
            return Hold::Parked;
        }
        let Some(held) = inner.pending.as_mut() else {
            return match self.session.send(frames.iter().cloned()) {
                Ok(()) => Hold::Sent,
                Err(_) => Hold::Full,
            };
        };
        if held.len() + frames.len() > limit {
            return Hold::Overflow;
        }
        held.extend(frames.iter().map(|f| (emit, f.clone())));
        Hold::Held
    }

    /// The socket is live from now on; returns what was held back, but
    /// for the emits its previous gateway `delivered`.
    pub(crate) fn release(&self, delivered: &HashSet<EmitId>) -> Vec<Frame> {
        let held = self.inner().pending.take().unwrap_or_default();
        Self::unheld(held, delivered).collect()
    }

    fn unheld(
        held: Vec<(Option<EmitId>, Frame)>,
        delivered: &HashSet<EmitId>,
    ) -> impl Iterator<Item = Frame> + '_ {
        held.into_iter()
            .filter(|(emit, _)| !emit.is_some_and(|id| delivered.contains(&id)))
            .map(|(_, frame)| frame)
    }

    /// [`Socket::release`], queued to its client behind `first` (its
    /// CONNECT reply, what it missed) under the lock deliveries take: no
    /// packet reaches the client before them.
    pub(crate) fn go_live(
        &self,
        first: Vec<Frame>,
        delivered: &HashSet<EmitId>,
    ) -> Result<(), crate::outbox::Full> {
        let mut inner = self.inner();
        let held = inner.pending.take().unwrap_or_default();
        self.session
            .send(first.into_iter().chain(Self::unheld(held, delivered)))
    }

    /// The socket is being handed over: emits are noted from now on.
    pub(crate) fn start_leaving(&self) {
        self.inner().leaving = Some(Vec::new());
    }

    /// The emits noted since [`Socket::start_leaving`].
    pub(crate) fn take_noted(&self) -> Vec<EmitId> {
        self.inner().leaving.take().unwrap_or_default()
    }

    /// The socket as a hand-over carries it.
    pub(crate) fn moving(&self) -> Option<MovingSocket> {
        let state = self.inner().context.state().ok()?;
        Some(MovingSocket {
            id: self.id,
            ns: self.ns.clone(),
            state,
            next_ack: self.next_ack.load(Ordering::Relaxed),
            busy: !self.is_idle(),
            recovery: self.moving_recovery(),
        })
    }

    /// Its pid and where its log stands, if it is recoverable.
    pub(crate) fn moving_recovery(&self) -> Option<MovingRecovery> {
        let pid = self.pid?;
        let last = self.inner().log.as_ref()?.last()?;
        Some(MovingRecovery { pid, last })
    }

    /// Handed over here: its log goes on from where its first gateway
    /// left it (`recovery`), without what that gateway `delivered`; not
    /// recoverable if it was not there.
    pub(crate) fn resume(&self, recovery: Option<&MovingRecovery>, delivered: &HashSet<EmitId>) {
        let mut inner = self.inner();
        match (recovery, inner.log.as_mut()) {
            (Some(recovery), Some(log)) => log.resume(recovery.last, delivered),
            _ => inner.log = None,
        }
    }

    /// It lives on `to` from now on.
    pub(crate) fn moved(&self, to: GatewayId) {
        let _ = self.moved_to.set(to);
    }

    pub(crate) fn moved_to(&self) -> Option<GatewayId> {
        self.moved_to.get().copied()
    }

    /// Takes over what its previous gateway had: the ack ids it used and,
    /// if it was still handling events, a queue that waits for it. True
    /// when the caller must go on with the queue itself (the previous
    /// gateway said it was done before this was known).
    pub(crate) fn arrive(&self, moved: &MovingSocket) -> bool {
        self.next_ack.store(moved.next_ack, Ordering::Relaxed);
        self.first_ack.store(moved.next_ack, Ordering::Relaxed);
        if !moved.busy {
            return false;
        }
        self.queue().hold();
        let busy = self.previous.compare_exchange(
            PREVIOUS_NONE,
            PREVIOUS_BUSY,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        busy.is_err()
    }

    /// The previous gateway finished its events (or is given up on): true
    /// when its queue here waited, and the caller goes on with it.
    pub(crate) fn settle(&self) -> bool {
        self.previous.swap(PREVIOUS_SETTLED, Ordering::AcqRel) == PREVIOUS_BUSY
    }

    /// Marks the socket as being handed over to this gateway, or done;
    /// returns what it was.
    pub(crate) fn set_arriving(&self, arriving: bool) -> bool {
        self.arriving.swap(arriving, Ordering::AcqRel)
    }

    pub(crate) fn is_arriving(&self) -> bool {
        self.arriving.load(Ordering::Acquire)
    }

    /// Whether nothing of it waits for the workers.
    pub(crate) fn is_idle(&self) -> bool {
        self.queue().is_idle()
    }

    /// Registers a server emit that waits for the client's ack.
    pub(crate) fn expect_ack(&self) -> (u64, oneshot::Receiver<AckReply>) {
        let id = self.next_ack.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.inner().acks.insert(id, tx);
        (id, rx)
    }

    pub(crate) fn forget_ack(&self, id: u64) {
        self.inner().acks.remove(&id);
    }

    /// The socket left: whoever waits for one of its acks hears it now,
    /// not at the end of the worker's timeout (holding the socket until
    /// then).
    pub(crate) fn forget_acks(&self) {
        self.inner().acks.clear();
    }

    /// The client's answer to a server emit; returned when the emit was
    /// the previous gateway's, which awaits it.
    pub(crate) fn resolve_ack(&self, ack: Ack<'_>) -> Option<(u64, AckReply)> {
        let reply = AckReply {
            data: ack.data.into_owned(),
            attachments: ack.attachments.unwrap_or_default(),
        };
        self.answer(ack.id, reply)
    }

    /// [`Socket::resolve_ack`] for an answer already decoded.
    pub(crate) fn answer(&self, id: u64, reply: AckReply) -> Option<(u64, AckReply)> {
        match self.inner().acks.remove(&id) {
            Some(tx) => {
                let _ = tx.send(reply);
                None
            }
            None => (id < self.first_ack.load(Ordering::Relaxed)).then_some((id, reply)),
        }
    }
}

/// The frames of a Socket.IO packet: its text as an Engine.IO message,
/// then its attachments as binary messages.
pub(crate) fn frames(packet: &Packet<'_>) -> Vec<Frame> {
    let attachments = packet.attachments();
    let mut frames = Vec::with_capacity(1 + attachments.len());
    frames.push(Frame::message_with(64, |out| packet.encode(out)));
    frames.extend(attachments.iter().cloned().map(Frame::Binary));
    frames
}

#[cfg(test)]
pub(crate) mod tests {
    use sio_protocol::id::GatewayId;

    use super::*;
    use crate::config::Transport;

    pub(crate) fn socket(pending: bool) -> Result<Socket, Box<dyn std::error::Error>> {
        let gateway = GatewayId::random()?;
        let session = crate::session::test_session(gateway, Transport::Websocket, 0)?;
        Ok(Socket::new(
            SocketId::random(gateway)?,
            "/".into(),
            Arc::new(session),
            EncodedHandshake::new(&Default::default())?,
            Some("{\"token\":1}".into()),
            pending,
        )?)
    }

    #[test]
    fn rooms_are_a_sorted_set_in_the_context() -> Result<(), Box<dyn std::error::Error>> {
        let socket = socket(false)?;
        let names = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            socket.add_rooms(&names(&["b", "a", "b"])),
            names(&["b", "a"])
        );
        assert_eq!(
            socket.add_rooms(&names(&["c", "a"])),
            names(&["c"]),
            "only the new ones"
        );
        assert_eq!(socket.rooms(), names(&["a", "b", "c"]));
        assert_eq!(socket.remove_rooms(&names(&["b", "x", "b"])), names(&["b"]));
        socket.set_data(Some("{\"n\":1}".into()));
        let context = socket.context()?;
        assert_eq!(context.rooms, names(&["a", "c"]));
        assert_eq!(context.data.as_deref(), Some("{\"n\":1}"));
        assert_eq!(context.handshake.auth.as_deref(), Some("{\"token\":1}"));
        Ok(())
    }

    #[test]
    fn frames_wait_for_the_connect_reply() -> Result<(), Box<dyn std::error::Error>> {
        let socket = socket(true)?;
        let frame = Frame::Text("42[\"x\"]".into());
        assert_eq!(
            socket.hold(None, Keep::Not, std::slice::from_ref(&frame), 2),
            Hold::Held
        );
        assert_eq!(
            socket.hold(None, Keep::Not, &[frame.clone(), frame.clone()], 2),
            Hold::Overflow
        );
        assert_eq!(
            socket.release(&HashSet::new()),
            std::slice::from_ref(&frame)
        );
        assert_eq!(socket.hold(None, Keep::Not, &[frame], 2), Hold::Sent);
        Ok(())
    }

    #[test]
    fn a_hand_over_drops_what_the_previous_gateway_delivered()
    -> Result<(), Box<dyn std::error::Error>> {
        // The previous gateway notes the emits it queued while leaving.
        let leaving = socket(false)?;
        leaving.start_leaving();
        let frame = |t: &str| Frame::Text(t.to_owned().into());
        let hold = |emit, text| leaving.hold(emit, Keep::Not, &[frame(text)], 8);
        assert_eq!(hold(Some(EmitId(1)), "a"), Hold::Sent);
        assert_eq!(hold(None, "direct"), Hold::Sent);
        assert_eq!(hold(Some(EmitId(2)), "b"), Hold::Sent);
        assert_eq!(leaving.take_noted(), [EmitId(1), EmitId(2)]);
        // The new one held its copies of 2 and 3, 3 with an attachment.
        let arriving = socket(true)?;
        arriving.hold(Some(EmitId(2)), Keep::Not, &[frame("b")], 8);
        let c = [frame("c"), Frame::Binary("x".into())];
        arriving.hold(Some(EmitId(3)), Keep::Not, &c, 8);
        let delivered = HashSet::from([EmitId(1), EmitId(2)]);
        assert_eq!(
            arriving.release(&delivered),
            [frame("c"), Frame::Binary("x".into())]
        );
        Ok(())
    }
}
