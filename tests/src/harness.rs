//! Gateways under test, on `127.0.0.1:0`, on either bus.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sio_bus::{Bus, MemoryBus, NatsBus, NatsOptions, State};
use sio_gateway::{Config, Gateway};
use tokio::sync::oneshot;

use crate::NatsServer;

/// Which bus a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusKind {
    Memory,
    Nats,
}

/// A bus for a test; holds the nats-server it runs on, if any.
#[derive(Debug)]
pub struct TestBus {
    pub bus: Arc<dyn Bus>,
    pub server: Option<NatsServer>,
}

impl BusKind {
    pub async fn start(self) -> TestBus {
        match self {
            BusKind::Memory => TestBus {
                bus: Arc::new(MemoryBus::default()),
                server: None,
            },
            BusKind::Nats => {
                let server = NatsServer::start().expect("nats-server");
                let bus = connect(&server).await;
                TestBus {
                    bus,
                    server: Some(server),
                }
            }
        }
    }
}

/// A second connection to the same NATS server (a worker's, say).
pub async fn connect(server: &NatsServer) -> Arc<dyn Bus> {
    let bus = NatsBus::connect(&NatsOptions {
        urls: vec![server.url()],
        ..NatsOptions::default()
    })
    .await
    .expect("connect to nats");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while bus.state() != State::Connected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "NATS never connected"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Arc::new(bus)
}

/// The defaults with short timers, so tests about them stay fast.
pub fn test_config() -> Config {
    Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ping_interval: 300,
        ping_timeout: 200,
        connect_timeout: 2_000,
        upgrade_timeout: 1_000,
        connect_request_timeout: 1_000,
        ack_timeout: 1_000,
        heartbeat_interval: 200,
        drain_timeout: 1_000,
        namespaces: vec!["/".into(), "/chat".into()],
        ..Config::default()
    }
}

/// A gateway serving on a free loopback port until dropped.
#[derive(Debug)]
pub struct TestGateway {
    pub gateway: Gateway,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestGateway {
    pub async fn start(config: Config, bus: Arc<dyn Bus>) -> Self {
        Self::start_app(config, bus, Gateway::router).await
    }

    /// A gateway serving `app(&gateway)`: its routes plus an app's own.
    pub async fn start_app(
        config: Config,
        bus: Arc<dyn Bus>,
        app: impl FnOnce(&Gateway) -> axum::Router,
    ) -> Self {
        let listener = sio_gateway::bind(config.listen, config.backlog).expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let gateway = Gateway::new(config, bus).await.expect("gateway");
        let app = app(&gateway);
        let (stop, stopped) = oneshot::channel();
        let serving = gateway.clone();
        let task = tokio::spawn(async move {
            let _ = serving
                .serve_with(listener, app, async {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            gateway,
            addr,
            stop: Some(stop),
            task,
        }
    }

    /// Starts the graceful drain, as SIGTERM does.
    pub fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}
