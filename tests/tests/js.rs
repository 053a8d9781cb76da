//! The stock `socket.io-client` (Node, pinned in the committed
//! package-lock) against the demo apps: once all in one process on the
//! in-process bus, once over a real nats-server with a gateway and two
//! workers each on its own NATS connection.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use sio_bus::Bus;
use sio_gateway::Config;
use sio_tests::{BusKind, TestGateway, test_config};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Installs the pinned client once (npm ci) if it is not there yet.
fn node_modules() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if root()
            .join("node_modules/socket.io-client/package.json")
            .exists()
        {
            return;
        }
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(root())
            .status()
            .expect("npm (Node 20) is needed for the end-to-end suite");
        assert!(status.success(), "npm ci failed");
    });
}

fn demo_config() -> Config {
    let mut config = test_config();
    config.namespaces = sio_demo::NAMESPACES
        .iter()
        .map(|n| (*n).to_owned())
        .collect();
    config.authorize = sio_demo::AUTHORIZE
        .iter()
        .map(|n| (*n).to_owned())
        .collect();
    config.ping_interval = 2_000;
    config.ping_timeout = 2_000;
    config.max_http_buffer_size = 1_000_000;
    config
}

/// Runs the Node suite against `url`; fails with its output.
async fn run_suite(url: String) {
    node_modules();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .args(["120", "node", "--test", "--test-reporter=spec", "tests/js/"])
            .env("SIO_URL", url)
            .current_dir(root())
            .output()
            .expect("node")
    })
    .await
    .unwrap();
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "the Node suite failed:\n{report}");
    assert!(report.lines().any(|l| l.trim() == "ℹ fail 0"), "{report}");
    println!("{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_client_against_everything_in_one_process() {
    let bus = BusKind::Memory.start().await;
    let gw = TestGateway::start(demo_config(), bus.bus.clone()).await;
    let workers = sio_demo::worker().start(bus.bus.clone()).await.unwrap();
    run_suite(format!("http://{}", gw.addr)).await;
    workers.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_client_against_nats_with_two_workers() {
    let bus = BusKind::Nats.start().await;
    let server = bus.server.as_ref().unwrap();
    let gw = TestGateway::start(demo_config(), bus.bus.clone()).await;
    let mut workers = Vec::new();
    for _ in 0..2 {
        let connection: Arc<dyn Bus> = sio_tests::harness::connect(server).await;
        workers.push(sio_demo::worker().start(connection).await.unwrap());
    }
    run_suite(format!("http://{}", gw.addr)).await;
    for worker in workers {
        worker.shutdown().await;
    }
}
