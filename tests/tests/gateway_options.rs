//! Gateway options and limits: CORS, the session cookie, trusted proxies,
//! the connection limit, the upgrade timeout, and slow clients being cut.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::Duration;

use sio_bus::{Bus, MemoryBus};
use sio_gateway::Config;
use sio_protocol::envelope::{
    self, Command, CommandReply, ConnectReply, ConnectRequest, EncodedPacket, SocketCommand,
};
use sio_protocol::id::SocketId;
use sio_protocol::subject::Subjects;
use sio_tests::raw::{Polling, WAIT, Ws, engine, http, tcp_state};
use sio_tests::{TestGateway, test_config};

async fn gateway(config: Config) -> (TestGateway, Arc<dyn Bus>) {
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::default());
    (TestGateway::start(config, bus.clone()).await, bus)
}

#[tokio::test]
async fn cors_and_cookie() {
    let (gw, _) = gateway(Config {
        cors_origins: vec!["https://app.example".into()],
        cors_credentials: true,
        cookie: true,
        ..test_config()
    })
    .await;
    let hs = engine("EIO=4&transport=polling");
    let r = http(
        gw.addr,
        "GET",
        &hs,
        &[("Origin", "https://app.example")],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    let sid = r.text()[1..].split('"').nth(3).unwrap().to_owned();
    assert_eq!(
        r.header("set-cookie"),
        Some(format!("io={sid}; Path=/; HttpOnly; SameSite=Lax").as_str())
    );
    let preflight = http(
        gw.addr,
        "OPTIONS",
        &hs,
        &[("Origin", "https://app.example")],
        b"",
    )
    .await;
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("GET,POST")
    );
    let other = http(
        gw.addr,
        "GET",
        &hs,
        &[("Origin", "https://evil.example")],
        b"",
    )
    .await;
    assert_eq!(other.header("access-control-allow-origin"), None);
    // Without the options, neither header is sent.
    let (plain, _) = gateway(test_config()).await;
    let r = http(
        plain.addr,
        "GET",
        &hs,
        &[("Origin", "https://app.example")],
        b"",
    )
    .await;
    assert_eq!(
        (
            r.header("access-control-allow-origin"),
            r.header("set-cookie")
        ),
        (None, None)
    );
}

/// The client address workers see, for a client whose handshake came
/// with an `X-Forwarded-For` header.
async fn address_seen(trust_proxy: bool) -> String {
    let (gw, bus) = gateway(Config {
        trust_proxy,
        authorize: vec!["/".into()],
        ..test_config()
    })
    .await;
    let mut conn = bus
        .subscribe(Subjects::default().connect("/"))
        .await
        .unwrap();
    let forwarded = [("X-Forwarded-For", "203.0.113.9, 10.0.0.1")];
    let r = http(
        gw.addr,
        "GET",
        &engine("EIO=4&transport=polling"),
        &forwarded,
        b"",
    )
    .await;
    let sid = r.text()[1..].split('"').nth(3).unwrap().to_owned();
    let query = format!("EIO=4&transport=polling&sid={sid}");
    assert_eq!(
        http(gw.addr, "POST", &engine(&query), &[], b"40")
            .await
            .status,
        200
    );
    let m = tokio::time::timeout(WAIT, conn.next())
        .await
        .unwrap()
        .unwrap();
    let request: ConnectRequest = envelope::decode_owned(&m.payload).unwrap();
    let reply = ConnectReply::Accept {
        data: None,
        rooms: vec![],
    };
    bus.publish(m.reply.unwrap(), envelope::encode(&reply).unwrap().into())
        .await
        .unwrap();
    request.socket.handshake.address
}

#[tokio::test]
async fn trusted_proxy_headers() {
    assert_eq!(address_seen(true).await, "203.0.113.9");
    assert_eq!(
        address_seen(false).await,
        "127.0.0.1",
        "untrusted headers are ignored"
    );
}

#[tokio::test]
async fn connection_limit() {
    let (gw, _) = gateway(Config {
        max_connections: 1,
        ..test_config()
    })
    .await;
    let _first = Polling::open(gw.addr).await;
    let r = http(gw.addr, "GET", &engine("EIO=4&transport=polling"), &[], b"").await;
    assert_eq!(r.status, 503);
}

#[tokio::test]
async fn an_upgrade_that_never_completes_keeps_polling() {
    let (gw, _) = gateway(Config {
        upgrade_timeout: 200,
        ..test_config()
    })
    .await;
    let p = Polling::open(gw.addr).await;
    p.post(b"40").await;
    assert!(p.get().await.text().starts_with("40{"));
    let mut ws = Ws::connect(gw.addr, &format!("EIO=4&transport=websocket&sid={}", p.sid)).await;
    ws.send("2probe").await;
    assert_eq!(ws.text().await, "3probe");
    assert_eq!(p.get().await.text(), "6");
    // No `5`: the websocket is dropped after upgradeTimeout, polling goes on.
    assert!(ws.next().await.is_none());
    p.post(b"40/chat,").await;
    assert!(p.get().await.text().starts_with("40/chat,"));
}

/// A worker's emit to one socket, through its gateway's command subject.
async fn emit(bus: &Arc<dyn Bus>, socket: SocketId, text: String, volatile: bool) {
    let emit = Command::Socket {
        socket,
        action: SocketCommand::Emit {
            id: sio_protocol::envelope::EmitId(7),
            volatile,
            packet: EncodedPacket::from_text(&text, vec![]),
        },
    };
    let subject = Subjects::default().gateway(socket.gateway());
    bus.request(subject, envelope::encode(&emit).unwrap().into(), WAIT)
        .await
        .unwrap();
}

#[tokio::test]
async fn slow_clients_are_cut_and_counted() {
    let (gw, bus) = gateway(Config {
        send_queue_packets: 8,
        ..test_config()
    })
    .await;
    let p = Polling::open(gw.addr).await;
    p.post(b"40").await;
    let text = p.get().await.text();
    let socket: SocketId = text
        .strip_prefix("40{\"sid\":\"")
        .unwrap()
        .trim_end_matches("\"}")
        .parse()
        .unwrap();
    // The client stops polling; the worker keeps emitting.
    for i in 0..20 {
        emit(&bus, socket, format!("2[\"n\",{i}]"), false).await;
    }
    let r = p.get().await;
    assert_eq!(
        r.text(),
        r#"{"code":1,"message":"Session ID unknown"}"#,
        "the session was cut"
    );
    let metrics = http(gw.addr, "GET", "/metrics", &[], b"").await.text();
    assert!(
        metrics.contains(r#"sio_gateway_drops_total{reason="slow_consumer"} 1"#),
        "{metrics}"
    );
    // Volatile emits to a client with a backlog are dropped instead.
    let p = Polling::open(gw.addr).await;
    p.post(b"40").await;
    let text = p.get().await.text();
    let socket: SocketId = text
        .strip_prefix("40{\"sid\":\"")
        .unwrap()
        .trim_end_matches("\"}")
        .parse()
        .unwrap();
    for (i, volatile) in [(0, false), (1, true)] {
        emit(&bus, socket, format!("2[\"v\",{i}]"), volatile).await;
    }
    assert_eq!(p.get().await.text(), r#"42["v",0]"#);
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[tokio::test]
async fn repeated_connects_while_workers_decide_are_ignored() {
    let (gw, bus) = gateway(Config {
        authorize: vec!["/".into()],
        ..test_config()
    })
    .await;
    let mut conn = bus
        .subscribe(Subjects::default().connect("/"))
        .await
        .unwrap();
    let (mut ws, _) = Ws::open(gw.addr).await;
    for _ in 0..20 {
        ws.send("40").await;
    }
    let first = tokio::time::timeout(WAIT, conn.next())
        .await
        .unwrap()
        .unwrap();
    // Only one request reaches the workers.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), conn.next())
            .await
            .is_err()
    );
    let accept = ConnectReply::Accept {
        data: None,
        rooms: vec![],
    };
    bus.publish(
        first.reply.unwrap(),
        envelope::encode(&accept).unwrap().into(),
    )
    .await
    .unwrap();
    assert!(ws.text().await.starts_with("40{"));
    assert!(
        ws.quiet(Duration::from_millis(200)).await,
        "one CONNECT reply only"
    );
}

#[tokio::test]
async fn a_websocket_client_that_stops_reading_is_cut_and_disconnected() {
    let (gw, bus) = gateway(Config {
        send_queue_packets: 8,
        ..test_config()
    })
    .await;
    let (ws, sid) = Ws::joined(gw.addr, "/").await;
    let socket: SocketId = sid.parse().unwrap();
    let client = ws.local_addr();
    assert_eq!(tcp_state(gw.addr, client).as_deref(), Some("01"));
    // The client never reads again: 64 KiB emits fill the kernel's buffers,
    // the gateway's write blocks, and then its queue overflows.
    let big = "x".repeat(64 * 1024);
    for i in 0..400 {
        emit(&bus, socket, format!("2[\"n\",{i},\"{big}\"]"), false).await;
    }
    let metrics = http(gw.addr, "GET", "/metrics", &[], b"").await.text();
    assert!(
        metrics.contains(r#"sio_gateway_drops_total{reason="slow_consumer"} 1"#),
        "{metrics}"
    );
    // Cutting the session closes the connection too: a client that does
    // not read must not hold a task and a descriptor on the gateway.
    let deadline = tokio::time::Instant::now() + WAIT;
    while tcp_state(gw.addr, client).as_deref() == Some("01") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gateway's end of the connection is still open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(ws);
}

#[tokio::test]
async fn a_worker_waiting_for_an_ack_hears_at_once_that_the_client_left() {
    let (gw, bus) = gateway(test_config()).await;
    let (ws, sid) = Ws::joined(gw.addr, "/").await;
    let socket: SocketId = sid.parse().unwrap();
    let ask = Command::Socket {
        socket,
        action: SocketCommand::EmitWithAck {
            data: r#"["question"]"#.into(),
            attachments: vec![], // Far longer than the request below may wait.
            timeout_ms: 600_000,
        },
    };
    let subject = Subjects::default().gateway(socket.gateway());
    let request = bus.request(subject, envelope::encode(&ask).unwrap().into(), WAIT);
    let leave = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(ws);
    };
    let (reply, ()) = tokio::join!(request, leave);
    let reply: CommandReply = envelope::decode_owned(&reply.expect("a reply before WAIT")).unwrap();
    assert_eq!(reply, CommandReply::AckTimeout);
}

/// One socket's events wait their turn behind the one a worker holds, at
/// most `--event-queue` of them; one more gets the `overloaded` error ack
/// at once, and the session goes on.
#[tokio::test]
async fn a_socket_may_not_queue_more_events_than_the_bound() {
    let (gw, bus) = gateway(Config {
        event_queue: 2,
        ..test_config()
    })
    .await;
    // A worker that takes the events and never answers.
    let mut silent = bus
        .subscribe(Subjects::default().event("/", "slow"))
        .await
        .unwrap();
    let (mut ws, _) = Ws::joined(gw.addr, "/").await;
    for id in 0..4 {
        ws.send(&format!(r#"42{id}["slow"]"#)).await;
    }
    silent
        .next_within(WAIT)
        .await
        .expect("the first is handed over");
    assert_eq!(
        ws.text().await,
        r#"433[{"code":"overloaded","error":"too many events waiting"}]"#,
        "the fourth: one held, two waiting"
    );
    assert!(
        silent
            .next_within(Duration::from_millis(200))
            .await
            .is_err(),
        "the others wait for the first to be done"
    );
    let metrics = http(gw.addr, "GET", "/metrics", &[], b"").await.text();
    assert!(
        metrics.contains(r#"sio_gateway_events_total{outcome="overloaded"} 1"#),
        "{metrics}"
    );
}

/// Events the workers opted out of order wait for their acks side by
/// side; a client may not start more of them than the send queue holds.
#[tokio::test]
async fn a_client_may_not_start_unordered_acks_faster_than_workers_answer() {
    let (gw, bus) = gateway(Config {
        send_queue_packets: 8,
        ..test_config()
    })
    .await;
    let mut worker = bus
        .subscribe(Subjects::default().event("/", "slow"))
        .await
        .unwrap();
    let (mut ws, _) = Ws::joined(gw.addr, "/").await;
    // The first answer tells the gateway that "slow" is unordered.
    ws.send(r#"42["slow"]"#).await;
    let first = worker.next_within(WAIT).await.unwrap();
    let done = envelope::EventReply::Done {
        first: 0,
        outcomes: vec![envelope::Outcome::default()],
        unordered: true,
    };
    bus.publish(
        first.reply.unwrap(),
        envelope::encode(&done).unwrap().into(),
    )
    .await
    .unwrap();
    // Then it takes them and never answers.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for id in 0..8 {
        ws.send(&format!(r#"42{id}["slow"]"#)).await;
        worker
            .next_within(WAIT)
            .await
            .expect("each is handed over at once");
    }
    let metrics = || async { http(gw.addr, "GET", "/metrics", &[], b"").await.text() };
    assert!(
        !metrics().await.contains(r#"reason="ack_flood""#),
        "eight waiting acks are within the bound"
    );
    ws.send(r#"429["slow"]"#).await;
    ws.closed().await;
    let metrics = metrics().await;
    assert!(
        metrics.contains(r#"sio_gateway_drops_total{reason="ack_flood"} 1"#),
        "{metrics}"
    );
}

/// A client of `--namespace-patterns` may join at most
/// `--max-namespaces` namespaces, and the metrics label them by the
/// pattern that admitted them, not by the names the client made up.
#[tokio::test]
async fn namespaces_per_client_are_capped_and_labelled_by_pattern() {
    let mut config = test_config();
    config.namespace_patterns = vec!["/room-*".into()];
    config.max_namespaces = 2;
    let (gw, _bus) = gateway(config).await;
    let (mut ws, _) = Ws::open(gw.addr).await;
    for ns in ["/room-1", "/room-2"] {
        ws.send(&format!("40{ns},")).await;
        assert!(ws.text().await.starts_with(&format!("40{ns},{{\"sid\"")));
    }
    ws.send("40/room-3,").await;
    assert_eq!(
        ws.text().await,
        r#"44/room-3,{"message":"Too many namespaces"}"#
    );
    ws.send("41/room-1,").await;
    ws.send("40/room-3,").await;
    assert!(
        ws.text().await.starts_with("40/room-3,{\"sid\""),
        "a slot freed"
    );
    let metrics = sio_tests::raw::metrics(gw.addr).await;
    assert_eq!(
        metrics.get(r#"sio_gateway_sockets{namespace="/room-*"}"#),
        Some(2)
    );
    assert_eq!(
        metrics.get(r#"sio_gateway_sockets{namespace="/room-3"}"#),
        None
    );
    assert_eq!(
        metrics.get(r#"sio_gateway_drops_total{reason="namespace_limit"}"#),
        Some(1)
    );
}
