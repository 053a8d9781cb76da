//! Socket.IO on top of sessions: namespaces, connects, events and acks.
//!
//! Client events become [`envelope::Event`]s on `P.ev.<ns>.<event>`
//! (a request when the client wants an ack); connects go to
//! `P.conn.<ns>`, disconnects to `P.disc.<ns>`. The gateway never parses
//! event arguments: they travel as the raw JSON the client sent.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use sio_protocol::envelope::{
    self, AckReply, ConnectReply, ConnectRequest, Disconnect, DisconnectReason, SocketContext,
};
use sio_protocol::id::SocketId;
use sio_protocol::socketio::{self, Ack, Event, Kind, Packet};
use tokio::sync::oneshot;

use crate::gateway::Shared;
use crate::outbox::Frame;
use crate::session::Session;

/// One client's presence in one namespace.
#[derive(Debug)]
pub(crate) struct Socket {
    pub(crate) id: SocketId,
    pub(crate) ns: String,
    pub(crate) session: Arc<Session>,
    /// The CONNECT packet's auth object, as JSON text.
    pub(crate) auth: Option<String>,
    inner: Mutex<Inner>,
    next_ack: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    /// Frames emitted while the workers decide on the connect; sent right
    /// after the CONNECT reply, never before it.
    pending: Option<Vec<Frame>>,
    data: Option<String>,
    /// Sorted. A socket is in a few rooms: a vector of them costs a
    /// fraction of a tree node, for every idle client.
    rooms: Vec<String>,
    /// Server emits waiting for the client's ack, by ack id.
    acks: HashMap<u64, oneshot::Sender<AckReply>>,
}

impl Socket {
    /// A socket; `pending` until its CONNECT reply is sent.
    pub(crate) fn new(
        id: SocketId,
        ns: String,
        session: Arc<Session>,
        auth: Option<String>,
        pending: bool,
    ) -> Self {
        Self {
            id,
            ns,
            session,
            auth,
            inner: Mutex::new(Inner {
                pending: pending.then(Vec::new),
                ..Inner::default()
            }),
            next_ack: AtomicU64::new(0),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What handlers learn about this socket.
    pub(crate) fn context(&self) -> SocketContext {
        let inner = self.inner();
        let mut handshake = self.session.handshake();
        handshake.auth.clone_from(&self.auth);
        SocketContext {
            id: self.id,
            ns: self.ns.clone(),
            handshake,
            data: inner.data.clone(),
            rooms: inner.rooms.clone(),
        }
    }

    pub(crate) fn set_data(&self, data: Option<String>) {
        self.inner().data = data;
    }

    /// Records room membership; returns the rooms that were new.
    pub(crate) fn add_rooms<'r>(&self, rooms: impl IntoIterator<Item = &'r String>) -> Vec<String> {
        let mut inner = self.inner();
        rooms
            .into_iter()
            .filter(|r| match inner.rooms.binary_search(r) {
                Ok(_) => false,
                Err(at) => {
                    inner.rooms.insert(at, (*r).clone());
                    true
                }
            })
            .cloned()
            .collect()
    }

    /// Forgets room membership; returns the rooms it was in.
    pub(crate) fn remove_rooms<'r>(
        &self,
        rooms: impl IntoIterator<Item = &'r String>,
    ) -> Vec<String> {
        let mut inner = self.inner();
        rooms
            .into_iter()
            .filter(|r| match inner.rooms.binary_search(r) {
                Ok(at) => {
                    inner.rooms.remove(at);
                    true
                }
                Err(_) => false,
            })
            .cloned()
            .collect()
    }

    pub(crate) fn rooms(&self) -> Vec<String> {
        self.inner().rooms.clone()
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
    fn forget_acks(&self) {
        self.inner().acks.clear();
    }

    fn resolve_ack(&self, ack: Ack<'_>) {
        if let Some(tx) = self.inner().acks.remove(&ack.id) {
            let _ = tx.send(AckReply {
                data: ack.data.into_owned(),
                attachments: ack.attachments.unwrap_or_default(),
            });
        }
    }
}

/// The frames of a Socket.IO packet: its text as an Engine.IO message,
/// then its attachments.
pub(crate) fn frames(packet: &Packet<'_>) -> Vec<Frame> {
    let mut text = String::from("4");
    packet.encode(&mut text);
    let mut frames = Vec::with_capacity(1 + packet.attachments().len());
    frames.push(Frame::text(text));
    frames.extend(packet.attachments().iter().cloned().map(Frame::Binary));
    frames
}

fn error_object(message: &str) -> String {
    serde_json::json!({ "message": message }).to_string()
}

impl Shared {
    /// Handles one decoded Socket.IO packet from a client.
    pub(crate) async fn on_socket_packet(
        self: &Arc<Self>,
        session: &Arc<Session>,
        packet: Packet<'_>,
    ) {
        self.metrics.packets_in.inc();
        let nsp = packet.nsp.into_owned();
        if let Kind::Connect(auth) = packet.kind {
            return self.connect(session, nsp, auth.map(Cow::into_owned)).await;
        }
        let socket = session.state().sockets.get(&nsp).cloned();
        let Some(socket) = socket else {
            // A packet for a namespace the client never joined: the
            // reference server closes the connection.
            return self.close_session(session, DisconnectReason::ForcedClose);
        };
        match packet.kind {
            Kind::Disconnect => {
                self.remove_socket(&socket, DisconnectReason::ClientNamespaceDisconnect)
            }
            Kind::Event(event) => self.on_event(&socket, event).await,
            Kind::Ack(ack) => socket.resolve_ack(ack),
            Kind::Connect(_) | Kind::ConnectError(_) => {
                self.close_session(session, DisconnectReason::ParseError);
            }
        }
    }

    /// Sends a packet to one client; cuts it if its queue is full.
    pub(crate) fn send_packet(self: &Arc<Self>, session: &Session, packet: &Packet<'_>) {
        self.send_frames(session, frames(packet));
    }

    pub(crate) fn send_frames(self: &Arc<Self>, session: &Session, frames: Vec<Frame>) {
        self.sent(session, session.send(frames));
    }

    fn sent(self: &Arc<Self>, session: &Session, result: Result<(), crate::outbox::Full>) {
        if result.is_ok() {
            self.metrics.packets_out.inc();
        } else {
            self.metrics.drop("slow_consumer");
            self.close_session(session, DisconnectReason::TransportError);
        }
    }

    /// Sends to one socket, holding frames back while its connect is
    /// pending.
    pub(crate) fn send_to(self: &Arc<Self>, socket: &Socket, frames: &[Frame]) {
        {
            let mut inner = socket.inner();
            if let Some(held) = inner.pending.as_mut() {
                if held.len() + frames.len() <= self.config.send_queue_packets {
                    held.extend_from_slice(frames);
                } else {
                    self.metrics.drop("pending_overflow");
                }
                return;
            }
        }
        self.sent(&socket.session, socket.session.send(frames.iter().cloned()));
    }

    fn namespace_allowed(&self, nsp: &str) -> bool {
        self.config.namespaces.iter().any(|n| n == nsp)
            || self.config.namespace_patterns.iter().any(|p| glob(p, nsp))
    }

    async fn connect(self: &Arc<Self>, session: &Arc<Session>, nsp: String, auth: Option<String>) {
        if !self.namespace_allowed(&nsp) {
            let refusal = Kind::ConnectError(error_object("Invalid namespace").into());
            return self.send_packet(session, &Packet::new(nsp, refusal));
        }
        let authorize = self.config.authorize.contains(&nsp);
        {
            let mut state = session.state();
            if state.sockets.contains_key(&nsp) || state.connecting.contains(&nsp) {
                return;
            }
            if authorize {
                state.connecting.insert(nsp.clone());
            }
        }
        let Ok(id) = SocketId::random(self.id) else {
            return self.close_session(session, DisconnectReason::TransportError);
        };
        let socket = Arc::new(Socket::new(
            id,
            nsp.clone(),
            session.clone(),
            auth,
            authorize,
        ));
        let request = ConnectRequest {
            socket: socket.context(),
        };
        let Ok(payload) = envelope::encode(&request).map(Bytes::from) else {
            return;
        };
        let subject = self.subjects.connect(&nsp);
        if !authorize {
            self.establish(socket, None, Vec::new()).await;
            self.publish(subject, payload).await;
            return;
        }
        // Reachable by commands while the workers decide, so that what
        // their connect handler emits is held for after the reply.
        self.sockets_lock().insert(id, socket.clone());
        // The workers decide; meanwhile the client's other namespaces go on.
        let shared = self.clone();
        tokio::spawn(async move {
            let timeout = crate::config::ms(shared.config.connect_request_timeout);
            let reply = shared.bus.request(subject, payload, timeout).await;
            socket.session.state().connecting.remove(&nsp);
            let reply = reply.map_err(|e| e.to_string()).and_then(|b| {
                envelope::decode_owned::<ConnectReply>(&b).map_err(|e| e.to_string())
            });
            match reply {
                Ok(ConnectReply::Accept { data, rooms }) => {
                    shared.establish(socket, data, rooms).await
                }
                Ok(ConnectReply::Reject { data }) => shared.refuse(&socket, data),
                Err(error) => {
                    tracing::warn!(ns = %nsp, %error, "connect not authorized: no worker answered");
                    shared.metrics.drop("connect_unanswered");
                    shared.refuse(&socket, error_object("Server unavailable"));
                }
            }
        });
    }

    /// Refuses a pending connect with `data` as the `connect_error`.
    fn refuse(self: &Arc<Self>, socket: &Arc<Socket>, data: String) {
        self.sockets_lock().remove(&socket.id);
        self.index_remove(socket);
        let refusal = Packet::new(socket.ns.clone(), Kind::ConnectError(data.into()));
        self.send_packet(&socket.session, &refusal);
    }

    /// Makes an accepted socket live and tells the client; what was
    /// emitted to it meanwhile follows the reply.
    async fn establish(
        self: &Arc<Self>,
        socket: Arc<Socket>,
        data: Option<String>,
        rooms: Vec<String>,
    ) {
        let session = socket.session.clone();
        socket.set_data(data);
        let live = {
            let mut state = session.state();
            let live = !session.is_closed() && !state.sockets.contains_key(&socket.ns);
            if live {
                state.sockets.insert(socket.ns.clone(), socket.clone());
                state.joined = true;
            }
            live
        };
        if !live {
            self.sockets_lock().remove(&socket.id);
            self.index_remove(&socket);
            return;
        }
        self.sockets_lock().insert(socket.id, socket.clone());
        self.metrics.socket_joined(&socket.ns);
        let ready = self.index_add(&socket, &rooms);
        let reply = serde_json::json!({ "sid": socket.id.to_string() }).to_string();
        let reply = Packet::new(socket.ns.clone(), Kind::Connect(Some(reply.into())));
        let result = {
            let mut inner = socket.inner();
            let held = inner.pending.take().unwrap_or_default();
            session.send(frames(&reply).into_iter().chain(held))
        };
        self.sent(&session, result);
        ready.await;
    }

    async fn on_event(self: &Arc<Self>, socket: &Arc<Socket>, event: Event<'_>) {
        let ack_id = event.id;
        let subject = self.subjects.event(&socket.ns, event.name());
        let envelope = envelope::Event {
            socket: socket.context(),
            event: Cow::Borrowed(event.name()),
            data: Cow::Borrowed(event.data()),
            attachments: event.attachments.clone().unwrap_or_default(),
        };
        let Ok(payload) = envelope::encode(&envelope).map(Bytes::from) else {
            return;
        };
        let Some(ack_id) = ack_id else {
            return self.publish(subject, payload).await;
        };
        // Bounded like the send queue: each answer becomes a packet for
        // the client, and each wait holds the event until then.
        let Some(asking) = socket.session.ask(self.config.send_queue_packets) else {
            self.metrics.drop("ack_flood");
            return self.close_session(&socket.session, DisconnectReason::TransportError);
        };
        let shared = self.clone();
        let socket = socket.clone();
        tokio::spawn(async move {
            let _asking = asking;
            let started = std::time::Instant::now();
            let timeout = crate::config::ms(shared.config.ack_timeout);
            let reply = match shared.bus.request(subject.clone(), payload, timeout).await {
                Ok(bytes) => envelope::decode_owned::<AckReply>(&bytes).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match reply {
                Ok(reply) => {
                    shared
                        .metrics
                        .ack_rtt
                        .observe(started.elapsed().as_secs_f64());
                    let ack = Ack {
                        id: ack_id,
                        data: reply.data.into(),
                        attachments: (!reply.attachments.is_empty()).then_some(reply.attachments),
                    };
                    shared.send_packet(
                        &socket.session,
                        &Packet::new(socket.ns.clone(), Kind::Ack(ack)),
                    );
                }
                Err(error) => {
                    tracing::debug!(%subject, %error, "event ack not answered");
                    shared.metrics.drop("ack_unanswered");
                }
            }
        });
    }

    /// Takes a socket out of its namespace and tells the workers.
    pub(crate) fn remove_socket(self: &Arc<Self>, socket: &Arc<Socket>, reason: DisconnectReason) {
        {
            let mut state = socket.session.state();
            match state.sockets.get(&socket.ns) {
                Some(s) if Arc::ptr_eq(s, socket) => state.sockets.remove(&socket.ns),
                _ => return,
            };
        }
        self.sockets_lock().remove(&socket.id);
        socket.forget_acks();
        self.metrics.socket_left(&socket.ns);
        let context = socket.context();
        self.index_remove(socket);
        let subject = self.subjects.disconnect(&socket.ns);
        let Ok(payload) = envelope::encode(&Disconnect {
            socket: context,
            reason,
        }) else {
            return;
        };
        let shared = self.clone();
        tokio::spawn(async move { shared.publish(subject, payload.into()).await });
    }

    /// Server-side disconnect of one socket: the client gets DISCONNECT.
    pub(crate) fn disconnect_socket(self: &Arc<Self>, socket: &Arc<Socket>) {
        self.send_packet(
            &socket.session,
            &Packet::new(socket.ns.clone(), Kind::Disconnect),
        );
        self.remove_socket(socket, DisconnectReason::ServerNamespaceDisconnect);
    }

    /// Publishes to the bus, counting what could not be sent.
    pub(crate) async fn publish(&self, subject: String, payload: Bytes) {
        if let Err(error) = self.bus.publish(subject, payload).await {
            tracing::warn!(%error, "publish failed");
            self.metrics.bus_errors.inc();
            self.metrics.drop("bus_unavailable");
        }
    }
}

/// Matches `*` against any run of characters.
pub(crate) fn glob(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return false;
    };
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = rest.get(i + part.len()..).unwrap_or_default(),
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Decodes the Socket.IO packets inside Engine.IO messages for a session.
pub(crate) fn decode_text<'a>(
    session: &Session,
    text: &'a str,
) -> Result<Option<Packet<'a>>, socketio::Error> {
    session.state().decoder.decode_text(text)
}

pub(crate) fn decode_binary(
    session: &Session,
    data: Bytes,
) -> Result<Option<Packet<'static>>, socketio::Error> {
    session.state().decoder.decode_binary(data)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sio_protocol::id::{GatewayId, Sid, SocketId};
    use sio_protocol::socketio::Decoder;

    use super::{Socket, glob};
    use crate::config::Transport;
    use crate::outbox::Outbox;
    use crate::session::Session;

    #[test]
    fn rooms_are_a_sorted_set() -> Result<(), Box<dyn std::error::Error>> {
        let gateway = GatewayId::random()?;
        let session = Session::new(
            Sid::random(gateway)?,
            Transport::Websocket,
            Default::default(),
            Outbox::new(8, 1024),
            Decoder::new(1),
            (0, 0),
        );
        let socket = Socket::new(
            SocketId::random(gateway)?,
            "/".into(),
            Arc::new(session),
            None,
            false,
        );
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
        assert_eq!(socket.rooms(), names(&["a", "c"]));
        Ok(())
    }

    #[test]
    fn namespace_patterns() {
        assert!(glob("/room-*", "/room-1"));
        assert!(glob("/room-*", "/room-"));
        assert!(!glob("/room-*", "/roo"));
        assert!(glob("*", "/anything"));
        assert!(glob("/a*b*c", "/a-x-b-y-c"));
        assert!(!glob("/a*b*c", "/a-x-c"));
        assert!(glob("/exact", "/exact"));
        assert!(!glob("/exact", "/exact2"));
        assert!(glob("/*-*", "/a-b-c"));
    }
}
