//! Polling without sticky balancing: a request for a session of another
//! gateway is served by its owner over the bus, with the owner's status
//! and body; a session whose gateway is gone is unknown at once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use sio_protocol::id::{GatewayId, Sid};
use sio_tests::raw::{Polling, engine, http, metrics};
use sio_tests::{BusKind, TestGateway, on_both_buses, test_config};
use sio_worker::{Socket, Worker};

on_both_buses!(polling_reaches_the_owner_from_any_gateway);

async fn polling_reaches_the_owner_from_any_gateway(kind: BusKind) {
    let bus = kind.start().await;
    let a = TestGateway::start(test_config(), bus.bus.clone()).await;
    let b = TestGateway::start(test_config(), bus.bus.clone()).await;
    let mut worker = Worker::new();
    worker
        .of("/")
        .on("hi", |socket: Socket, (n,): (u32,)| async move {
            socket.ack(&(n + 1,)).await
        });
    let _running = worker.start(bus.bus.clone()).await.unwrap();
    // Opened on A; every request after goes to B, or to A, in turn.
    let on_a = Polling::open(a.addr).await;
    let on_b = Polling {
        addr: b.addr,
        ..on_a.clone()
    };
    assert_eq!(on_b.post(b"40").await.text(), "ok");
    let connected = on_b.get().await;
    assert_eq!(connected.status, 200);
    assert!(
        connected.text().starts_with("40{\"sid\":\""),
        "{}",
        connected.text()
    );
    assert_eq!(
        connected.header("content-type"),
        Some("text/plain; charset=UTF-8")
    );
    for (n, (send, read)) in [(&on_b, &on_a), (&on_a, &on_b), (&on_b, &on_b)]
        .into_iter()
        .enumerate()
    {
        let id = n + 1;
        assert_eq!(
            send.post(format!("42{id}[\"hi\",{n}]").as_bytes())
                .await
                .text(),
            "ok"
        );
        assert_eq!(read.get().await.text(), format!("43{id}[{}]", n + 1));
    }
    // Two GETs at once are the protocol error they are on one gateway.
    let pending = tokio::spawn({
        let on_a = on_a.clone();
        async move { on_a.get().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = on_b.get().await;
    assert_eq!(second.status, 400, "{}", second.text());
    let _ = pending.await;
    let (a_m, b_m) = (metrics(a.addr).await, metrics(b.addr).await);
    assert!(b_m.get("sio_gateway_polls_forwarded_total").unwrap() >= 4);
    assert!(a_m.get("sio_gateway_polls_served_total").unwrap() >= 4);
    assert_eq!(
        a_m.get("sio_gateway_polls_forwarded_total"),
        Some(0),
        "A serves its own directly"
    );
    // A body over maxHttpBufferSize is refused where it lands.
    let fresh = Polling::open(a.addr).await;
    let big = vec![b'x'; 1_000_001];
    let r = Polling {
        addr: b.addr,
        ..fresh.clone()
    }
    .post(&big)
    .await;
    assert_eq!(r.status, 413);
    // An upgrade for another gateway's session is refused; the client
    // goes on polling.
    let query = format!("EIO=4&transport=websocket&sid={}", fresh.sid);
    let r = http(b.addr, "GET", &engine(&query), &[], b"").await;
    assert_eq!(r.text(), r#"{"code":1,"message":"Session ID unknown"}"#);
    assert_eq!(fresh.get().await.status, 200, "still served on its owner");
    // A sid of a gateway that is not there: unknown, at once.
    let nobody = Sid::random(GatewayId::random().unwrap()).unwrap();
    let started = tokio::time::Instant::now();
    let query = format!("EIO=4&transport=polling&sid={nobody}");
    let r = http(b.addr, "GET", &engine(&query), &[], b"").await;
    assert_eq!(r.text(), r#"{"code":1,"message":"Session ID unknown"}"#);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "no timeout waited"
    );
}
