//! The stock `socket.io-client` (Node, pinned in the committed
//! package-lock) against the demo apps: once all in one process on the
//! in-process bus, once over a real nats-server with a gateway and two
//! workers each on its own NATS connection. (`processes.rs` runs the same
//! suite against separate processes.)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;

use sio_bus::Bus;
use sio_tests::harness::{connect, demo_config, node_suite};
use sio_tests::{BusKind, TestGateway};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_client_against_everything_in_one_process() {
    let bus = BusKind::Memory.start().await;
    let gw = TestGateway::start(demo_config(), bus.bus.clone()).await;
    let workers = sio_demo::worker().start(bus.bus.clone()).await.unwrap();
    node_suite("tests/js/", &format!("http://{}", gw.addr), &[]).await;
    workers.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_client_against_nats_with_two_workers() {
    let bus = BusKind::Nats.start().await;
    let server = bus.server.as_ref().unwrap();
    let gw = TestGateway::start(demo_config(), bus.bus.clone()).await;
    let mut workers = Vec::new();
    for _ in 0..2 {
        let connection: Arc<dyn Bus> = connect(server).await;
        workers.push(sio_demo::worker().start(connection).await.unwrap());
    }
    node_suite("tests/js/", &format!("http://{}", gw.addr), &[]).await;
    for worker in workers {
        worker.shutdown().await;
    }
}
