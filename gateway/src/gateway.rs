//! The gateway's shared state and its side of the bus: sessions, sockets,
//! the room index, emits in, commands in, presence out.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use sio_bus::Bus;
use sio_protocol::envelope::{
    self, Command, CommandReply, ControlReply, ControlRequest, ControlResult, DisconnectReason,
    Emit, EmitId, EncodedPacket, Heartbeat, Selector,
};
use sio_protocol::id::{GatewayId, Sid, SocketId};
use sio_protocol::socketio::{Event, Kind, Packet};
use sio_protocol::subject::Subjects;
use tokio::sync::watch;

use crate::config::{Config, ms};
use crate::metrics::Metrics;
use crate::outbox::Frame;
use crate::rooms::{Interest, RoomIndex, Target};
use crate::session::{self, Session};
use crate::socket::Socket;

/// Emit ids remembered to drop the copies of an emit sent to several rooms.
const RECENT_EMITS: usize = 4096;

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) id: GatewayId,
    pub(crate) subjects: Subjects,
    pub(crate) bus: Arc<dyn Bus>,
    pub(crate) metrics: Metrics,
    pub(crate) draining: AtomicBool,
    epoch: tokio::time::Instant,
    sessions: Mutex<HashMap<Sid, Arc<Session>>>,
    sockets: Mutex<HashMap<SocketId, Arc<Socket>>>,
    rooms: Mutex<RoomIndex>,
    recent: Mutex<Recent>,
}

#[derive(Debug, Default)]
struct Recent {
    ids: HashSet<EmitId>,
    order: VecDeque<EmitId>,
}

impl Recent {
    /// True the first time an id is seen.
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn new(
        config: Config,
        bus: Arc<dyn Bus>,
        id: GatewayId,
        subjects: Subjects,
    ) -> Self {
        Self {
            config,
            id,
            subjects,
            bus,
            metrics: Metrics::default(),
            draining: AtomicBool::new(false),
            epoch: tokio::time::Instant::now(),
            sessions: Mutex::default(),
            sockets: Mutex::default(),
            rooms: Mutex::default(),
            recent: Mutex::default(),
        }
    }

    pub(crate) fn sockets_lock(&self) -> MutexGuard<'_, HashMap<SocketId, Arc<Socket>>> {
        lock(&self.sockets)
    }

    pub(crate) fn session(&self, sid: &Sid) -> Option<Arc<Session>> {
        lock(&self.sessions).get(sid).cloned()
    }

    pub(crate) fn session_count(&self) -> usize {
        lock(&self.sessions).len()
    }

    pub(crate) fn add_session(&self, session: Arc<Session>, transport: &'static str) {
        lock(&self.sessions).insert(session.sid, session);
        self.metrics.sessions.inc();
        self.metrics.connection(transport, 1);
    }

    /// Milliseconds on the gateway's clock (since it started).
    pub(crate) fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// When a session opened now should get its first ping.
    pub(crate) fn first_ping(&self) -> u64 {
        self.now().saturating_add(self.config.ping_interval)
    }

    /// A pong arrived: the next ping is one interval from now.
    pub(crate) fn ponged(&self, session: &Session) {
        session.ponged(self.now().saturating_add(self.config.ping_interval));
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Ends a session: its sockets leave, workers hear why, and whoever
    /// serves its transport sends what is queued and closes.
    pub(crate) fn close_session(self: &Arc<Self>, session: &Session, reason: DisconnectReason) {
        if !session.close() {
            return;
        }
        if lock(&self.sessions).remove(&session.sid).is_some() {
            self.metrics.sessions.dec();
            let transport = session.state().transport.as_str();
            self.metrics.connection(transport, -1);
        }
        let sockets: Vec<_> = session.state().sockets.values().cloned().collect();
        for socket in sockets {
            self.remove_socket(&socket, reason);
        }
        tracing::debug!(sid = %session.sid, reason = reason.as_str(), "session closed");
    }

    /// Puts a socket in the index (and in `rooms`); resolves once the bus
    /// has the subscriptions this created.
    pub(crate) fn index_add(
        self: &Arc<Self>,
        socket: &Socket,
        rooms: &[String],
    ) -> impl Future<Output = ()> + use<> {
        let added = socket.add_rooms(rooms);
        let ready = {
            let subscribe = |t: Target<'_>| self.interest(t);
            lock(&self.rooms).add(&socket.ns, socket.id, &added, &subscribe)
        };
        wait_ready(ready)
    }

    pub(crate) fn index_remove(&self, socket: &Socket) {
        let rooms = socket.rooms();
        socket.remove_rooms(&rooms);
        lock(&self.rooms).remove(&socket.ns, socket.id, &rooms);
    }

    fn leave(&self, socket: &Socket, rooms: &[String]) {
        let removed = socket.remove_rooms(rooms);
        lock(&self.rooms).leave(&socket.ns, socket.id, &removed);
    }

    /// Subscribes to a room or namespace subject for as long as the
    /// returned interest lives.
    fn interest(self: &Arc<Self>, target: Target<'_>) -> Interest {
        let subject = match target {
            Target::Namespace(ns) => self.subjects.namespace(ns),
            Target::Room(ns, room) => self.subjects.room(ns, room),
        };
        let (ready_tx, ready_rx) = watch::channel(false);
        let weak = Arc::downgrade(self);
        let bus = self.bus.clone();
        let task = tokio::spawn(async move {
            let mut sub = match bus.subscribe(subject.clone()).await {
                Ok(sub) => sub,
                Err(error) => {
                    tracing::error!(%subject, %error, "cannot subscribe");
                    return;
                }
            };
            let _ = bus.flush().await;
            let _ = ready_tx.send(true);
            while let Some(message) = sub.next().await {
                let Some(shared) = weak.upgrade() else { return };
                shared.on_emit(&message.payload);
            }
        });
        Interest::new(task.abort_handle(), ready_rx)
    }

    /// Delivers an emit from the bus to its local recipients, framing the
    /// packet once for all of them.
    fn on_emit(self: &Arc<Self>, payload: &[u8]) {
        self.metrics.emits_received.inc();
        match envelope::decode_owned(payload) {
            Ok(emit) => self.deliver_emit(emit),
            Err(error) => {
                tracing::error!(%error, "bad emit envelope");
                self.metrics.drop("bad_envelope");
            }
        }
    }

    fn deliver_emit(self: &Arc<Self>, emit: Emit) {
        if emit.rooms.len() > 1 && !lock(&self.recent).first(emit.id) {
            return;
        }
        let Some(frames) = packet_frames(&emit.packet) else {
            self.metrics.drop("bad_envelope");
            return;
        };
        let targets = lock(&self.rooms).targets(&emit.ns, &emit.rooms, &emit.except);
        let recipients: Vec<Arc<Socket>> = {
            let sockets = self.sockets_lock();
            targets
                .iter()
                .filter_map(|id| sockets.get(id).cloned())
                .collect()
        };
        for socket in recipients {
            self.deliver(&socket, &frames, emit.volatile);
        }
    }

    /// Queues an emit's frames for one socket. A volatile emit is dropped
    /// for a client that still has packets waiting.
    fn deliver(self: &Arc<Self>, socket: &Socket, frames: &[Frame], volatile: bool) {
        if volatile && !socket.session.outbox.is_empty() {
            self.metrics.drop("volatile");
            return;
        }
        self.send_to(socket, frames);
        self.metrics.emits_delivered.inc();
    }

    fn socket(&self, id: &SocketId) -> Option<Arc<Socket>> {
        self.sockets_lock().get(id).cloned()
    }

    /// Serves one command sent to this gateway.
    async fn on_command(self: &Arc<Self>, command: Command) -> CommandReply {
        let command = match command {
            Command::Broadcast(emit) => {
                self.deliver_emit(emit);
                return CommandReply::Done;
            }
            other => other,
        };
        let socket_id = match &command {
            Command::Emit { socket, .. }
            | Command::EmitWithAck { socket, .. }
            | Command::Join { socket, .. }
            | Command::Leave { socket, .. }
            | Command::Disconnect { socket, .. }
            | Command::SetData { socket, .. } => *socket,
            // Forwarded polling requests need session hand-over, which
            // this gateway does not offer yet.
            Command::Poll(_) => return CommandReply::UnknownSocket,
            Command::Broadcast(_) => return CommandReply::Done,
        };
        let Some(socket) = self.socket(&socket_id) else {
            return CommandReply::UnknownSocket;
        };
        match command {
            Command::Emit {
                volatile, packet, ..
            } => match packet_frames(&packet) {
                Some(frames) => self.deliver(&socket, &frames, volatile),
                None => self.metrics.drop("bad_envelope"),
            },
            Command::EmitWithAck {
                data,
                attachments,
                timeout_ms,
                ..
            } => {
                let (id, answer) = socket.expect_ack();
                let event = Event::from_data(
                    data.into(),
                    (!attachments.is_empty()).then_some(attachments),
                );
                let Ok(event) = event else {
                    socket.forget_ack(id);
                    self.metrics.drop("bad_envelope");
                    return CommandReply::Done;
                };
                let packet = Packet::new(socket.ns.clone(), Kind::Event(event.with_id(id)));
                self.send_to(&socket, &crate::socket::frames(&packet));
                return match tokio::time::timeout(ms(timeout_ms), answer).await {
                    Ok(Ok(reply)) => CommandReply::Ack(reply),
                    _ => {
                        socket.forget_ack(id);
                        CommandReply::AckTimeout
                    }
                };
            }
            Command::Join { rooms, .. } => self.index_add(&socket, &rooms).await,
            Command::Leave { rooms, .. } => self.leave(&socket, &rooms),
            Command::Disconnect { close, .. } => self.disconnect(&socket, close),
            Command::SetData { data, .. } => socket.set_data(data),
            Command::Poll(_) | Command::Broadcast(_) => {}
        }
        CommandReply::Done
    }

    /// Closes every session so clients reconnect elsewhere, and waits (up
    /// to the drain timeout) until their transports have sent the close.
    pub(crate) async fn drain(self: &Arc<Self>) {
        self.draining.store(true, Ordering::Relaxed);
        let sessions: Vec<_> = lock(&self.sessions).values().cloned().collect();
        for session in &sessions {
            self.close_session(session, DisconnectReason::ServerShuttingDown);
        }
        let deadline = tokio::time::Instant::now() + ms(self.config.drain_timeout);
        // A transport holds the session's reader until it has sent the close.
        while tokio::time::Instant::now() < deadline
            && sessions.iter().any(|s| s.outbox.try_reader().is_none())
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The Engine.IO frames of an already-encoded Socket.IO packet.
pub(crate) fn packet_frames(packet: &EncodedPacket) -> Option<Vec<Frame>> {
    let mut text = BytesMut::with_capacity(packet.text.len() + 1);
    text.put_u8(b'4');
    text.put_slice(&packet.text);
    let text = axum::extract::ws::Utf8Bytes::try_from(text.freeze()).ok()?;
    let mut frames = Vec::with_capacity(1 + packet.attachments.len());
    frames.push(Frame::Text(text));
    frames.extend(packet.attachments.iter().cloned().map(Frame::Binary));
    Some(frames)
}

async fn wait_ready(ready: Vec<watch::Receiver<bool>>) {
    for mut r in ready {
        let _ = tokio::time::timeout(Duration::from_secs(5), r.wait_for(|ok| *ok)).await;
    }
}

/// One sweep over all sessions drives every heartbeat: a ping every
/// pingInterval after the last pong, a close after pingTimeout without
/// pong, and a close for sessions that joined no namespace within
/// connectTimeout. No timer task per session.
pub(crate) async fn heartbeats(shared: Weak<Shared>) {
    let Some(tick) = shared.upgrade().map(|s| {
        let c = &s.config;
        ms((c.ping_interval.min(c.ping_timeout) / 10).clamp(10, 1000))
    }) else {
        return;
    };
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        shared.sweep();
    }
}

impl Shared {
    fn sweep(self: &Arc<Self>) {
        let now = self.now();
        let sessions: Vec<Arc<Session>> = lock(&self.sessions).values().cloned().collect();
        for session in sessions {
            let joined = session.state().joined;
            if !joined && now >= session.opened.saturating_add(self.config.connect_timeout) {
                self.close_session(&session, DisconnectReason::TransportClose);
                continue;
            }
            match session.heartbeat(now, self.config.ping_timeout) {
                session::Heartbeat::Wait => {}
                session::Heartbeat::Ping => {
                    if session.send([Frame::text("2")]).is_err() {
                        self.metrics.drop("slow_consumer");
                        self.close_session(&session, DisconnectReason::TransportError);
                    }
                }
                session::Heartbeat::TimedOut => {
                    self.close_session(&session, DisconnectReason::PingTimeout)
                }
            }
        }
    }
}

/// Serves `P.gw.<id>` until the bus goes away.
pub(crate) async fn serve_commands(shared: Weak<Shared>, mut sub: sio_bus::Subscription) {
    while let Some(message) = sub.next().await {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let command = match envelope::decode_owned::<Command>(&message.payload) {
            Ok(command) => command,
            Err(error) => {
                tracing::error!(%error, "bad command envelope");
                shared.metrics.drop("bad_envelope");
                continue;
            }
        };
        // Emits are served in order; anything that waits runs on its own.
        let waits = matches!(command, Command::EmitWithAck { .. } | Command::Join { .. });
        let serve = async move {
            let reply = shared.on_command(command).await;
            if let (Some(to), Ok(bytes)) = (message.reply, envelope::encode(&reply)) {
                shared.publish(to, bytes.into()).await;
            }
        };
        if waits {
            tokio::spawn(serve);
        } else {
            serve.await;
        }
    }
}

/// Serves `P.ctl`: cluster operations every gateway answers for its own
/// sockets.
pub(crate) async fn serve_control(shared: Weak<Shared>, mut sub: sio_bus::Subscription) {
    while let Some(message) = sub.next().await {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let Some(reply) = message.reply else { continue };
        let request = match envelope::decode_owned::<ControlRequest>(&message.payload) {
            Ok(request) => request,
            Err(error) => {
                tracing::error!(%error, "bad control envelope");
                shared.metrics.drop("bad_envelope");
                continue;
            }
        };
        tokio::spawn(async move {
            let body = shared.on_control(request).await;
            let answer = ControlReply {
                gateway: shared.id,
                body,
            };
            if let Ok(bytes) = envelope::encode(&answer) {
                shared.publish(reply, bytes.into()).await;
            }
        });
    }
}

impl Shared {
    /// This gateway's presence, as announced on `P.hb`.
    fn heartbeat(&self, address: &str) -> Heartbeat {
        Heartbeat {
            gateway: self.id,
            address: address.to_owned(),
            sockets: u64::try_from(self.sockets_lock().len()).unwrap_or(u64::MAX),
            version: env!("CARGO_PKG_VERSION").into(),
            interval_ms: self.config.heartbeat_interval,
            ready: !self.is_draining(),
        }
    }

    /// The local sockets a selector picks.
    fn select(&self, selector: &Selector) -> Vec<Arc<Socket>> {
        let ids = lock(&self.rooms).targets(&selector.ns, &selector.rooms, &selector.except);
        let sockets = self.sockets_lock();
        ids.iter()
            .filter_map(|id| sockets.get(id).cloned())
            .collect()
    }

    async fn on_control(self: &Arc<Self>, request: ControlRequest) -> ControlResult {
        let done = |n: usize| ControlResult::Done {
            sockets: u64::try_from(n).unwrap_or(u64::MAX),
        };
        match request {
            ControlRequest::Presence => {
                ControlResult::Presence(self.heartbeat(&self.config.listen.to_string()))
            }
            ControlRequest::FetchSockets(selector) => {
                ControlResult::Sockets(self.select(&selector).iter().map(|s| s.context()).collect())
            }
            ControlRequest::SocketsJoin { selector, rooms } => {
                let sockets = self.select(&selector);
                for socket in &sockets {
                    self.index_add(socket, &rooms).await;
                }
                done(sockets.len())
            }
            ControlRequest::SocketsLeave { selector, rooms } => {
                let sockets = self.select(&selector);
                for socket in &sockets {
                    self.leave(socket, &rooms);
                }
                done(sockets.len())
            }
            ControlRequest::DisconnectSockets { selector, close } => {
                let sockets = self.select(&selector);
                for socket in &sockets {
                    self.disconnect(socket, close);
                }
                done(sockets.len())
            }
            ControlRequest::BroadcastWithAck {
                selector,
                data,
                attachments,
                timeout_ms,
            } => {
                let sockets = self.select(&selector);
                let expected = u64::try_from(sockets.len()).unwrap_or(u64::MAX);
                let mut answers = Vec::with_capacity(sockets.len());
                for socket in &sockets {
                    answers.push(self.emit_with_ack(socket, &data, &attachments));
                }
                let deadline = tokio::time::Instant::now() + ms(timeout_ms);
                let mut acks = Vec::new();
                for (socket, answer) in sockets.iter().zip(answers) {
                    let Some((id, answer)) = answer else { continue };
                    match tokio::time::timeout_at(deadline, answer).await {
                        Ok(Ok(reply)) => acks.push(reply),
                        _ => socket.forget_ack(id),
                    }
                }
                ControlResult::Acks { acks, expected }
            }
        }
    }

    /// Sends an event that asks for an ack; `None` if the data is invalid.
    fn emit_with_ack(
        self: &Arc<Self>,
        socket: &Arc<Socket>,
        data: &str,
        attachments: &[bytes::Bytes],
    ) -> Option<(u64, tokio::sync::oneshot::Receiver<envelope::AckReply>)> {
        let binary = (!attachments.is_empty()).then(|| attachments.to_vec());
        let Ok(event) = Event::from_data(data.to_owned().into(), binary) else {
            self.metrics.drop("bad_envelope");
            return None;
        };
        let (id, answer) = socket.expect_ack();
        let packet = Packet::new(socket.ns.clone(), Kind::Event(event.with_id(id)));
        self.send_to(socket, &crate::socket::frames(&packet));
        Some((id, answer))
    }

    /// Disconnects a socket (`close`: its whole client connection).
    fn disconnect(self: &Arc<Self>, socket: &Arc<Socket>, close: bool) {
        if !close {
            return self.disconnect_socket(socket);
        }
        let sockets: Vec<_> = socket.session.state().sockets.values().cloned().collect();
        for s in sockets {
            self.disconnect_socket(&s);
        }
        self.close_session(&socket.session, DisconnectReason::ForcedClose);
    }
}

/// Announces this gateway on `P.hb` and tracks the bus connection.
pub(crate) async fn announce(shared: Weak<Shared>, address: String) {
    loop {
        let Some(s) = shared.upgrade() else { return };
        let connected = s.bus.state() == sio_bus::State::Connected;
        s.metrics.bus_connected.set(i64::from(connected));
        let hb = s.heartbeat(&address);
        if let Ok(bytes) = envelope::encode(&hb) {
            if connected {
                s.publish(s.subjects.heartbeat(), bytes.into()).await;
            }
        }
        let interval = ms(s.config.heartbeat_interval.max(100));
        drop(s);
        tokio::time::sleep(interval).await;
    }
}
