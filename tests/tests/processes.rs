//! The real deployment: nats-server, a `sio-gateway` process and two
//! `chat-worker` processes. The stock client's suite runs against it, an
//! emit comes from a process of its own, a client reconnects across a
//! gateway restart, and both workers of the queue group take work.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::process::Command;

use sio_tests::NatsServer;
use sio_tests::harness::{node_suite, npm_ci};
use sio_tests::process::{Process, free_addr, gateway_args, ready};
use sio_tests::raw::Ws;

fn gateway(nats: &str, addr: SocketAddr) -> Process {
    let args = gateway_args(nats, addr);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Process::start(env!("CARGO_BIN_EXE_gateway-process"), &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_gateway_and_two_worker_processes() {
    npm_ci();
    let nats = NatsServer::start().expect("nats-server");
    let url = nats.url();
    let addr = free_addr();
    let mut gw = gateway(&url, addr);
    ready(addr).await;
    let mut workers: Vec<Process> = (0..2)
        .map(|_| Process::start(env!("CARGO_BIN_EXE_worker-process"), &[&url]))
        .collect();
    for w in &workers {
        w.expect("serving");
    }
    let base = format!("http://{addr}");

    // The stock client's suite.
    node_suite("tests/js/", &base, &[]).await;

    // An emit from a process of its own.
    let (mut ws, _) = Ws::joined(addr, "/echo").await;
    let emitted = Command::new(env!("CARGO_BIN_EXE_emit-process"))
        .args([url.as_str(), "/echo", "-", "news", r#"["from a process"]"#])
        .status()
        .unwrap();
    assert!(emitted.success());
    assert_eq!(ws.text().await, r#"42/echo,["news","from a process"]"#);
    drop(ws);

    // A client reconnects across a gateway restart (graceful: SIGTERM).
    let mut client = Process::start_with(
        "node",
        &["tests/js/reconnect-client.js"],
        &[("SIO_URL", &base)],
    );
    client.expect("connected 1");
    gw.terminate();
    gw = gateway(&url, addr);
    ready(addr).await;
    client.expect("ack after restart");
    assert!(client.success());

    // Both workers of the queue group took work.
    for w in &mut workers {
        w.terminate();
        let handled: u64 = w
            .expect("handled")
            .split_whitespace()
            .find_map(|t| t.parse().ok())
            .expect("a count");
        assert!(handled > 0, "a worker of the group took nothing");
    }
    drop(gw);
}
