//! The gateway's handles (configuration, bus, metrics, registry, clock,
//! timer) and the primitive effects every part above uses: queue frames
//! for a client or a socket, end a session for a fault, take a socket out,
//! publish within bounds.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sio_bus::{Bus, State};
use sio_protocol::envelope::{
    self, Command, DisconnectReason, EmitId, EncodedPacket, SocketCommand,
};
use sio_protocol::id::GatewayId;
use sio_protocol::socketio::{Kind, Packet};
use sio_protocol::subject::Subjects;

use crate::address::Addresses;
use crate::client::{Client, Rules};
use crate::config::{Config, Transport, ms};
use crate::fault::Fault;
use crate::metrics::Metrics;
use crate::outbox::Frame;
use crate::queue::{Bounds, Job, Push};
use crate::recovery::Keep;
use crate::registry::Registry;
use crate::replies::Replies;
use crate::session::Session;
use crate::socket::{self, Hold, Socket};
use crate::timer::Timer;

#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) config: Config,
    pub(crate) id: GatewayId,
    pub(crate) subjects: Subjects,
    pub(crate) bus: Arc<dyn Bus>,
    pub(crate) metrics: Metrics,
    pub(crate) registry: Registry,
    /// Connections (or, behind a trusted proxy, sessions) per client address.
    pub(crate) addresses: Arc<Addresses>,
    pub(crate) timer: Arc<Timer>,
    draining: AtomicBool,
    pub(crate) epoch: tokio::time::Instant,
    /// Where workers answer the events handed to them.
    pub(crate) replies: Arc<Replies>,
    /// The bus as last seen, and since when it is back.
    seen: tokio::sync::watch::Sender<Seen>,
    /// Events the workers said may run out of order, by namespace.
    unordered: Mutex<HashMap<String, HashSet<String>>>,
    /// Commands to other gateways (subject, reply subject, payload),
    /// published in the order they are made.
    commands: tokio::sync::mpsc::Sender<(String, Option<String>, Bytes)>,
    /// The sockets' records in JetStream, over NATS (set once, at start;
    /// without recovery, once JetStream answers).
    pub(crate) records: std::sync::OnceLock<crate::records::Records>,
    /// The rest of what connection state recovery over NATS keeps there
    /// (set once, at start).
    pub(crate) durable: std::sync::OnceLock<crate::records::Durable>,
    /// Starts serving the subjects of a gateway that is gone (the command
    /// loop's, handed in by `lib.rs` so that a recovery need not reach
    /// across to it).
    pub(crate) inherit: std::sync::OnceLock<Inherit>,
    /// What sockets keep for connection state recovery, bounded in all.
    pub(crate) memory: crate::recovery::Memory,
    /// Sockets whose transport was lost, waiting for their client.
    pub(crate) parked: Mutex<crate::parked::Parked>,
}

/// Commands to other gateways that may wait for the bus; past it, the
/// newest are dropped (counted).
const COMMANDS: usize = 4096;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen {
    pub(crate) up: bool,
    /// When the bus last came back (`None` if it never went away).
    back: Option<tokio::time::Instant>,
}

/// See [`Node::inherit`].
pub(crate) type Inherit = fn(Arc<Node>, GatewayId) -> futures_util::future::BoxFuture<'static, ()>;

/// How long after the bus came back a no-responders answer, or a worker's
/// silence, is not believed at once: the workers reconnect on their own
/// schedule (at most 2 s apart, `sio_bus`'s backoff).
const SETTLE: Duration = Duration::from_secs(3);
/// Most events remembered as opted out of order.
const MAX_UNORDERED: usize = 4096;

impl Node {
    pub(crate) fn new(
        config: Config,
        bus: Arc<dyn Bus>,
        id: GatewayId,
        subjects: Subjects,
    ) -> Self {
        let metrics = Metrics::default();
        let (commands, mut queued) = tokio::sync::mpsc::channel(COMMANDS);
        let (publisher, errors) = (bus.clone(), metrics.bus_errors.clone());
        tokio::spawn(async move {
            while let Some((subject, reply, payload)) = queued.recv().await {
                let sent = match reply {
                    Some(reply) => publisher.publish_with_reply(subject, reply, payload).await,
                    None => publisher.publish(subject, payload).await,
                };
                if sent.is_err() {
                    errors.inc();
                }
            }
        });
        let memory = crate::recovery::Memory::new(
            config.recovery_memory,
            metrics.recovery_bytes.clone(),
            id,
        );
        Self {
            config,
            id,
            subjects,
            memory,
            parked: Mutex::default(),
            records: std::sync::OnceLock::new(),
            durable: std::sync::OnceLock::new(),
            inherit: std::sync::OnceLock::new(),
            metrics,
            commands,
            registry: Registry::default(),
            addresses: Arc::default(),
            timer: Arc::default(),
            draining: AtomicBool::new(false),
            epoch: tokio::time::Instant::now(),
            replies: Arc::new(Replies::new(bus.new_inbox())),
            seen: tokio::sync::watch::Sender::new(Seen {
                up: bus.state() == State::Connected,
                back: None,
            }),
            unordered: Mutex::default(),
            bus,
        }
    }

    /// Notes the bus's state now (`event::watch` calls it).
    pub(crate) fn observe_bus(&self) {
        let up = self.bus.state() == State::Connected;
        self.seen.send_if_modified(|seen| {
            let changed = seen.up != up;
            if changed {
                seen.up = up;
                if up {
                    seen.back = Some(tokio::time::Instant::now());
                }
            }
            changed
        });
    }

    /// The bus's state as it changes.
    pub(crate) fn bus_seen(&self) -> tokio::sync::watch::Receiver<Seen> {
        self.seen.subscribe()
    }

    /// Waits for the bus to be up, until `deadline`; false if it was not.
    pub(crate) async fn bus_ready(&self, deadline: tokio::time::Instant) -> bool {
        let mut seen = self.seen.subscribe();
        let up = seen.wait_for(|s| s.up);
        matches!(tokio::time::timeout_at(deadline, up).await, Ok(Ok(_)))
    }

    /// Whether the bus came back moments ago.
    pub(crate) fn settling(&self) -> bool {
        self.seen
            .borrow()
            .back
            .is_some_and(|t| t.elapsed() < SETTLE)
    }

    /// Whether the bus is away or came back moments ago: a worker's
    /// silence may be the bus's, not the worker's.
    pub(crate) fn unsettled(&self) -> bool {
        !self.seen.borrow().up || self.settling()
    }

    /// Looked up per client event, without allocating.
    pub(crate) fn is_unordered(&self, ns: &str, event: &str) -> bool {
        let known = self.unordered.lock().unwrap_or_else(|e| e.into_inner());
        known.get(ns).is_some_and(|events| events.contains(event))
    }

    pub(crate) fn learn_unordered(&self, ns: &str, event: &str) {
        let mut known = self.unordered.lock().unwrap_or_else(|e| e.into_inner());
        if known.values().map(HashSet::len).sum::<usize>() < MAX_UNORDERED {
            known
                .entry(ns.to_owned())
                .or_default()
                .insert(event.to_owned());
        }
    }

    pub(crate) fn queue_bounds(&self) -> Bounds {
        Bounds {
            jobs: self.config.event_queue,
            bytes: self.config.event_queue_bytes,
        }
    }

    /// Milliseconds on the gateway's clock (since it started).
    pub(crate) fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn rules(&self) -> Rules<'_> {
        Rules {
            config: &self.config,
            gateway: self.id,
        }
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// A session's client is served from now on.
    pub(crate) fn open(&self, client: Arc<Client>, transport: Transport) {
        // In the registry first: the timer finds a session by its sid.
        self.registry.add_client(client.clone());
        self.schedule(&client);
        self.metrics.sessions.inc();
        self.metrics.connection(transport.as_str(), 1);
    }

    /// Gives the timer the client's next deadline: its heartbeat, or its
    /// connectTimeout while it has joined no namespace.
    pub(crate) fn schedule(&self, client: &Client) {
        let session = &client.session;
        let mut at = session.deadline();
        if !client.joined() {
            at = at.min(session.opened.saturating_add(self.config.connect_timeout));
        }
        if session.arm(at, self.now()) {
            self.timer.schedule(at, session.sid);
        }
    }

    /// Ends a session for `fault`: its sockets leave, workers hear why, and
    /// whoever serves its transport sends what is queued and closes. The
    /// one place a session ends.
    pub(crate) fn close(self: &Arc<Self>, session: &Session, fault: Fault) {
        if !session.close(fault) {
            return;
        }
        if let Some(label) = fault.metric() {
            self.metrics.drop(label);
        }
        if let Some(client) = self.registry.remove_client(&session.sid) {
            self.metrics.sessions.dec();
            self.metrics
                .connection(session.state().transport.as_str(), -1);
            for socket in client.sockets() {
                self.remove_socket(&client, &socket, fault.reason());
            }
        }
        tracing::debug!(sid = %session.sid, %fault, "session closed");
    }

    /// Queues frames that belong together for a client; cuts it if its
    /// queue is full.
    pub(crate) fn send(
        self: &Arc<Self>,
        session: &Session,
        frames: impl IntoIterator<Item = Frame>,
    ) {
        if session.send(frames).is_ok() {
            self.metrics.packets_out.inc();
        } else {
            self.close(session, Fault::SlowConsumer);
        }
    }

    pub(crate) fn send_packet(self: &Arc<Self>, session: &Session, packet: &Packet<'_>) {
        self.send(session, socket::frames(packet));
    }

    /// Sends to one socket, holding frames back while its connect is
    /// pending.
    pub(crate) fn send_to(self: &Arc<Self>, socket: &Socket, frames: &[Frame]) {
        self.send_emit(socket, None, frames);
    }

    /// [`Node::send_to`] for the frames of an emit, which a hand-over
    /// tells apart by id (and a recovery keeps, as `keep` says).
    pub(crate) fn send_emit(
        self: &Arc<Self>,
        socket: &Socket,
        emit: Option<EmitId>,
        frames: &[Frame],
    ) {
        self.send_kept(socket, emit, Keep::Not, frames);
    }

    pub(crate) fn send_kept(
        self: &Arc<Self>,
        socket: &Socket,
        emit: Option<EmitId>,
        keep: Keep<'_>,
        frames: &[Frame],
    ) {
        if let Some(to) = socket.moved_to() {
            // An emit from a room or namespace reaches it at `to` on that
            // gateway's own subscription (taken before the hand-over's
            // markers); the rest (acks, direct emits) goes there from here.
            if emit.is_none() {
                self.forward_frames(socket, to, frames);
            }
            return;
        }
        match socket.hold(emit, keep, frames, self.config.send_queue_packets) {
            Hold::Sent => {
                self.metrics.packets_out.inc();
            }
            Hold::Full => self.close(&socket.session, Fault::SlowConsumer),
            Hold::Held | Hold::Parked => {}
            Hold::Overflow => self.metrics.drop("pending_overflow"),
            Hold::Replaced => {
                // Its client came back meanwhile, to the socket now here.
                let now = self.registry.socket(&socket.id);
                if let Some(now) = now.filter(|s| !std::ptr::eq(s.as_ref(), socket)) {
                    self.send_kept(&now, emit, keep, frames);
                }
            }
        }
    }

    /// Takes a socket out of its namespace and tells the workers; with
    /// connection state recovery, a socket whose transport was lost waits
    /// for its client instead, and they are told if it does not come back
    /// in time.
    pub(crate) fn remove_socket(
        self: &Arc<Self>,
        client: &Client,
        socket: &Arc<Socket>,
        reason: DisconnectReason,
    ) {
        if !client.remove(socket) {
            return;
        }
        if self.park(socket, reason) {
            self.metrics
                .socket_left(crate::client::namespace_label(&self.config, &socket.ns));
            return;
        }
        self.forget_socket(socket, reason);
    }

    /// Parks a socket whose transport was lost for `reason`, if its client
    /// may recover it (see [`crate::recover`]); false if it leaves now.
    pub(crate) fn park(&self, socket: &Arc<Socket>, reason: DisconnectReason) -> bool {
        let Some(pid) = socket.pid else { return false };
        if !crate::recovery::recoverable(reason) || socket.is_gone() {
            return false;
        }
        // As many wait as may be connected: clients that connect and drop
        // in a loop do not pile sockets up.
        if lock(&self.parked).len() >= self.config.max_connections {
            self.metrics.drop("recovery_full");
            return false;
        }
        if !socket.park(reason) {
            return false;
        }
        if self.durable.get().is_some_and(|d| !d.parked(self.id, pid)) {
            self.metrics.drop("record_overflow");
        }
        // Whoever waits for an ack hears now that none will come.
        socket.forget_acks();
        let until = self
            .now()
            .saturating_add(self.config.max_disconnection_duration);
        let mut parked = lock(&self.parked);
        parked.park(pid, socket.clone(), until);
        self.metrics.recoverable.set(parked.gauge());
        true
    }

    /// A parked socket leaves for another reason (a worker disconnects it).
    pub(crate) fn unpark(self: &Arc<Self>, socket: &Arc<Socket>, reason: DisconnectReason) {
        let mut parked = lock(&self.parked);
        if parked.remove(socket) {
            self.metrics.recoverable.set(parked.gauge());
            drop(parked);
            self.forget_socket(socket, reason);
        }
    }

    /// A socket out of its client leaves for good: out of the registry and
    /// its rooms, its workers told why.
    pub(crate) fn forget_socket(self: &Arc<Self>, socket: &Arc<Socket>, reason: DisconnectReason) {
        if !socket.leave() {
            return;
        }
        self.unrecord(socket);
        self.registry.remove_socket(&socket.id);
        socket.forget_acks();
        if socket.parked().is_none() {
            self.metrics
                .socket_left(crate::client::namespace_label(&self.config, &socket.ns));
        }
        let payload = socket.disconnect(reason);
        self.registry.unindex(socket);
        let Ok(payload) = payload else { return };
        let subject = self.subjects.disconnect(&socket.ns);
        // After the socket's events: whoever hands them over publishes it
        // in its turn.
        let notice = Job::Notice {
            subject,
            payload: payload.into(),
        };
        if let Push::Start(Job::Notice { subject, payload }) =
            socket.push(notice, self.queue_bounds())
        {
            let node = self.clone();
            let socket = socket.clone();
            tokio::spawn(async move {
                node.publish(subject, payload).await;
                // The socket is out of its client: nothing follows (an
                // event that raced the disconnect has no client to answer).
                while socket.next_job().is_some() {}
            });
        }
    }

    /// Frames for a socket handed over to `to` (the acks of events this
    /// gateway was still handling), sent there as emits, a packet each.
    fn forward_frames(&self, socket: &Socket, to: GatewayId, frames: &[Frame]) {
        let mut packets: Vec<EncodedPacket> = Vec::new();
        for frame in frames {
            match (frame, packets.last_mut()) {
                (Frame::Text(text), _) => packets.push(EncodedPacket {
                    message: Bytes::copy_from_slice(text.as_bytes()),
                    attachments: Vec::new(),
                }),
                (Frame::Binary(data), Some(packet)) => packet.attachments.push(data.clone()),
                (Frame::Binary(_), None) => {}
            }
        }
        for packet in packets {
            let action = SocketCommand::Emit {
                id: self.memory.local_id(),
                volatile: false,
                packet,
            };
            let command = Command::Socket {
                socket: socket.id,
                action,
            };
            self.command(to, &command);
        }
    }

    /// Writes a socket's record as it is now (see [`crate::records`]).
    pub(crate) fn record(&self, socket: &Socket) {
        let kept = self.records.get().is_none_or(|r| r.keep(self.id, socket));
        if !kept {
            self.metrics.drop("record_overflow");
        }
    }

    /// Removes the record of a socket that left (or lives elsewhere now).
    pub(crate) fn unrecord(&self, socket: &Socket) {
        let kept = self.records.get().is_none_or(|r| r.forget(self.id, socket));
        if !kept {
            self.metrics.drop("record_overflow");
        }
    }

    /// Sends a command to another gateway, in the order of the calls.
    pub(crate) fn command(&self, to: GatewayId, command: &Command) {
        if let Ok(payload) = envelope::encode(command) {
            self.command_bytes(to, None, payload.into());
        }
    }

    /// [`Node::command`] for a command already encoded (one forwarded as
    /// it came, answered to `reply`).
    pub(crate) fn command_bytes(&self, to: GatewayId, reply: Option<String>, payload: Bytes) {
        let subject = self.subjects.gateway(to);
        if self.commands.try_send((subject, reply, payload)).is_err() {
            self.metrics.drop("bus_unavailable");
        }
    }

    /// Lets a session go to the gateway `to` that took it over: its
    /// sockets leave this gateway's registry and rooms without a
    /// disconnect (they live on at `to`), and `P.gw` commands for them are
    /// forwarded there from now on. The session's queue stays for the
    /// caller to take; its transports are done.
    pub(crate) fn hand_off(self: &Arc<Self>, client: &Client, to: GatewayId) {
        for socket in client.sockets() {
            // Moved before it is gone: an ack of an event still handled
            // here finds where to go at any moment.
            socket.moved(to);
            if !client.remove(&socket) || !socket.leave() {
                continue;
            }
            self.registry.moved(&socket, to);
            self.unrecord(&socket);
            self.registry.remove_socket(&socket.id);
            self.registry.unindex(&socket);
            self.metrics
                .socket_left(crate::client::namespace_label(&self.config, &socket.ns));
        }
        if self.registry.remove_client(&client.session.sid).is_some() {
            self.metrics.sessions.dec();
            // Counted as polling until the end: it never served a
            // websocket here.
            self.metrics.connection(Transport::Polling.as_str(), -1);
            self.metrics.sessions_given.inc();
        }
    }

    /// Server-side disconnect of one socket (`close`: of its whole client
    /// connection); the client gets DISCONNECT for each.
    pub(crate) fn disconnect(self: &Arc<Self>, socket: &Arc<Socket>, close: bool) {
        if socket.parked().is_some() {
            self.unpark(socket, DisconnectReason::ServerNamespaceDisconnect);
            return;
        }
        let Some(client) = self.registry.client(&socket.session.sid) else {
            return;
        };
        let sockets = if close {
            client.sockets()
        } else {
            vec![socket.clone()]
        };
        for s in &sockets {
            self.send_packet(&s.session, &Packet::new(s.ns.clone(), Kind::Disconnect));
            self.remove_socket(&client, s, DisconnectReason::ServerNamespaceDisconnect);
        }
        if close {
            self.close(&socket.session, Fault::Forced);
        }
    }

    /// Publishes to the bus, waiting up to `--event-timeout` for it to be
    /// up; counts what could not be sent.
    pub(crate) async fn publish(&self, subject: String, payload: Bytes) {
        let deadline = tokio::time::Instant::now() + ms(self.config.event_timeout);
        if !self.bus_ready(deadline).await {
            self.metrics.drop("bus_unavailable");
            return;
        }
        self.publish_until(deadline, subject, payload).await;
    }

    /// Publishes if the bus is up now; else drops it, counted.
    pub(crate) async fn publish_now(&self, subject: String, payload: Bytes) {
        if !self.seen.borrow().up {
            self.metrics.drop("bus_unavailable");
            return;
        }
        let deadline = tokio::time::Instant::now() + ms(self.config.event_timeout);
        self.publish_until(deadline, subject, payload).await;
    }

    async fn publish_until(&self, deadline: tokio::time::Instant, subject: String, payload: Bytes) {
        let sent = tokio::time::timeout_at(deadline, self.bus.publish(subject, payload)).await;
        let error = match sent {
            Ok(Ok(())) => return,
            Ok(Err(error)) => error.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        tracing::warn!(%error, "publish failed");
        self.metrics.bus_errors.inc();
        self.metrics.drop("bus_unavailable");
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
