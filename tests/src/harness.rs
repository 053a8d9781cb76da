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

/// The repository root (for the JavaScript and Python suites).
pub fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Installs the pinned JavaScript packages once (`npm ci`) if missing.
pub fn npm_ci() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if root()
            .join("node_modules/socket.io-client/package.json")
            .exists()
        {
            return;
        }
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(root())
            .status()
            .expect("npm (Node 20) is needed for the end-to-end suites");
        assert!(status.success(), "npm ci failed");
    });
}

/// The gateway configuration the demo apps need, with test timers.
pub fn demo_config() -> Config {
    let mut config = test_config();
    config.namespaces = sio_demo::NAMESPACES
        .iter()
        .map(|n| (*n).to_owned())
        .collect();
    config.authorize = sio_demo::AUTHORIZE
        .iter()
        .map(|n| (*n).to_owned())
        .collect();
    config.ping_interval = 5_000;
    config.ping_timeout = 5_000;
    config
}

/// Runs a program to its end (at most 120 s) from the repository root
/// with `env`; fails with its output unless it succeeds. Returns the
/// output.
pub async fn run_program(program: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut command = std::process::Command::new("timeout");
    command
        .arg("120")
        .arg(program)
        .args(args)
        .current_dir(root());
    for (k, v) in env {
        command.env(k, v);
    }
    let name = program.to_owned();
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{report}"
    );
    report
}

/// Runs a Node test directory against `url`; fails unless every test passed.
pub async fn node_suite(dir: &str, url: &str, env: &[(&str, &str)]) {
    npm_ci();
    let mut all = vec![("SIO_URL", url)];
    all.extend_from_slice(env);
    let report = run_program("node", &["--test", "--test-reporter=spec", dir], &all).await;
    assert!(report.lines().any(|l| l.trim() == "ℹ fail 0"), "{report}");
}

/// Runs one check on the in-process bus and on NATS: `on_both_buses!(f, g)`
/// makes modules `f` and `g` with tests `memory` and `nats` that call
/// `f(BusKind::Memory)` and `f(BusKind::Nats)`.
#[macro_export]
macro_rules! on_both_buses {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn memory() {
                super::$name($crate::BusKind::Memory).await;
            }

            #[tokio::test]
            async fn nats() {
                super::$name($crate::BusKind::Nats).await;
            }
        }
    )*};
}

/// Installs the pinned client if it is not importable yet.
fn python_client() {
    let present = std::process::Command::new("python3")
        .args(["-c", "import socketio, websocket"])
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        let status = std::process::Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "-q",
                "-r",
                "tests/python/requirements.txt",
            ])
            .current_dir(root())
            .status()
            .expect("python3 with pip is needed for the python-socketio suite");
        assert!(status.success(), "pip install failed");
    }
}

/// python-socketio's suite (`tests/python/client_suite.py`) against the
/// demo apps at `url`, installing the pinned client first; every case
/// must pass.
pub async fn python_suite(url: &str) {
    python_client();
    let report = run_program(
        "python3",
        &["tests/python/client_suite.py"],
        &[("SIO_URL", url)],
    )
    .await;
    assert!(report.contains("6 passed, 0 failed"), "{report}");
}
