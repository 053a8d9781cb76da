//! A second, independent client: python-socketio (pinned in
//! tests/python/requirements.txt) against the demo apps on the gateway.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use sio_tests::harness::{demo_config, python_client, run_program};
use sio_tests::{BusKind, TestGateway};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_socketio_client() {
    python_client();
    let bus = BusKind::Memory.start().await;
    let gw = TestGateway::start(demo_config(), bus.bus.clone()).await;
    let workers = sio_demo::worker().start(bus.bus.clone()).await.unwrap();
    let url = format!("http://{}", gw.addr);
    let report = run_program(
        "python3",
        &["tests/python/client_suite.py"],
        &[("SIO_URL", &url)],
    )
    .await;
    assert!(report.contains("6 passed, 0 failed"), "{report}");
    workers.shutdown().await;
}
