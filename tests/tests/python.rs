//! A second, independent client: python-socketio (pinned in
//! tests/python/requirements.txt) against the demo apps on the gateway.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use sio_tests::{BusKind, TestGateway, test_config};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

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
    let gw = TestGateway::start(config, bus.bus.clone()).await;
    let workers = sio_demo::worker().start(bus.bus.clone()).await.unwrap();
    let url = format!("http://{}", gw.addr);
    let output = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .args(["120", "python3", "tests/python/client_suite.py"])
            .env("SIO_URL", url)
            .current_dir(root())
            .output()
            .expect("python3")
    })
    .await
    .unwrap();
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "the python-socketio suite failed:\n{report}"
    );
    assert!(report.contains("6 passed, 0 failed"), "{report}");
    workers.shutdown().await;
}
