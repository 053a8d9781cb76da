//! Gateway configuration: every option with socket.io's name and default.
//!
//! Sources, highest precedence first: command-line flags, `SIO_*`
//! environment variables, the TOML file given by `--config`, built-in
//! defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// An Engine.IO transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Polling,
    Websocket,
}

impl Transport {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "polling" => Some(Self::Polling),
            "websocket" => Some(Self::Websocket),
            _ => None,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Polling => "polling",
            Self::Websocket => "websocket",
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Everything the gateway can be told.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// A second address serving `/health`, `/ready` and `/metrics` alone,
    /// outside the client connections' cap, so they answer when clients
    /// have taken every connection they may.
    pub ops_listen: Option<SocketAddr>,
    /// Path the Engine.IO endpoint is mounted at.
    pub path: String,

    /// NATS server URLs; empty runs on the in-process bus.
    pub nats: Vec<String>,
    pub nats_name: Option<String>,
    pub nats_token: Option<String>,
    pub nats_user: Option<String>,
    pub nats_password: Option<String>,
    pub nats_nkey: Option<String>,
    pub nats_creds: Option<PathBuf>,
    pub nats_tls: bool,
    pub nats_tls_ca: Option<PathBuf>,
    pub nats_tls_cert: Option<PathBuf>,
    pub nats_tls_key: Option<PathBuf>,
    /// Subject prefix, so several apps can share one NATS.
    pub prefix: String,

    /// Milliseconds between server pings (pingInterval).
    pub ping_interval: u64,
    /// Milliseconds to wait for a pong (pingTimeout).
    pub ping_timeout: u64,
    /// Milliseconds an upgrade may take (upgradeTimeout).
    pub upgrade_timeout: u64,
    /// Largest message or polling body in bytes (maxHttpBufferSize).
    pub max_http_buffer_size: usize,
    /// Milliseconds a session may stay without joining a namespace
    /// (connectTimeout).
    pub connect_timeout: u64,
    /// Allowed transports (transports).
    pub transports: Vec<Transport>,
    /// Whether polling sessions may upgrade to websocket (allowUpgrades).
    pub allow_upgrades: bool,

    /// CORS: allowed origins (`*` for any); empty disables CORS headers.
    pub cors_origins: Vec<String>,
    pub cors_credentials: bool,
    pub cors_methods: Vec<String>,

    /// Set the session cookie (what cookie-based sticky balancing needs).
    pub cookie: bool,
    pub cookie_name: String,
    pub cookie_path: String,
    pub cookie_http_only: bool,
    /// `Strict`, `Lax` or `None`.
    pub cookie_same_site: String,

    /// Take the client address from `X-Forwarded-For` / `Forwarded`.
    pub trust_proxy: bool,

    /// Namespaces clients may join.
    pub namespaces: Vec<String>,
    /// Patterns for dynamic namespaces: `*` matches any run of characters.
    pub namespace_patterns: Vec<String>,
    /// Namespaces whose connects the workers must accept (over
    /// `P.conn.<ns>`); others are accepted at once and workers notified.
    pub authorize: Vec<String>,
    /// Milliseconds to wait for a worker to accept or refuse a connect.
    pub connect_request_timeout: u64,
    /// Milliseconds to wait for an ack its handler makes after returning,
    /// and for the ack of an event opted out of order.
    pub ack_timeout: u64,
    /// Milliseconds a worker may hold a client event without a word before
    /// the event is handed to another worker; workers renew the lease every
    /// third of it while the handler runs.
    pub event_lease: u64,
    /// Most times the worker holding a client event may go silent past its
    /// lease (each time the event goes to another); one more and its
    /// client is told (an error ack), counted.
    pub event_attempts: u32,
    /// Milliseconds a socket's next event (or its disconnect) waits for the
    /// bus to come back before its client is told it was not handled.
    pub event_timeout: u64,
    /// Most events of one socket waiting behind the one being handled;
    /// past it they get an error ack (or are dropped), counted.
    pub event_queue: usize,
    /// Most bytes of those waiting events.
    pub event_queue_bytes: usize,

    /// Most concurrent client sessions (a new one past it gets 503); with
    /// connection state recovery, also the most sockets waiting for their
    /// clients (one more leaves at once, counted).
    pub max_connections: usize,
    /// Most open TCP connections (a polling client may hold two); one more
    /// is closed at once.
    pub max_tcp_connections: usize,
    /// Most connections one client address holds at once; 0 for no limit.
    /// By TCP peer, or with `trust_proxy` by the reported address, counting
    /// sessions.
    pub max_connections_per_address: usize,
    /// Most new connections one client address opens per second; 0 for
    /// no limit. Counted as `max_connections_per_address` is.
    pub connections_per_second_per_address: u32,
    /// Milliseconds a request's headers may take to arrive, from the
    /// connection's opening or the request's first byte.
    pub header_timeout: u64,
    /// Milliseconds a keep-alive connection may sit idle between requests,
    /// and a request may take to be served; longer than pingInterval +
    /// pingTimeout, so polling clients are never cut between requests.
    pub idle_timeout: u64,
    /// Listen backlog.
    pub backlog: u32,
    /// Most packets queued for one client before it is cut.
    pub send_queue_packets: usize,
    /// Most bytes queued for one client before it is cut.
    pub send_queue_bytes: usize,
    /// Websocket read buffer per connection, bytes. Allocated up front for
    /// every connection, so it dominates idle memory; larger messages grow
    /// it as needed.
    pub ws_read_buffer: usize,
    /// Websocket write buffer per connection, bytes: queued frames are
    /// written in chunks of this size. Grows only when used.
    pub ws_write_buffer: usize,
    /// Most attachments in one binary packet.
    pub max_attachments: usize,
    /// Most namespaces one client may join (or be joining) at once: each
    /// holds a socket, and a client of `--namespace-patterns` could
    /// otherwise open any number.
    pub max_namespaces: usize,

    /// Connection state recovery (connectionStateRecovery): a socket whose
    /// transport is lost stays, with its rooms, for
    /// `max_disconnection_duration`, keeping what is emitted to it, and a
    /// client that comes back with its pid gets it back.
    pub connection_state_recovery: bool,
    /// Milliseconds a disconnected socket stays recoverable
    /// (maxDisconnectionDuration); its workers hear of the disconnect when
    /// this ends without a recovery.
    pub max_disconnection_duration: u64,
    /// A recovered socket is not asked of the workers again
    /// (skipMiddlewares).
    pub skip_middlewares: bool,
    /// Most packets kept for one socket to recover from (the oldest go
    /// first; a client further behind is not recovered).
    pub recovery_packets: usize,
    /// Most bytes of those packets.
    pub recovery_bytes: usize,
    /// Most bytes of packets kept for recovery on this gateway in all
    /// (each packet counted once, however many sockets keep it); past it,
    /// a socket that misses one is no longer recoverable.
    pub recovery_memory: usize,
    /// Copies of the sockets' records and the emits in a NATS cluster's
    /// JetStream.
    pub jetstream_replicas: usize,
    /// Most bytes of emits JetStream keeps (stream `<prefix>_emits`) for
    /// the recovery of a dead gateway's sockets.
    pub jetstream_max_bytes: u64,

    /// Milliseconds between presence heartbeats on `P.hb`.
    pub heartbeat_interval: u64,
    /// Milliseconds a graceful drain may take before the process exits.
    pub drain_timeout: u64,

    pub log_format: LogFormat,
    /// A tracing filter such as `info` or `sio_gateway=debug`.
    pub log_level: String,
}

impl Config {
    pub(crate) fn per_address(&self) -> crate::address::Limits {
        crate::address::Limits {
            concurrent: self.max_connections_per_address,
            per_second: self.connections_per_second_per_address,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 3000)),
            ops_listen: None,
            path: "/socket.io/".into(),
            nats: Vec::new(),
            nats_name: None,
            nats_token: None,
            nats_user: None,
            nats_password: None,
            nats_nkey: None,
            nats_creds: None,
            nats_tls: false,
            nats_tls_ca: None,
            nats_tls_cert: None,
            nats_tls_key: None,
            prefix: "sio".into(),
            ping_interval: 25_000,
            ping_timeout: 20_000,
            upgrade_timeout: 10_000,
            max_http_buffer_size: 1_000_000,
            connect_timeout: 45_000,
            transports: vec![Transport::Polling, Transport::Websocket],
            allow_upgrades: true,
            cors_origins: Vec::new(),
            cors_credentials: false,
            cors_methods: vec!["GET".into(), "POST".into()],
            cookie: false,
            cookie_name: "io".into(),
            cookie_path: "/".into(),
            cookie_http_only: true,
            cookie_same_site: "Lax".into(),
            trust_proxy: false,
            namespaces: vec!["/".into()],
            namespace_patterns: Vec::new(),
            authorize: Vec::new(),
            connect_request_timeout: 5_000,
            ack_timeout: 10_000,
            event_lease: 5_000,
            event_attempts: 3,
            event_timeout: 10_000,
            event_queue: 1024,
            event_queue_bytes: 1 << 20,
            max_connections: 100_000,
            max_tcp_connections: 120_000,
            max_connections_per_address: 0,
            connections_per_second_per_address: 0,
            header_timeout: 10_000,
            idle_timeout: 50_000,
            backlog: 1024,
            send_queue_packets: 1024,
            send_queue_bytes: 4 << 20,
            ws_read_buffer: 1024,
            ws_write_buffer: 4096,
            max_attachments: 64,
            max_namespaces: 32,
            connection_state_recovery: false,
            max_disconnection_duration: 120_000,
            skip_middlewares: true,
            recovery_packets: 1024,
            recovery_bytes: 1 << 20,
            recovery_memory: 64 << 20,
            jetstream_replicas: 1,
            jetstream_max_bytes: 1 << 30,
            heartbeat_interval: 5_000,
            drain_timeout: 10_000,
            log_format: LogFormat::Text,
            log_level: "info".into(),
        }
    }
}

/// Milliseconds as a `Duration`.
pub(crate) const fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}
