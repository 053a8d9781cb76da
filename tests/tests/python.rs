//! A second, independent client: python-socketio (pinned in
//! tests/python/requirements.txt) against the demo apps on the gateway.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Command;

use sio_tests::harness::{demo_config, root, run_program};
use sio_tests::{BusKind, TestGateway};

/// Installs the pinned client if it is not importable yet.
fn python_client() {
    let present = Command::new("python3")
        .args(["-c", "import socketio, websocket"])
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        let status = Command::new("python3")
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
