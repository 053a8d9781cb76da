//! A second, independent client: python-socketio (pinned in
//! tests/python/requirements.txt) against the demo apps on the gateway.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use sio_tests::harness::{demo_config, python_suite};
use sio_tests::{BusKind, TestGateway};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_socketio_client() {
    let bus = BusKind::Memory.start().await;
    let gw = TestGateway::start(demo_config(), bus.bus.clone()).await;
    let workers = sio_demo::worker().start(bus.bus.clone()).await.unwrap();
    let url = format!("http://{}", gw.addr);
    python_suite(&url).await;
    workers.shutdown().await;
}
