//! The chat page in a real browser (Debian's headless Chromium, driven by
//! playwright-core from the pinned package-lock): two pages, one message.
//! The screenshot is kept in `target/test-artifacts/chat.png`.

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

fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.exists(),
        "Chromium not found at {}: install it with `apt-get install -y chromium`",
        path.display()
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_in_two_browser_pages() {
    let chromium = chromium();
    let bundle = sio_demo::client_bundle().expect("the socket.io browser client");
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
    config.ping_interval = 5_000;
    config.ping_timeout = 5_000;
    let gw = TestGateway::start_app(config, bus.bus.clone(), |gateway| {
        sio_demo::app(gateway, bundle)
    })
    .await;
    let workers = sio_demo::worker().start(bus.bus.clone()).await.unwrap();
    let artifacts = root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("chat.png");
    let _ = std::fs::remove_file(&screenshot);
    let url = format!("http://{}", gw.addr);
    let output = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .args([
                "120",
                "node",
                "--test",
                "--test-reporter=spec",
                "tests/browser/",
            ])
            .env("SIO_URL", url)
            .env("CHROMIUM", chromium)
            .env("SCREENSHOT", &screenshot)
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
    assert!(
        output.status.success(),
        "the browser test failed:\n{report}"
    );
    assert!(report.lines().any(|l| l.trim() == "ℹ fail 0"), "{report}");
    let png = std::fs::read(artifacts.join("chat.png")).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    workers.shutdown().await;
}
