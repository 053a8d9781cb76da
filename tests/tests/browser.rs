//! The chat page in a real browser (Debian's headless Chromium, driven by
//! playwright-core from the pinned package-lock): two pages, one message.
//! The screenshot is kept in `target/test-artifacts/chat.png`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

use sio_tests::harness::{demo_config, node_suite, root};
use sio_tests::{BusKind, TestGateway};

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
    let gw = TestGateway::start_app(demo_config(), bus.bus.clone(), |gateway| {
        sio_demo::app(gateway, bundle)
    })
    .await;
    let workers = sio_demo::worker().start(bus.bus.clone()).await.unwrap();
    let artifacts = root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("chat.png");
    let _ = std::fs::remove_file(&screenshot);
    let env = [
        ("CHROMIUM", chromium.to_str().unwrap()),
        ("SCREENSHOT", screenshot.to_str().unwrap()),
    ];
    node_suite("tests/browser/", &format!("http://{}", gw.addr), &env).await;
    let png = std::fs::read(&screenshot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    workers.shutdown().await;
}
