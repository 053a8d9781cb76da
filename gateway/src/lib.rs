//! The gateway: terminates Engine.IO v4 polling and websocket transports
//! for stock Socket.IO clients, owns sessions keyed by sid and the local
//! room index, publishes client events to the bus and delivers emits to
//! its local members. It holds no application logic.
//!
//! Data flow: [`http`](crate) accepts a request → a transport decodes
//! Engine.IO packets into the session → the client's Socket.IO core decodes
//! Socket.IO packets and decides (an `Action`) → the dispatch publishes
//! events on `P.ev.<ns>.<event>` → workers answer acks and emit on
//! `P.room.*` / `P.ns.*` / `P.gw.<id>` → the gateway frames each emit once
//! and queues it to every local recipient's bounded outbox. The layers and
//! where a change goes: `gateway/README.md`.
//!
//! Embed it in another axum app with [`Gateway::router`], or run the
//! binary `sio-gateway`.

#![forbid(unsafe_code)]

mod address;
mod cli;
mod client;
mod command;
pub mod config;
mod connection;
mod control;
mod delivery;
mod dispatch;
mod event;
mod fault;
mod handover;
mod heartbeat;
mod history;
mod http;
pub mod logging;
mod metrics;
mod node;
mod outbox;
mod parked;
mod presence;
mod queue;
mod records;
mod recover;
mod recovery;
mod registry;
mod replies;
mod rooms;
mod session;
mod socket;
mod timer;
mod transport;

use std::net::SocketAddr;
use std::sync::Arc;

use sio_bus::{Bus, MemoryBus, NatsBus, NatsOptions};
use sio_protocol::id::GatewayId;
use sio_protocol::subject::Subjects;

pub use cli::ConfigError;
pub use config::Config;
pub use records::NoJetStream;

/// What can stop a gateway from starting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("bus: {0}")]
    Bus(#[from] sio_bus::Error),
    #[error("invalid subject prefix: {0}")]
    Prefix(#[from] sio_protocol::subject::SubjectError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    JetStream(#[from] NoJetStream),
    #[error("no randomness for the gateway id")]
    Random(#[from] sio_protocol::id::NoRandomness),
}

/// A running gateway: its state, its bus subscriptions and its HTTP
/// routes.
#[derive(Debug, Clone)]
pub struct Gateway {
    node: Arc<node::Node>,
}

impl Gateway {
    /// Starts a gateway on `bus`: subscribes to its command subject and
    /// starts announcing itself.
    pub async fn new(config: Config, bus: Arc<dyn Bus>) -> Result<Self, Error> {
        let subjects = Subjects::new(&config.prefix)?;
        let id = GatewayId::random()?;
        let address = config.listen.to_string();
        let node = Arc::new(node::Node::new(config, bus, id, subjects));
        let errors = node.metrics.bus_errors.clone();
        let heartbeats = node.bus.subscribe(node.subjects.heartbeat()).await?;
        if node.config.connection_state_recovery {
            // Recovery over NATS needs JetStream: no start without it.
            if let Some(records) = records::Records::open(&node.bus, &node.config, errors).await? {
                let durable = records::Durable::open(&node.bus, &node.config, &records).await?;
                let _ = node.records.set(records);
                if let Some(durable) = durable {
                    let _ = node.durable.set(durable);
                    tokio::spawn(history::watch(Arc::downgrade(&node)));
                }
                tokio::spawn(presence::watch(Arc::downgrade(&node), heartbeats));
            }
        } else {
            tokio::spawn(presence::keep_records(Arc::downgrade(&node), heartbeats));
        }
        let _ = node.inherit.set(command::serve_gone);
        let weak = Arc::downgrade(&node);
        let commands = node.bus.subscribe(node.subjects.served(id)).await?;
        tokio::spawn(command::serve(
            weak.clone(),
            commands,
            Some(transport::polling::forwarded),
        ));
        let heartbeats = node.bus.subscribe(node.subjects.heartbeat()).await?;
        tokio::spawn(command::inherit(weak.clone(), heartbeats));
        let control = node.bus.subscribe(node.subjects.control()).await?;
        tokio::spawn(control::serve(weak.clone(), control));
        let replies = node.bus.subscribe(node.replies.subject()).await?;
        tokio::spawn(replies::serve(node.replies.clone(), replies));
        tokio::spawn(event::watch(weak.clone()));
        if node.config.connection_state_recovery {
            tokio::spawn(recover::expire(weak.clone()));
        }
        node.bus.flush().await?;
        tokio::spawn(presence::announce(weak.clone(), address));
        tokio::spawn(heartbeat::run(weak, node.timer.clone(), node.epoch));
        tracing::info!(gateway = %id, "gateway started");
        Ok(Self { node })
    }

    /// Connects the bus the configuration names: NATS when URLs are given,
    /// else a new in-process bus.
    pub async fn connect_bus(config: &Config) -> Result<Arc<dyn Bus>, Error> {
        if config.nats.is_empty() {
            return Ok(Arc::new(MemoryBus::default()));
        }
        let options = NatsOptions {
            urls: config.nats.clone(),
            name: config
                .nats_name
                .clone()
                .or_else(|| Some("sio-gateway".into())),
            token: config.nats_token.clone(),
            user: config.nats_user.clone(),
            password: config.nats_password.clone(),
            nkey: config.nats_nkey.clone(),
            credentials: config.nats_creds.clone(),
            tls: config.nats_tls,
            tls_ca: config.nats_tls_ca.clone(),
            tls_cert: config.nats_tls_cert.clone(),
            tls_key: config.nats_tls_key.clone(),
        };
        Ok(Arc::new(NatsBus::connect(&options).await?))
    }

    pub fn id(&self) -> GatewayId {
        self.node.id
    }

    /// The routes: the Engine.IO path, `/health`, `/ready`, `/metrics`.
    /// Serve with `into_make_service_with_connect_info::<SocketAddr>()`.
    pub fn router(&self) -> axum::Router {
        http::router(self.node.clone())
    }

    /// Stops accepting sessions, closes every session so its client
    /// reconnects elsewhere, and waits for them (bounded by the drain
    /// timeout).
    pub async fn drain(&self) {
        let node = &self.node;
        node.start_draining();
        let clients = node.registry.clients();
        for client in &clients {
            node.close(&client.session, fault::Fault::ShuttingDown);
        }
        let deadline = tokio::time::Instant::now() + config::ms(node.config.drain_timeout);
        // A transport holds the session's reader until it has sent the
        // close; with recovery over NATS, clients come back to other
        // gateways, which take their parked sockets from here.
        let others = node.durable.get().is_some();
        while tokio::time::Instant::now() < deadline
            && (clients
                .iter()
                .any(|c| c.session.outbox.try_reader().is_none())
                || (others && recover::parked_count(node) > 0))
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // What nobody came for goes with this process: its workers hear so.
        recover::release_all(node);
        if let Some(records) = node.records.get() {
            records.flush().await;
        }
        // What was published last (replies, disconnects) leaves with it.
        let _ = tokio::time::timeout(delivery::CATCH_UP, node.bus.flush()).await;
    }

    /// Serves on `listener` until `shutdown` resolves, then drains.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        self.serve_with(listener, self.router(), shutdown).await
    }

    /// [`Gateway::serve`] for an app that adds its own routes to
    /// [`Gateway::router`]. Every connection is counted and bounded in time
    /// (see `--header-timeout`, `--idle-timeout`, `--max-tcp-connections`).
    pub async fn serve_with(
        &self,
        listener: tokio::net::TcpListener,
        app: axum::Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        // New requests during the drain are answered (503), not refused.
        let drained = async {
            shutdown.await;
            tracing::info!("draining");
            self.drain().await;
        };
        let ops = match self.node.config.ops_listen {
            Some(addr) => {
                let ops = bind(addr, 64)?;
                let (stop_ops, stopped) = tokio::sync::oneshot::channel::<()>();
                let node = self.node.clone();
                let routes = http::operations(node.clone());
                tokio::spawn(async move {
                    let stopped = async {
                        let _ = stopped.await;
                    };
                    let _ =
                        connection::accept(&node, (ops, connection::OPS), routes, stopped).await;
                });
                Some(stop_ops)
            }
            None => None,
        };
        let clients = connection::clients(&self.node.config);
        let stop = connection::accept(&self.node, (listener, clients), app, drained).await;
        // Keep-alive connections close after their request; websockets
        // were closed by the drain. Bounded like the drain.
        let _ = stop.send(true);
        let deadline = tokio::time::Instant::now()
            + config::ms(self.node.config.drain_timeout)
            + std::time::Duration::from_secs(1);
        let open = self
            .node
            .metrics
            .tcp_connections
            .get_or_create(&metrics::ListenerLabel {
                listener: "clients",
            })
            .clone();
        while open.get() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        drop(ops);
        Ok(())
    }
}

/// Binds a listener with an explicit backlog.
pub fn bind(addr: SocketAddr, backlog: u32) -> Result<tokio::net::TcpListener, Error> {
    let listen = |source| Error::Listen { addr, source };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(listen)?;
    socket.set_reuseaddr(true).map_err(listen)?;
    socket.bind(addr).map_err(listen)?;
    socket.listen(backlog).map_err(listen)
}

/// Raises the descriptor limit to the hard limit and logs it: each client
/// holds one or two.
fn descriptors() {
    let before = rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft);
    match (before, rlimit::increase_nofile_limit(u64::MAX)) {
        (Ok(before), Ok(now)) if now > before => {
            tracing::info!(limit = now, raised_from = before, "file descriptors");
        }
        (_, Ok(now)) => tracing::info!(limit = now, "file descriptors"),
        (_, Err(error)) => tracing::warn!(%error, "cannot read the file descriptor limit"),
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// Runs a gateway as configured until SIGTERM or SIGINT, then drains.
pub async fn run(config: Config) -> Result<(), Error> {
    descriptors();
    let bus = Gateway::connect_bus(&config).await?;
    let listener = bind(config.listen, config.backlog)?;
    let gateway = Gateway::new(config.clone(), bus).await?;
    tracing::info!(
        "listening on http://{}{} ({})",
        listener.local_addr()?,
        config.path,
        if config.nats.is_empty() {
            "in-process bus"
        } else {
            "NATS"
        }
    );
    gateway.serve(listener, shutdown_signal()).await
}

/// The `sio-gateway` program: configuration from `args`, the environment
/// and the file; logs; serve until SIGTERM or SIGINT.
pub async fn main_with<I, T>(args: I) -> std::process::ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let config = match Config::load(args) {
        Ok(config) => config,
        Err(error) => return error.report(),
    };
    if let Err(error) = logging::init(config.log_format, &config.log_level) {
        eprintln!("sio-gateway: {error}");
        return std::process::ExitCode::FAILURE;
    }
    match run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "gateway stopped");
            eprintln!("sio-gateway: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
