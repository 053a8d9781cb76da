//! Three gateways and two workers on a three-server NATS cluster (the
//! committed `deploy/nats/cluster.conf`), each gateway on its own node:
//! stock clients connected straight to different gateways, with no load
//! balancer, talk through rooms and see each other in `users`; an
//! `Emitter` on a third node sees every socket; a room's messages cross
//! the routes only to the gateways that have a member.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use bytes::Bytes;
use sio_tests::harness::{connect, demo_config, npm_ci, run_program};
use sio_tests::raw::{Ws, metric};
use sio_tests::{NatsServer, TestGateway};
use sio_worker::Emitter;

/// Waits until a message published on any node reaches a subscriber on
/// every other node: the routes are up.
async fn routes_carry(nodes: &[NatsServer]) {
    let mut buses = Vec::new();
    for node in nodes {
        buses.push(connect(node).await);
    }
    for (i, to) in buses.iter().enumerate() {
        let mut sub = to.subscribe(format!("probe.{i}")).await.unwrap();
        for from in buses.iter().filter(|b| !std::sync::Arc::ptr_eq(b, to)) {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                from.publish(format!("probe.{i}"), Bytes::new())
                    .await
                    .unwrap();
                if sub.next_within(Duration::from_millis(100)).await.is_ok() {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the routes never formed"
                );
            }
        }
    }
}

/// `sio_gateway_emits_received_total` of a gateway.
async fn emits_received(gateway: &TestGateway) -> u64 {
    metric(gateway.addr, "sio_gateway_emits_received_total").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_on_a_three_server_cluster() {
    npm_ci();
    let nodes = NatsServer::cluster(3).expect("a nats-server cluster");
    routes_carry(&nodes).await;
    // The raw clients below are not read from while the test waits, so
    // keep pings out of the way.
    let config = sio_gateway::Config {
        ping_interval: 30_000,
        ping_timeout: 30_000,
        ..demo_config()
    };
    let mut gateways = Vec::new();
    for node in &nodes {
        gateways.push(TestGateway::start(config.clone(), connect(node).await).await);
    }
    let mut workers = Vec::new();
    for node in [&nodes[0], &nodes[2]] {
        workers.push(sio_demo::worker().start(connect(node).await).await.unwrap());
    }

    // Stock clients, spread over the three gateways directly.
    let urls: Vec<String> = gateways
        .iter()
        .map(|g| format!("http://{}", g.addr))
        .collect();
    let report = run_program(
        "node",
        &["tests/js/cluster-clients.js"],
        &[("SIO_URLS", &urls.join(","))],
    )
    .await;
    assert!(report.lines().any(|l| l == "round 1 ok"), "{report}");
    assert!(report.lines().any(|l| l == "disconnected 0"), "{report}");

    // An Emitter on the middle node sees a socket on each gateway.
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for gateway in &gateways {
        let (ws, id) = Ws::joined(gateway.addr, "/echo").await;
        clients.push(ws);
        ids.push(id);
    }
    let io = Emitter::new(connect(&nodes[1]).await);
    let mut seen: Vec<String> = io
        .of("/echo")
        .fetch_sockets()
        .await
        .unwrap()
        .iter()
        .map(|s| s.id().to_string())
        .collect();
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids);

    // A room with its one member on the first gateway: only that gateway
    // receives its messages.
    let (mut member, member_id) = Ws::joined(gateways[0].addr, "/echo").await;
    io.of("/echo")
        .to(member_id)
        .sockets_join(["quiet room"])
        .await
        .unwrap();
    let mut before = Vec::new();
    for gateway in &gateways {
        before.push(emits_received(gateway).await);
    }
    for n in 0..10 {
        io.of("/echo")
            .to("quiet room")
            .emit("tick", &(n,))
            .await
            .unwrap();
    }
    for n in 0..10 {
        assert_eq!(member.text().await, format!(r#"42/echo,["tick",{n}]"#));
    }
    for ws in &mut clients {
        assert!(ws.quiet(Duration::from_millis(200)).await);
    }
    let mut received = Vec::new();
    for (gateway, before) in gateways.iter().zip(&before) {
        received.push(emits_received(gateway).await - before);
    }
    assert_eq!(received, [10, 0, 0], "room messages per gateway");
    for w in workers {
        w.shutdown().await;
    }
}
