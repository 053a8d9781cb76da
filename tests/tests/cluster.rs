//! Cluster operations over a real nats-server with two gateways: what an
//! `Emitter` asks on `P.ctl` is answered by every live gateway, and the
//! asker waits for exactly those.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use sio_tests::harness::connect;
use sio_tests::raw::Ws;
use sio_tests::{BusKind, TestGateway, test_config};
use sio_worker::{Emitter, Error};

/// Answers the next event with ack that arrives, with `answer`.
async fn answer_ack(ws: &mut Ws, answer: &str) {
    let text = ws.text().await;
    let rest = text.strip_prefix("42").expect("an event");
    let id: String = rest.chars().take_while(char::is_ascii_digit).collect();
    assert!(!id.is_empty(), "the event asks for an ack: {text}");
    ws.send(&format!("43{id}[{answer}]")).await;
}

#[tokio::test]
async fn operations_span_every_gateway() {
    let bus = BusKind::Nats.start().await;
    let server = bus.server.as_ref().unwrap();
    // Clients here are not read from while operations wait, so they do
    // not answer pings: keep the heartbeat out of the way.
    let config = sio_gateway::Config {
        ping_interval: 30_000,
        ping_timeout: 30_000,
        ..test_config()
    };
    let one = TestGateway::start(config.clone(), bus.bus.clone()).await;
    let two = TestGateway::start(config, connect(server).await).await;
    let (mut a, a_id) = Ws::joined(one.addr, "/").await;
    let (mut b, b_id) = Ws::joined(two.addr, "/").await;
    let (mut c, c_id) = Ws::joined(two.addr, "/").await;
    let io = Emitter::new(connect(server).await);

    let started = Instant::now();
    let mut all: Vec<String> = io
        .of("/")
        .fetch_sockets()
        .await
        .unwrap()
        .iter()
        .map(|s| s.id().to_string())
        .collect();
    all.sort();
    let mut want = vec![a_id.clone(), b_id.clone(), c_id.clone()];
    want.sort();
    assert_eq!(all, want);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "waited for the timeout instead of the gateways"
    );

    // Join a and b (on different gateways) to a room, from anywhere.
    let n = io
        .of("/")
        .to(a_id.clone())
        .to(b_id.clone())
        .sockets_join(["team"])
        .await
        .unwrap();
    assert_eq!(n, 2);
    let team = io.of("/").to("team").fetch_sockets().await.unwrap();
    assert_eq!(team.len(), 2);
    assert!(team.iter().all(|s| s.rooms() == ["team"]));
    io.of("/").to("team").emit("hello team", &()).await.unwrap();
    assert_eq!(a.text().await, r#"42["hello team"]"#);
    assert_eq!(b.text().await, r#"42["hello team"]"#);
    assert!(c.quiet(Duration::from_millis(200)).await);

    // To one socket by id, wherever it is, and to a socket id plus a room
    // it is in: once.
    io.of("/")
        .to(c_id.clone())
        .emit("just c", &())
        .await
        .unwrap();
    assert_eq!(c.text().await, r#"42["just c"]"#);
    io.of("/")
        .to(b_id.clone())
        .to("team")
        .emit("once", &())
        .await
        .unwrap();
    assert_eq!(a.text().await, r#"42["once"]"#);
    assert_eq!(b.text().await, r#"42["once"]"#);
    assert!(b.quiet(Duration::from_millis(200)).await, "b got it twice");
    assert!(c.quiet(Duration::from_millis(1)).await);

    // Broadcast with acks: every client answers, from both gateways.
    let ask = {
        let io = io.clone();
        tokio::spawn(async move { io.of("/").emit_with_ack::<_, (String,)>("vote", &()).await })
    };
    for (ws, name) in [(&mut a, "\"a\""), (&mut b, "\"b\""), (&mut c, "\"c\"")] {
        answer_ack(ws, name).await;
    }
    let mut votes: Vec<String> = ask
        .await
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|(v,)| v)
        .collect();
    votes.sort();
    assert_eq!(votes, ["a", "b", "c"]);
    // One client stays silent: the error says how many answered.
    let ask = {
        let io = io.clone();
        tokio::spawn(async move {
            io.of("/")
                .timeout(Duration::from_millis(500))
                .emit_with_ack::<_, (String,)>("vote", &())
                .await
        })
    };
    answer_ack(&mut a, "\"a\"").await;
    answer_ack(&mut b, "\"b\"").await;
    let _ignored = c.text().await;
    match ask.await.unwrap() {
        Err(Error::PartialAcks { answered, expected }) => assert_eq!((answered, expected), (2, 3)),
        other => panic!("expected a partial answer, got {other:?}"),
    }

    // Leave, then disconnect a room's members.
    assert_eq!(
        io.of("/").to("team").sockets_leave(["team"]).await.unwrap(),
        2
    );
    assert!(
        io.of("/")
            .to("team")
            .fetch_sockets()
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        io.of("/")
            .except(a_id.clone())
            .disconnect_sockets(false)
            .await
            .unwrap(),
        2
    );
    assert_eq!(b.text().await, "41");
    assert_eq!(c.text().await, "41");
    assert_eq!(io.of("/").fetch_sockets().await.unwrap().len(), 1);

    // A gateway that stops is no longer waited for, after two heartbeats.
    drop(two);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let left = io.of("/").fetch_sockets().await.unwrap();
    assert_eq!(left.len(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "still waiting for a stopped gateway"
    );
}

/// `sio_gateway_emits_received_total` of the gateway at `addr`.
async fn emits_received(addr: std::net::SocketAddr) -> u64 {
    sio_tests::raw::metric(addr, "sio_gateway_emits_received_total").await
}

#[tokio::test]
async fn gateways_receive_only_rooms_they_have_members_of() {
    let bus = BusKind::Nats.start().await;
    let server = bus.server.as_ref().unwrap();
    let with = TestGateway::start(test_config(), bus.bus.clone()).await;
    let without = TestGateway::start(test_config(), connect(server).await).await;
    let (mut member, member_id) = Ws::joined(with.addr, "/").await;
    let (mut other, _) = Ws::joined(without.addr, "/").await;
    let io = Emitter::new(connect(server).await);
    io.of("/")
        .to(member_id.clone())
        .sockets_join(["quiet room"])
        .await
        .unwrap();
    for n in 0..10 {
        io.of("/")
            .to("quiet room")
            .emit("tick", &(n,))
            .await
            .unwrap();
    }
    for n in 0..10 {
        assert_eq!(member.text().await, format!(r#"42["tick",{n}]"#));
    }
    assert!(other.quiet(Duration::from_millis(200)).await);
    assert_eq!(emits_received(with.addr).await, 10);
    assert_eq!(
        emits_received(without.addr).await,
        0,
        "bytes for a room it has no member of"
    );
}

#[tokio::test]
async fn a_nats_restart_keeps_clients_and_room_subscriptions() {
    let mut bus = BusKind::Nats.start().await;
    let gw = TestGateway::start(test_config(), bus.bus.clone()).await;
    let (mut ws, id) = Ws::joined(gw.addr, "/").await;
    let io = Emitter::new(connect(bus.server.as_ref().unwrap()).await);
    io.of("/")
        .to(id.clone())
        .sockets_join(["survivors"])
        .await
        .unwrap();
    let server = bus.server.as_mut().unwrap();
    server.stop();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sio_tests::raw::http(gw.addr, "GET", "/ready", &[], b"")
        .await
        .status
        != 503
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still ready without NATS"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The client stays connected meanwhile (it answers pings).
    assert!(ws.quiet(Duration::from_millis(700)).await);
    server.restart().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while sio_tests::raw::http(gw.addr, "GET", "/ready", &[], b"")
        .await
        .status
        != 200
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not ready after NATS came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The emitter reconnects too; the room subscription was restored.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if io.of("/").to("survivors").emit("back", &()).await.is_ok() && io.flush().await.is_ok() {
            if let Some(text) = ws.text_within(Duration::from_millis(300)).await {
                assert_eq!(text, r#"42["back"]"#);
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "room emits never came back"
        );
    }
}
