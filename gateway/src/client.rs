//! The Socket.IO client of one Engine.IO session: its decoder, its sockets
//! (one per namespace), the connects being decided and the events waiting
//! for a worker's ack.
//!
//! This is the core without I/O: a message from the session goes in, the
//! one [`Action`] it calls for comes out, and the gateway's dispatch does
//! the bus calls, timers and sends. It is tested in memory (the second
//! half of this file, which is why it passes 400 lines).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use sio_protocol::envelope::{AckReply, DisconnectReason, EncodedHandshake};
use sio_protocol::id::{GatewayId, SocketId};
use sio_protocol::socketio::recovery::{Pid, Recovery};
use sio_protocol::socketio::{Decoder, Event, Kind, Packet};

use crate::config::Config;
use crate::fault::Fault;
use crate::outbox::Frame;
use crate::recovery::{Bounds, Log};
use crate::session::Session;
use crate::socket::{self, Socket};

#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) session: Arc<Session>,
    /// The session counted for its client's address, behind a trusted
    /// proxy with per-address limits; released with the client.
    _address: Option<crate::address::Slot>,
    /// What the client sent when it opened the session, encoded once and
    /// shared by the context of every socket.
    handshake: EncodedHandshake,
    /// Client events waiting for a worker's ack.
    asking: AtomicUsize,
    /// The gateway this session is being handed over to.
    pub(crate) moving: std::sync::OnceLock<GatewayId>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    decoder: Decoder,
    /// The namespaces this client joined.
    sockets: HashMap<String, Arc<Socket>>,
    /// Set once any namespace was joined (connectTimeout).
    joined: bool,
    /// Namespaces whose connect the workers are deciding: a repeated
    /// CONNECT meanwhile is ignored, so a client cannot pile up requests.
    connecting: HashSet<String>,
}

/// What the gateway needs to know to decide on a client's packet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules<'a> {
    pub(crate) config: &'a Config,
    pub(crate) gateway: GatewayId,
}

/// What one message from the client calls for.
#[derive(Debug)]
pub(crate) enum Action {
    /// No packet yet: a binary packet waits for its attachments.
    Pending,
    /// Nothing to do.
    None,
    /// End the session.
    Close(Fault),
    /// Answer the client.
    Send(Vec<Frame>),
    /// Refuse a connect past `--max-namespaces` with this answer (counted).
    Refuse(Vec<Frame>),
    /// A new socket. With `authorize`, the workers decide on it over
    /// `P.conn` (a request); without, it is live at once and they are told.
    /// With `recovery`, the client asks for a socket it had back, and
    /// `socket` is what it gets if that cannot be.
    Connect {
        socket: Arc<Socket>,
        authorize: bool,
        recovery: Option<Recovery>,
    },
    /// The socket leaves its namespace.
    Leave(Arc<Socket>, DisconnectReason),
    /// An event for the workers.
    Event {
        socket: Arc<Socket>,
        event: Event<'static>,
    },
    /// The answer to a server emit that the gateway the socket was handed
    /// over by awaits.
    AckElsewhere {
        socket: Arc<Socket>,
        id: u64,
        reply: AckReply,
    },
}

impl Client {
    pub(crate) fn new(
        session: Arc<Session>,
        handshake: EncodedHandshake,
        decoder: Decoder,
        address: Option<crate::address::Slot>,
    ) -> Self {
        Self {
            session,
            _address: address,
            handshake,
            asking: AtomicUsize::new(0),
            moving: std::sync::OnceLock::new(),
            state: Mutex::new(State {
                decoder,
                sockets: HashMap::new(),
                joined: false,
                connecting: HashSet::new(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A message (Socket.IO text) from the client.
    pub(crate) fn message(self: &Arc<Self>, text: &str, rules: Rules<'_>) -> Action {
        let decoded = self.state().decoder.decode_text(text);
        match decoded {
            Ok(Some(packet)) => self.packet(packet, rules),
            Ok(None) => Action::Pending,
            Err(_) => Action::Close(Fault::Parse),
        }
    }

    /// A binary message: the next attachment of a binary packet.
    pub(crate) fn binary(self: &Arc<Self>, data: Bytes, rules: Rules<'_>) -> Action {
        let decoded = self.state().decoder.decode_binary(data);
        match decoded {
            Ok(Some(packet)) => self.packet(packet, rules),
            Ok(None) => Action::Pending,
            Err(_) => Action::Close(Fault::Parse),
        }
    }

    fn packet(self: &Arc<Self>, packet: Packet<'_>, rules: Rules<'_>) -> Action {
        if let Kind::Connect(auth) = packet.kind {
            return self.connect(packet.nsp.into_owned(), auth.map(|a| a.into_owned()), rules);
        }
        let Some(socket) = self.state().sockets.get(packet.nsp.as_ref()).cloned() else {
            // A packet for a namespace the client never joined: the
            // reference server closes the connection.
            return Action::Close(Fault::UnknownNamespace);
        };
        match packet.kind {
            Kind::Disconnect => Action::Leave(socket, DisconnectReason::ClientNamespaceDisconnect),
            Kind::Event(event) => Action::Event {
                socket,
                event: event.into_owned(),
            },
            Kind::Ack(ack) => match socket.resolve_ack(ack) {
                Some((id, reply)) => Action::AckElsewhere { socket, id, reply },
                None => Action::None,
            },
            Kind::Connect(_) | Kind::ConnectError(_) => Action::Close(Fault::Parse),
        }
    }

    fn connect(&self, ns: String, auth: Option<String>, rules: Rules<'_>) -> Action {
        let config = rules.config;
        if namespace_label(config, &ns).is_none() {
            let refusal = Kind::ConnectError(error_object("Invalid namespace").into());
            return Action::Send(socket::frames(&Packet::new(ns, refusal)));
        }
        let authorize = config.authorize.contains(&ns);
        {
            let mut state = self.state();
            if state.sockets.contains_key(&ns) || state.connecting.contains(&ns) {
                return Action::None;
            }
            if state.sockets.len() + state.connecting.len() >= config.max_namespaces {
                drop(state);
                let refusal = Kind::ConnectError(error_object("Too many namespaces").into());
                return Action::Refuse(socket::frames(&Packet::new(ns, refusal)));
            }
            if authorize {
                state.connecting.insert(ns.clone());
            }
        }
        let Ok(id) = SocketId::random(rules.gateway) else {
            return Action::Close(Fault::NoRandomness);
        };
        // The recovery fields are the gateway's, not the application's.
        let (recovery, auth) = match config.connection_state_recovery {
            true => Recovery::take(auth),
            false => (None, auth),
        };
        let pid = match config.connection_state_recovery {
            true => match Pid::random(rules.gateway) {
                Ok(pid) => Some(pid),
                Err(_) => return Action::Close(Fault::NoRandomness),
            },
            false => None,
        };
        let socket = Socket::new(
            id,
            ns.clone(),
            self.session.clone(),
            self.handshake.clone(),
            auth,
            authorize,
        )
        .map(|socket| match pid {
            Some(pid) => socket.recoverable(pid, Log::new(Bounds::of(config), true)),
            None => socket,
        });
        match socket {
            Ok(socket) => Action::Connect {
                socket: Arc::new(socket),
                authorize,
                recovery,
            },
            Err(error) => {
                tracing::error!(%error, "cannot encode a socket context");
                self.decided(&ns);
                Action::None
            }
        }
    }

    /// The workers decided on the connect to `ns`.
    pub(crate) fn decided(&self, ns: &str) {
        self.state().connecting.remove(ns);
    }

    /// Makes an accepted socket one of this client's; false if the session
    /// ended or the namespace was joined meanwhile.
    pub(crate) fn establish(&self, socket: &Arc<Socket>) -> bool {
        let mut state = self.state();
        let live = !self.session.is_closed() && !state.sockets.contains_key(&socket.ns);
        if live {
            state.sockets.insert(socket.ns.clone(), socket.clone());
            state.joined = true;
        }
        live
    }

    /// Takes the socket out of its namespace; false if it was not in it.
    pub(crate) fn remove(&self, socket: &Arc<Socket>) -> bool {
        let mut state = self.state();
        match state.sockets.get(&socket.ns) {
            Some(s) if Arc::ptr_eq(s, socket) => state.sockets.remove(&socket.ns).is_some(),
            _ => false,
        }
    }

    /// What it sent when it opened the session.
    pub(crate) fn handshake(&self) -> &EncodedHandshake {
        &self.handshake
    }

    /// No connect of it is being decided.
    pub(crate) fn connects_decided(&self) -> bool {
        self.state().connecting.is_empty()
    }

    pub(crate) fn socket(&self, ns: &str) -> Option<Arc<Socket>> {
        self.state().sockets.get(ns).cloned()
    }

    pub(crate) fn sockets(&self) -> Vec<Arc<Socket>> {
        self.state().sockets.values().cloned().collect()
    }

    /// Whether any namespace was joined (a client that joins none within
    /// connectTimeout is closed).
    pub(crate) fn joined(&self) -> bool {
        self.state().joined
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
}

/// One client event waiting for its ack; the slot frees on drop.
#[derive(Debug)]
pub(crate) struct Asking(Arc<Client>);

impl Drop for Asking {
    fn drop(&mut self) {
        self.0.asking.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A `connect_error` / ack error payload: `{"message": …}`.
pub(crate) fn error_object(message: &str) -> String {
    serde_json::json!({ "message": message }).to_string()
}

/// The name a namespace is known by in the metrics: its own when it is
/// configured by name, else the first pattern that admits it (a bounded
/// set of labels, whatever names clients make up); `None` if neither
/// admits it.
pub(crate) fn namespace_label<'c>(config: &'c Config, ns: &str) -> Option<&'c str> {
    config
        .namespaces
        .iter()
        .chain(&config.namespace_patterns)
        .find(|n| *n == ns)
        .or_else(|| config.namespace_patterns.iter().find(|p| glob(p, ns)))
        .map(String::as_str)
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

#[cfg(test)]
mod tests {
    use sio_protocol::envelope;

    use super::*;
    use crate::config::Transport;

    type Test = Result<(), Box<dyn std::error::Error>>;

    struct Fixture {
        config: Config,
        gateway: GatewayId,
        client: Arc<Client>,
    }

    impl Fixture {
        fn new(config: Config) -> Result<Self, Box<dyn std::error::Error>> {
            let gateway = GatewayId::random()?;
            let session = crate::session::test_session(gateway, Transport::Websocket, 0)?;
            let handshake = envelope::Handshake {
                address: "127.0.0.1".into(),
                ..Default::default()
            };
            let client = Client::new(
                Arc::new(session),
                EncodedHandshake::new(&handshake)?,
                Decoder::new(1),
                None,
            );
            Ok(Self {
                config,
                gateway,
                client: Arc::new(client),
            })
        }

        fn send(&self, text: &str) -> Action {
            let rules = Rules {
                config: &self.config,
                gateway: self.gateway,
            };
            self.client.message(text, rules)
        }

        /// Connects to `/` and makes the socket live.
        fn joined(&self) -> Arc<Socket> {
            let Action::Connect { socket, .. } = self.send("0") else {
                panic!("no connect");
            };
            assert!(self.client.establish(&socket));
            socket
        }
    }

    fn config(authorize: bool) -> Config {
        Config {
            namespaces: vec!["/".into()],
            authorize: if authorize { vec!["/".into()] } else { vec![] },
            send_queue_packets: 2,
            ..Config::default()
        }
    }

    #[test]
    fn connects_are_checked_then_decided_once() -> Test {
        let f = Fixture::new(config(true))?;
        let Action::Send(refusal) = f.send("0/nope,") else {
            panic!("an unknown namespace is refused");
        };
        assert_eq!(
            refusal,
            [Frame::Text(
                "44/nope,{\"message\":\"Invalid namespace\"}".into()
            )]
        );
        let Action::Connect {
            socket, authorize, ..
        } = f.send("0{\"token\":\"t\"}")
        else {
            panic!("a connect to /");
        };
        assert!(authorize);
        assert!(
            matches!(f.send("0"), Action::None),
            "a repeat while deciding"
        );
        let request: envelope::ConnectRequest = envelope::decode_owned(&socket.connect_request()?)?;
        assert_eq!(
            request.socket.handshake.auth.as_deref(),
            Some("{\"token\":\"t\"}")
        );
        assert_eq!(request.socket.handshake.address, "127.0.0.1");
        f.client.decided("/");
        assert!(f.client.establish(&socket));
        assert!(f.client.joined());
        assert!(matches!(f.send("0"), Action::None), "already joined");
        Ok(())
    }

    #[test]
    fn events_carry_their_socket_and_ack_slots_are_bounded() -> Test {
        let f = Fixture::new(config(false))?;
        let socket = f.joined();
        let Action::Event {
            socket: from,
            event,
        } = f.send("21[\"chat\",\"hi\"]")
        else {
            panic!("an event is for the workers");
        };
        assert!(Arc::ptr_eq(&from, &socket));
        assert_eq!(
            (event.name(), event.data(), event.id),
            ("chat", "[\"chat\",\"hi\"]", Some(1))
        );
        let bytes = socket.events(std::slice::from_ref(&event), Default::default())?;
        let envelope: envelope::Events<'_> = envelope::decode(&bytes)?;
        assert_eq!(envelope.socket.id, socket.id);
        assert!(envelope.events[0].ack);
        // Events opted out of order wait for their acks side by side, as
        // many as the send queue holds.
        let first = f.client.ask(2);
        let second = f.client.ask(2);
        assert!(first.is_some() && second.is_some());
        assert!(f.client.ask(2).is_none(), "the third passes the bound of 2");
        drop(first);
        assert!(f.client.ask(2).is_some(), "an answered one frees its slot");
        Ok(())
    }

    #[test]
    fn bad_packets_end_the_session() -> Test {
        let f = Fixture::new(config(false))?;
        assert!(matches!(
            f.send("2[\"x\"]"),
            Action::Close(Fault::UnknownNamespace)
        ));
        assert!(matches!(f.send("9"), Action::Close(Fault::Parse)));
        let socket = f.joined();
        assert!(matches!(
            f.send("1"),
            Action::Leave(s, DisconnectReason::ClientNamespaceDisconnect) if Arc::ptr_eq(&s, &socket)
        ));
        assert!(f.client.remove(&socket));
        assert!(!f.client.remove(&socket), "once");
        Ok(())
    }

    #[test]
    fn a_binary_event_waits_for_its_attachment() -> Test {
        let f = Fixture::new(config(false))?;
        f.joined();
        let header = r#"51-["up",{"_placeholder":true,"num":0}]"#;
        assert!(matches!(f.send(header), Action::Pending));
        let rules = Rules {
            config: &f.config,
            gateway: f.gateway,
        };
        let Action::Event { event, .. } = f.client.binary(Bytes::from_static(&[1, 2]), rules)
        else {
            panic!("the complete event is for the workers");
        };
        assert_eq!(event.attachments, Some(vec![Bytes::from_static(&[1, 2])]));
        Ok(())
    }

    #[test]
    fn acks_reach_the_emit_waiting_for_them() -> Test {
        let f = Fixture::new(config(false))?;
        let socket = f.joined();
        let (id, mut answer) = socket.expect_ack();
        assert!(matches!(f.send(&format!("3{id}[\"ok\"]")), Action::None));
        assert_eq!(answer.try_recv()?.data, "[\"ok\"]");
        Ok(())
    }

    #[test]
    fn namespaces_per_client_are_capped() -> Test {
        let mut config = config(true);
        config.namespace_patterns = vec!["/room-*".into()];
        // Asked of the workers, so that they count while being decided.
        config.authorize = vec!["/room-1".into(), "/room-2".into(), "/room-3".into()];
        config.max_namespaces = 2;
        let f = Fixture::new(config)?;
        assert!(matches!(f.send("0/room-1,"), Action::Connect { .. }));
        assert!(
            matches!(f.send("0/room-2,"), Action::Connect { .. }),
            "deciding counts too"
        );
        let Action::Refuse(frames) = f.send("0/room-3,") else {
            panic!("the third is one too many");
        };
        assert_eq!(
            frames,
            [Frame::Text(
                "44/room-3,{\"message\":\"Too many namespaces\"}".into()
            )]
        );
        f.client.decided("/room-1");
        assert!(
            matches!(f.send("0/room-3,"), Action::Connect { .. }),
            "a slot freed"
        );
        Ok(())
    }

    #[test]
    fn metrics_label_namespaces_by_what_admitted_them() {
        let config = Config {
            namespaces: vec!["/".into(), "/chat".into()],
            namespace_patterns: vec!["/room-*".into(), "*".into()],
            ..Config::default()
        };
        assert_eq!(namespace_label(&config, "/chat"), Some("/chat"));
        assert_eq!(namespace_label(&config, "/room-42"), Some("/room-*"));
        assert_eq!(namespace_label(&config, "/other"), Some("*"));
        let closed = Config::default();
        assert_eq!(namespace_label(&closed, "/other"), None);
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
